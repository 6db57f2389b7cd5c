// Every TraceError code traceCalls can reject with, each provoked by a real process (or a real
// argument) and checked for its code and for a message naming the cause and the fix.
import { execFile, spawnSync } from 'node:child_process'
import { existsSync, readFileSync, realpathSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import { binding } from '../src/kernel/binding.js'
import { TraceError, inspect, traceCalls, type CallTrace } from '../src/index.js'
import { DEBIAN_PYTHON, PYTHON_WAIT, deadPid, startReady } from './fixtures/processes.js'
import { ROOT } from './fixtures/package.js'
import { NOBODY, staged } from './fixtures/staged.js'
import { WORKLOADS, collect, fibonacci, startWorkload, rejection } from './targets.js'
import {
  codeFileOffset,
  compile,
  copyExecutable,
  dynamicEntry,
  holdUprobe,
  probeOffsets,
  tmpDir,
  waitForUprobeSlot,
} from './programs/tools.js'


/** The file-backed objects /proc/PID/maps lists, as real paths (read here, not through src/). */
function mappedPaths(pid: number): string[] {
  const paths = new Set<string>()
  for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
    const m = /^\S+\s+\S+\s+\S+\s+\S+\s+[1-9]\d*\s+(\/.*)$/.exec(line)
    if (m) paths.add(realpathSync(m[1]!))
  }
  return [...paths]
}

function hasPythonProbes(path: string): boolean {
  return /Provider: python/.test(spawnSync('readelf', ['-n', path], { encoding: 'utf8' }).stdout)
}

/** A raw BPF session of the calls object, closed (once) by `close()` or at teardown. */
function rawSession(t: Test) {
  const session = new binding.Session({ object: 'calls' })
  let open = true
  const close = () => {
    if (open) session.close()
    open = false
  }
  t.teardown(close)
  return { session, close }
}

/** Entries and returns of workloads.py's fib. */
function fibCalls(events: Awaited<ReturnType<typeof collect>>) {
  const fib = events.filter((e) => e.file === WORKLOADS && e.func === 'fib')
  return { entries: fib.filter((e) => e.kind === 'entry').length, returns: fib.filter((e) => e.kind === 'return').length }
}

t.test('NO_SUCH_PROCESS: a pid whose process has exited', async (t) => {
  const pid = await deadPid()
  t.notOk(existsSync(`/proc/${pid}`), 'the pid is really gone')
  const error = await rejection(traceCalls(pid), t)
  t.equal(error.code, 'NO_SUCH_PROCESS')
  t.match(error.message, new RegExp(`no process with pid ${pid}\\b`), 'names the pid')
  t.match(error.message, /pgrep|usdtrace ps/, 'says how to find the right pid')
})

t.test('INVALID_ARGUMENT: pids that are not positive integers', async (t) => {
  for (const pid of [0, -1, 1.5]) {
    const error = await rejection(traceCalls(pid), t)
    t.equal(error.code, 'INVALID_ARGUMENT', `pid ${pid}`)
    t.match(error.message, /\bpid\b/, `pid ${pid}: names the argument`)
    t.match(error.message, /positive integer/, `pid ${pid}: says what is expected`)
    t.match(error.message, `got ${pid}`, `pid ${pid}: shows the value`)
  }
  const error = await rejection(traceCalls({ pid: 0 }), t)
  t.equal(error.code, 'INVALID_ARGUMENT', 'the options form checks the pid too')
})

t.test('INVALID_ARGUMENT: ringBufferBytes that is not a power of two', async (t) => {
  // A traceable target, so the ring size is the only thing wrong.
  const target = await startReady(t, DEBIAN_PYTHON, ['-c', PYTHON_WAIT])
  for (const ringBufferBytes of [10000, 3 << 20]) {
    const error = await rejection(traceCalls(target.pid, { ringBufferBytes }), t)
    t.equal(error.code, 'INVALID_ARGUMENT', `${ringBufferBytes}`)
    t.match(error.message, /ringBufferBytes/, 'names the option')
    t.match(error.message, /power of two/, 'says what is expected')
    t.match(error.message, String(ringBufferBytes), 'shows the value')
  }
  // The same target with a valid size traces: nothing else was wrong.
  const trace = traceCalls(target.pid, { ringBufferBytes: 1 << 16, entries: false })
  await trace.ready
  await trace.close()
})

