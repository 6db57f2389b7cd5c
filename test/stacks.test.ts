// Python stacks from every CPython on this machine, probes or not: dumpStacks against the
// target's own sys._current_frames(), sampled shares against the threads' own CPU time, waits
// against their sleeps, names across thousands of code objects freed and reused.
import { once } from 'node:events'
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { TraceError, dumpStacks, inspect, sampleStacks, stackProfile, type StackFrame, type StackSample } from '../src/index.js'
import { DEBIAN_PYTHON, PYENV, STACK_PYTHONS, deadPid, startContainerPython, startReady } from './fixtures/processes.js'
import { ownMapEntries } from './fixtures/bpf-maps.js'

const TARGET = fileURLToPath(new URL('targets/stacks.py', import.meta.url))
/** The deepest stack a sample carries (STACK_FRAMES_MAX in bpf/usdtrace.h). */
const FRAMES_KEPT = 127
/** Clock ticks per second of /proc/PID/task/TID/stat's utime and stime (USER_HZ). */
const CLOCK_TICKS = 100

async function start(t: Test, python: string, args: string[]) {
  const child = await startReady(t, python, [TARGET, ...args])
  return { child, pid: child.pid, report: JSON.parse(child.printed.trim()) as Record<string, unknown> }
}

const asTriples = (frames: StackFrame[]) => frames.map((frame) => [frame.file, frame.func, frame.line])

/** The CPU time a thread has used so far, in clock ticks (utime + stime). */
function cpuTicks(pid: number, tid: number): number {
  const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(fields[11]) + Number(fields[12])
}

async function threadGone(pid: number, tid: number): Promise<void> {
  while (readdirSync(`/proc/${pid}/task`).includes(String(tid))) await sleep(10)
}