t.test('NOT_PYTHON: a node process', async (t) => {
  const target = await startReady(t, process.execPath, ['-e', 'console.log("ready"); setTimeout(() => {}, 1e6)'])
  const error = await rejection(traceCalls(target.pid), t)
  t.equal(error.code, 'NOT_PYTHON')
  t.match(error.message, realpathSync(process.execPath), 'names the executable')
  t.match(error.message, /not CPython/, 'says why')
  t.match(error.message, /listProbes/, 'points at what works for other processes')
})

t.test('NO_PROBES: a pyenv python built without --with-dtrace', async (t) => {
  const found = spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' })
  const python = realpathSync(found.stdout.trim())
  if (python === realpathSync(DEBIAN_PYTHON) || hasPythonProbes(python)) {
    t.plan(0, `python3 on PATH (${python}) has probes`)
    return
  }
  const target = await startReady(t, python, ['-c', PYTHON_WAIT])
  // A shared build (pyenv's is) keeps the interpreter in its libpython, else in the executable.
  const libpython = mappedPaths(target.pid).find((p) => /\/libpython\d+\.\d+[a-z]*\.so/.test(p))
  const interpreter = libpython ?? python
  t.notOk(hasPythonProbes(interpreter), `readelf finds no python probes in ${interpreter}`)
  const error = await rejection(traceCalls(target.pid), t)
  t.equal(error.code, 'NO_PROBES')
  t.match(error.message, interpreter, 'names the binary without probes')
  t.match(error.message, /--with-dtrace/, 'names the build option that adds them')
})

t.test('PROBE_UNAVAILABLE: a CPython 3.12-like build without the call probes', async (t) => {
  const dir = tmpDir(t, 'py312')
  const python = compile('python312.c', join(dir, 'python3.12'), ['-rdynamic'])
  // The stand-in really is what the test claims, by readelf's account.
  const notes = spawnSync('readelf', ['-n', python], { encoding: 'utf8' }).stdout
  const probeNames = [...notes.matchAll(/Provider: python\s+Name: (\S+)/g)].map((m) => m[1]).sort()
  t.same(probeNames, ['audit', 'gc__done', 'gc__start', 'import__find__load__done', 'import__find__load__start'])
  t.match(spawnSync('readelf', ['--dyn-syms', '-W', python], { encoding: 'utf8' }).stdout, /\s8 OBJECT\s+GLOBAL\s+\S+\s+\d+ Py_Version$/m)

  const target = await startReady(t, python, [])
  const inspection = await inspect(target.pid)
  t.match(inspection.version, { major: 3, minor: 12, micro: 4 }, 'version from Py_Version 0x030C04F0')
  t.equal(inspection.probeObject, python)
  t.match(inspection.capabilities.calls, { available: false, mode: 'unavailable' }, 'calls unavailable')
  t.match(inspection.capabilities.calls, { reason: /gh-104280/ })
  t.match(inspection.capabilities.line, { available: false, mode: 'unavailable' }, 'line unavailable')
  t.same(inspection.capabilities.gc, { available: true, mode: 'native' }, 'gc native')
  t.same(inspection.capabilities.imports, { available: true, mode: 'native' }, 'imports native')
  t.same(inspection.capabilities.audit, { available: true, mode: 'native' }, 'audit native')

  for (const entries of [true, false]) {
    const error = await rejection(traceCalls(target.pid, { entries }), t)
    t.equal(error.code, 'PROBE_UNAVAILABLE', `entries: ${entries}`)
    t.match(error.message, /3\.12/, 'names the version')
    t.match(error.message, /gh-104280|removed/, 'says the probes were removed')
    t.match(error.message, /gc, imports and audit still work/, 'says what still works')
  }
})

t.test('PERMISSION_DENIED: an unprivileged tracer', async (t) => {
  t.ok(existsSync(join(ROOT, 'dist', 'index.js')), 'dist/ is built (make build)')
  const script = [
    `import { traceCalls } from ${JSON.stringify(pathToFileURL(staged('dist/index.js')).href)}`,
    'const trace = traceCalls(Number(process.argv[1]))',
    'const result = await trace.ready.then(() => ({ code: "OK" }), (e) => ({ code: e.code, message: e.message }))',
    'await trace.close()',
    'console.log(JSON.stringify(result))',
  ].join('\n')
  const traceAsNobody = async (pid: number) => {
    const { stdout } = await promisify(execFile)(
      'setpriv',
      // `env -u NODE_OPTIONS`: tap's hooks, which it adds to every child's NODE_OPTIONS, live in the checkout.
      [...NOBODY, 'env', '-u', 'NODE_OPTIONS', process.execPath, '--input-type=module', '-e', script, String(pid)],
      { cwd: '/', encoding: 'utf8' },
    )
    return JSON.parse(stdout) as { code: string; message: string }
  }
  const uidOf = (pid: number) => Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1])

  t.test('its own python: /proc is readable, BPF is refused', async (t) => {
    const target = await startReady(t, 'setpriv', [...NOBODY, DEBIAN_PYTHON, '-c', PYTHON_WAIT])
    t.equal(uidOf(target.pid), 65534, 'the target runs as nobody')
    const result = await traceAsNobody(target.pid)
    t.equal(result.code, 'PERMISSION_DENIED')
    t.match(result.message, /BPF/, 'names BPF as what was refused')
    t.notMatch(result.message, /\/proc\//, 'not a /proc failure')
    t.match(result.message, /CAP_BPF/, 'names CAP_BPF')
    t.match(result.message, /CAP_PERFMON/, 'names CAP_PERFMON')
    t.match(result.message, /run as root/, 'or root')
  })

  t.test("root's python", async (t) => {
    const target = await startReady(t, DEBIAN_PYTHON, ['-c', PYTHON_WAIT])
    t.equal(uidOf(target.pid), 0, 'the target runs as root')
    const result = await traceAsNobody(target.pid)
    t.equal(result.code, 'PERMISSION_DENIED')
    t.match(result.message, `/proc/${target.pid}/`, 'names what could not be read')
    t.match(result.message, /another user/, 'says why')
    t.match(result.message, /CAP_BPF/, 'names CAP_BPF')
    t.match(result.message, /CAP_PERFMON/, 'names CAP_PERFMON')
    t.match(result.message, /run as root/, 'or root')
  })
})

t.test('PROBE_CONFLICT: another tracer holds function__return with another semaphore', async (t) => {
  const python = copyExecutable(DEBIAN_PYTHON, tmpDir(t, 'conflict'), 'python3.11')
  const n = 10
  const target = await startWorkload(t, ['fib', String(n)], python)
  const ret = probeOffsets(python, 'python', 'function__return')
  const entry = probeOffsets(python, 'python', 'function__entry')
  t.not(ret.semaphoreFileOffset, entry.semaphoreFileOffset, 'the two probes have distinct semaphores')

  // What a bcc tool registering the wrong semaphore does: same location, another ref_ctr_offset.
  const other = rawSession(t)
  holdUprobe(other.session, target.pid, python, ret.fileOffset, entry.semaphoreFileOffset)

  for (const entries of [true, false]) {
    const error = await rejection(traceCalls(target.pid, { entries }), t)
    t.equal(error.code, 'PROBE_CONFLICT', `entries: ${entries}`)
    t.match(error.message, /function__return/, 'names the probe')
    t.match(error.message, python, 'names the object')
    t.match(error.message, /another tracer/, 'names the cause')
    t.match(error.message, /Stop the other tracer/i, 'says how to fix it')
  }

  other.close()
  // The kernel drops a closed link's uprobe a little later: wait for it, then trace.
  const scratch = rawSession(t)
  await waitForUprobeSlot(scratch.session, python, ret.fileOffset, ret.semaphoreFileOffset)
  scratch.close()
  const trace = traceCalls(target.pid)
  await trace.ready
  target.go()
  const calls = fibCalls(await collect(trace))
  t.equal(calls.entries, 2 * fibonacci(n + 1) - 1, 'with the other tracer gone, every fib entry')
  t.equal(calls.returns, 2 * fibonacci(n + 1) - 1, 'and every return')
})