for (const python of STACK_PYTHONS) {
  t.test(`${python}: dumpStacks equals the target's sys._current_frames()`, async (t) => {
    const deep = 200
    const { pid, report } = await start(t, python, ['blocked', String(deep)])
    await threadGone(pid, report.reporter as number)
    const expected = report.stacks as Record<string, [string, string, number][]>
    const threads = await dumpStacks(pid)
    t.same(threads.map((thread) => String(thread.tid)).sort(), Object.keys(expected).sort(), 'every Python thread, and only those')
    for (const thread of threads) {
      const frames = expected[thread.tid]!
      t.equal(thread.pid, pid)
      t.notOk(thread.onCpu, `thread ${thread.tid} is blocked, not on a CPU`)
      t.type(thread.name, 'string')
      if (frames.length > FRAMES_KEPT) {
        t.ok(thread.truncated, `the ${frames.length}-frame stack is flagged truncated`)
        t.same(asTriples(thread.frames), frames.slice(0, FRAMES_KEPT), `its innermost ${FRAMES_KEPT} frames are exact`)
      } else {
        t.notOk(thread.truncated)
        t.same(asTriples(thread.frames), frames, `thread ${thread.tid}: ${frames.length} frames, frame by frame`)
      }
    }
    t.ok(
      Object.values(expected).some((frames) => frames.length > deep),
      'one thread is deeper than a sample carries',
    )
  })

  t.test(`${python}: a spinning thread is sampled as often as it runs, a sleeping one waits as long as it sleeps`, async (t) => {
    const sleepSeconds = 0.05
    const { pid, report } = await start(t, python, ['busy', String(sleepSeconds)])
    const spinner = report.spinner as number
    const sleeper = report.sleeper as number
    const hz = 99
    const trace = sampleStacks({ pid, hz, offCpu: true })
    await trace.ready
    const ticks = cpuTicks(pid, spinner)
    const startedNs = process.hrtime.bigint()
    const samples: StackSample[] = []
    const closing = setTimeout(() => void trace.close(), 2000)
    for await (const sample of trace) samples.push(sample)
    clearTimeout(closing)
    const spun = (cpuTicks(pid, spinner) - ticks) / CLOCK_TICKS
    const windowNs = process.hrtime.bigint() - startedNs
    t.equal(trace.lost, 0, 'nothing lost')
    t.ok(samples.every((sample) => sample.pid === pid), 'samples of the target only')

    const spinning = samples.filter((sample) => sample.tid === spinner && sample.onCpu)
    const inSpin = spinning.filter((sample) => sample.frames[0]?.func === 'spin' && sample.frames[0].file === TARGET)
    t.ok(inSpin.length >= 0.95 * spinning.length, `${inSpin.length} of the spinner's ${spinning.length} on-CPU samples are in spin()`)
    const expected = spun * hz
    t.ok(
      inSpin.length > 0.75 * expected && inSpin.length < 1.25 * expected,
      `${inSpin.length} samples in spin() for ${spun.toFixed(2)} s of its CPU time at ${hz} Hz (expected ${expected.toFixed(0)})`,
    )

    const waits = samples.filter((sample) => sample.tid === sleeper && !sample.onCpu && sample.frames[0]?.func === 'sleeper')
    const waited = waits.reduce((sum, sample) => sum + sample.offCpuNs!, 0n)
    t.ok(waited > (windowNs * 7n) / 10n && waited <= windowNs, `the sleeper waited ${waited / 1_000_000n} ms of ${windowNs / 1_000_000n}`)
    const sleeps = waits.filter((sample) => sample.offCpuNs! >= BigInt(sleepSeconds * 0.9e9))
    const expectedSleeps = Number(windowNs) / 1e9 / sleepSeconds
    t.ok(
      sleeps.length > 0.6 * expectedSleeps && sleeps.length <= expectedSleeps + 1,
      `${sleeps.length} waits of at least a sleep's length (${expectedSleeps.toFixed(0)} sleeps fit the window)`,
    )
    t.ok(samples.filter((sample) => !sample.onCpu).every((sample) => sample.offCpuNs! > 0n), 'every off-CPU sample says how long')
  })

  t.test(`${python}: stackProfile sums the same in the kernel, one entry per distinct stack`, async (t) => {
    const { pid, report } = await start(t, python, ['busy', '0.05'])
    const spinner = report.spinner as number
    const hz = 199
    const profile = stackProfile(pid, { hz, intervalMs: 500, offCpu: true })
    await profile.ready
    const ticks = cpuTicks(pid, spinner)
    const startedNs = process.hrtime.bigint()
    let spinSamples = 0
    let sleeperWaitNs = 0n
    let snapshots = 0
    for await (const snapshot of profile) {
      t.equal(snapshot.dropped, 0, 'nothing dropped')
      const distinct = new Set(snapshot.stacks.map((stack) => JSON.stringify([stack.onCpu, asTriples(stack.frames)])))
      t.equal(distinct.size, snapshot.stacks.length, 'each stack once per snapshot')
      for (const stack of snapshot.stacks) {
        if (stack.onCpu && stack.frames[0]?.func === 'spin') spinSamples += stack.samples
        if (!stack.onCpu && stack.frames[0]?.func === 'sleeper') sleeperWaitNs += stack.offCpuNs
      }
      if (++snapshots === 4) break
    }
    const spun = (cpuTicks(pid, spinner) - ticks) / CLOCK_TICKS
    const windowNs = process.hrtime.bigint() - startedNs
    const expected = spun * hz
    t.ok(spinSamples > 0.75 * expected && spinSamples < 1.25 * expected, `${spinSamples} samples in spin() (expected ${expected.toFixed(0)})`)
    t.ok(sleeperWaitNs > (windowNs * 6n) / 10n && sleeperWaitNs <= windowNs, `sleeper waited ${sleeperWaitNs / 1_000_000n} ms of ${windowNs / 1_000_000n}`)
  })

  t.test(`${python}: thousands of code objects, freed and reused, are each named right`, async (t) => {
    const functions = 1500
    const { child, pid } = await start(t, python, ['unique', String(functions), '1'])
    let output = ''
    child.stdout!.on('data', (d: Buffer) => (output += d))
    const trace = sampleStacks(pid, { hz: 997 })
    await trace.ready
    child.stdin!.write('go\n')
    const samples: StackSample[] = []
    for await (const sample of trace) samples.push(sample)
    await once(child, 'exit')
    const ran = new Map((JSON.parse(output.trim()) as [number, string, string][]).map(([n, start, end]) => [n, [BigInt(start), BigInt(end)]]))
    t.equal(ran.size, functions)
    let checked = 0
    let wrong = 0
    for (const sample of samples) {
      const frame = sample.frames[0]
      const match = frame && /^f_(\d+)$/.exec(frame.func)
      if (!match) continue
      const [startNs, endNs] = ran.get(Number(match[1]))!
      const right = frame.file === `<unique-${match[1]}>` && sample.timestampNs >= startNs && sample.timestampNs <= endNs
      if (!right && wrong++ < 5) t.fail('a sample names the function that ran then', { sample, ran: [startNs, endNs] })
      checked++
    }
    t.equal(wrong, 0, `${checked} samples in generated functions, each named after the one running`)
    t.ok(checked > functions / 2, 'most functions were sampled')
    t.equal(trace.lost, 0, 'nothing lost')
  })

  t.test(`${python}: a target that exits ends the streams`, async (t) => {
    const { child, pid } = await start(t, python, ['exit', '1'])
    const samples = sampleStacks(pid, { hz: 99 })
    const profile = stackProfile(pid, { hz: 99, intervalMs: 60_000 })
    await Promise.all([samples.ready, profile.ready])
    child.stdin!.write('go\n')
    let sampled = 0
    for await (const sample of samples) if (sample.frames[0]?.func === 'spin') sampled++
    const snapshots = []
    for await (const snapshot of profile) snapshots.push(snapshot)
    t.ok(sampled > 0, `${sampled} samples in spin() before it exited`)
    t.equal(snapshots.length, 1, 'one snapshot: the final one')
    t.ok(snapshots[0]!.final, 'marked final')
    t.ok(snapshots[0]!.stacks.some((stack) => stack.frames[0]?.func === 'spin'), 'holding what was sampled')
  })
}

t.test('inspect says how each CPython stacks are read', async (t) => {
  for (const python of STACK_PYTHONS) {
    const { pid } = await start(t, python, ['idle'])
    const { capabilities, version } = await inspect(pid)
    const mode = version!.minor >= 13 ? 'debug-offsets' : 'version-table'
    t.same(capabilities.stacks, { available: true, mode }, `${python}: ${mode}`)
  }
})

t.test('break, abort and close free everything the stack streams hold', async (t) => {
  const { pid } = await start(t, STACK_PYTHONS[2]!, ['busy', '0.01'])
  const openFds = () => readdirSync('/proc/self/fd').length
  const first = sampleStacks(pid, { offCpu: true })
  await first.ready
  await first.close()
  const before = openFds()
  for (let cycle = 0; cycle < 5; cycle++) {
    for await (const sample of sampleStacks(pid, { hz: 499, offCpu: true })) {
      void sample
      break
    }
    const controller = new AbortController()
    const aborted = stackProfile(pid, { intervalMs: 10, signal: controller.signal })
    await aborted.ready
    const pending = aborted.next()
    controller.abort()
    await t.rejects(pending, { name: 'AbortError' })
    await aborted.close()
    const closed = sampleStacks(pid)
    await closed.ready
    await closed.close()
    await dumpStacks(pid)
  }
  await sleep(0)
  t.equal(openFds(), before, 'no fd left behind after 20 streams and dumps')
})

t.test('{ binary } follows every process of a libpython, including those started later and their forks', async (t) => {
  const python = STACK_PYTHONS[2]!
  const libpython = `${PYENV}/3.12.1/lib/libpython3.12.so.1.0`
  const trace = sampleStacks({ binary: libpython, hz: 199 })
  await trace.ready
  const { report, pid } = await start(t, python, ['fork', '2'])
  const children = report.children as number[]
  t.teardown(() => children.forEach((child) => void process.kill(child, 'SIGKILL')))
  const wanted = new Set([...children])
  const seen = new Set<number>()
  const deadline = setTimeout(() => void trace.close(), 20_000)
  for await (const sample of trace) {
    if (wanted.has(sample.pid) && sample.frames[0]?.func === 'spin') seen.add(sample.pid)
    if (seen.size === wanted.size) break
  }
  clearTimeout(deadline)
  t.same([...seen].sort(), [...wanted].sort(), `the forked children of ${pid}, started after the trace, are sampled in spin()`)
})