t.test('the line semaphore holder falls back from DT_FINI to DT_INIT, then conflicts', async (t) => {
  const python = copyExecutable(DEBIAN_PYTHON, tmpDir(t, 'cold'), 'python3.11')
  const fini = codeFileOffset(python, dynamicEntry(python, 'FINI'))
  const init = codeFileOffset(python, dynamicEntry(python, 'INIT'))
  t.not(fini, init, 'DT_FINI and DT_INIT are two places')
  const line = probeOffsets(python, 'python', 'line')
  const wrong = probeOffsets(python, 'python', 'gc__start').semaphoreFileOffset
  t.not(wrong, line.semaphoreFileOffset, 'the squatter uses another semaphore than line')

  const { session: squatter } = rawSession(t)
  holdUprobe(squatter, -1, python, fini, wrong)
  // The kernel refuses line's semaphore at DT_FINI now: the conflict is real.
  const { session: probe } = rawSession(t)
  t.throws(() => holdUprobe(probe, -1, python, fini, line.semaphoreFileOffset), { code: 'EINVAL' }, 'DT_FINI is taken')

  const n = 12
  const first = await startWorkload(t, ['fib', String(n)], python)
  const trace = traceCalls(first.pid)
  await trace.ready
  t.throws(
    () => holdUprobe(probe, -1, python, init, wrong),
    { code: 'EINVAL' },
    'while tracing, DT_INIT is held with another semaphore (the line one)',
  )
  first.go()
  const calls = fibCalls(await collect(trace))
  t.equal(calls.entries, 2 * fibonacci(n + 1) - 1, 'every fib entry: the semaphore was raised from DT_INIT')
  t.equal(calls.returns, 2 * fibonacci(n + 1) - 1, 'every fib return')

  // The finished trace's uprobe at DT_INIT goes a little after the trace: then squat there too.
  await waitForUprobeSlot(squatter, python, init, wrong)
  const second = await startWorkload(t, ['fib', String(n)], python)
  const error = await rejection(traceCalls(second.pid), t)
  t.equal(error.code, 'PROBE_CONFLICT', 'both cold addresses taken')
  t.match(error.message, python, 'names the object')
  t.match(error.message, /line semaphore/, 'names what could not be attached')
  t.match(error.message, /another tracer/, 'names the cause')
  t.match(error.message, /Stop the other tracer/i, 'says how to fix it')
  // Returns alone need no semaphore, so they still trace.
  const returns = traceCalls(second.pid, { entries: false })
  await returns.ready
  second.go()
  t.equal(fibCalls(await collect(returns)).returns, 2 * fibonacci(n + 1) - 1, 'entries: false still traces every return')
})

t.test('INVALID_ARGUMENT: a misspelt traceCalls option is named, with the options that exist', async (t) => {
  const target = await startWorkload(t, ['fib', '1'])
  const trace = traceCalls(target.pid, { entry: false } as never)
  await t.rejects(trace.ready, { code: 'INVALID_ARGUMENT', message: /no option "entry".*entries/ })
})