t.test('{ binary } on a shared build\'s program reads the libpython it loads', async (t) => {
  const python = STACK_PYTHONS[3]!
  const trace = sampleStacks({ binary: python, hz: 199 })
  await trace.ready
  const { pid, report } = await start(t, python, ['busy', '0.05'])
  for await (const sample of trace) {
    if (sample.pid !== pid || sample.tid !== report.spinner) continue
    t.equal(sample.frames[0]?.func, 'spin', 'the spinner, sampled in spin()')
    break
  }
})

t.test('{ binary } over processes that come and go keeps its kernel maps flat', async (t) => {
  // A python3.11 of our own, so that only our processes run it.
  const dir = mkdtempSync(join(tmpdir(), 'usdtrace-stacks-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const python = join(dir, 'python3.11')
  copyFileSync(DEBIAN_PYTHON, python)
  chmodSync(python, 0o755)
  const trace = sampleStacks({ binary: python, hz: 999 })
  await trace.ready
  const sampledPids = new Set<number>()
  const consumed = (async () => {
    for await (const sample of trace) if (sample.frames[0]?.func.startsWith('f_')) sampledPids.add(sample.pid)
  })()
  const processes = 25
  const pids: number[] = []
  for (let i = 0; i < processes; i++) {
    const { child, pid } = await start(t, python, ['unique', '40', '2'])
    pids.push(pid)
    const exited = once(child, 'exit')
    child.stdin!.write('go\n')
    await exited
  }
  await sleep(100)
  const [known] = ownMapEntries('known_codes')
  const [described] = ownMapEntries('python_processe')
  await trace.close()
  await consumed
  t.ok(pids.filter((pid) => sampledPids.has(pid)).length >= processes * 0.8, `${sampledPids.size} of ${processes} processes sampled in their functions`)
  t.equal(trace.lost, 0, 'nothing lost')
  t.equal(described, 0, 'no process described once all exited')
  t.equal(known, 0, 'no code object remembered once all exited')
})

t.test('a python in a container has its stacks read through /proc/PID/root', async (t) => {
  const code = 'import sys\ndef waiting():\n    sys.stdin.read()\nprint("ready", flush=True)\nwaiting()'
  const child = await startContainerPython(t, `exec(${JSON.stringify(code)})`)
  const [main] = await dumpStacks(child.pid)
  t.same(
    main!.frames.map((frame) => frame.func),
    ['waiting', '<module>', '<module>'],
    'the container main thread is in waiting(), under the exec and the -c module',
  )
})

t.test('bad targets get typed errors', async (t) => {
  await t.rejects(dumpStacks(await deadPid()), { code: 'NO_SUCH_PROCESS' })
  const sleeper = await startReady(t, 'sh', ['-c', 'echo ready; exec sleep 600'])
  await t.rejects(dumpStacks(sleeper.pid), { code: 'NOT_PYTHON' })
  const old = await startReady(t, `${PYENV}/3.9.18/bin/python3.9`, ['-c', 'import sys; print("ready", flush=True); sys.stdin.read()'])
  const error = await dumpStacks(old.pid).catch((e: unknown) => e)
  t.type(error, TraceError)
  t.match(error, { code: 'UNSUPPORTED_PYTHON', message: /CPython 3\.9 predates 3\.10/ })
  const pypy = await startReady(t, '/usr/bin/pypy3', ['-c', 'import sys; print("ready", flush=True); sys.stdin.read()'])
  await t.rejects(dumpStacks(pypy.pid), { code: 'UNSUPPORTED_PYTHON', message: /runs PyPy \(.*pypy3.*\): usdtrace reads CPython/ })
  const { pid } = await start(t, STACK_PYTHONS[0]!, ['busy', '0.05'])
  for (const hz of [0, 1.5, 100_000]) {
    const trace = sampleStacks(pid, { hz })
    await t.rejects(trace.ready, { code: 'INVALID_ARGUMENT', message: /hz/ }, `hz ${hz}`)
  }
  await t.rejects(stackProfile(pid, { intervalMs: -1 }).ready, { code: 'INVALID_ARGUMENT', message: /intervalMs/ })
  await t.rejects(sampleStacks(pid, { hertz: 99 } as never).ready, { code: 'INVALID_ARGUMENT', message: /no option "hertz"/ })
  await t.rejects(dumpStacks({ binary: STACK_PYTHONS[0]! }), { code: 'INVALID_ARGUMENT', message: /pid/ })
})
