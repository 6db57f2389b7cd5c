// callStats against real python3.11 processes: exact counts (with and without latency), self
// times that add up, thousands of functions created and freed, syscalls, interval snapshots.
import { once } from 'node:events'
import t, { type Test } from 'tap'
import {
  TraceError,
  callStats,
  type CallStats,
  type CallStatsOptions,
  type CallStatsSnapshot,
  type FunctionStats,
  type LatencySummary,
} from '../src/index.js'
import { readSemaphores } from './semaphores.js'
import { WORKLOADS, fibonacci, startWorkload, type Target } from './targets.js'

async function collectSnapshots(stats: CallStats): Promise<CallStatsSnapshot[]> {
  const snapshots: CallStatsSnapshot[] = []
  for await (const snapshot of stats) snapshots.push(snapshot)
  return snapshots
}

/** Starts `workload`, sums it with `options` until it exits, and returns its only (final) snapshot. */
async function finalSnapshot(t: Test, workload: string[], options: Omit<CallStatsOptions, 'pid'> = {}) {
  const target = await startWorkload(t, workload)
  const stats = callStats(target.pid, { intervalMs: Infinity, ...options })
  await stats.ready
  target.go()
  const output = outputOf(target)
  const snapshots = await collectSnapshots(stats)
  t.equal(snapshots.length, 1, 'one snapshot, the final one')
  t.equal(snapshots[0]!.final, true, 'flagged final')
  return { target, stats, snapshot: snapshots[0]!, output: await output }
}

async function outputOf(target: Target): Promise<string> {
  let output = ''
  target.stdout!.on('data', (chunk: Buffer) => (output += chunk))
  if (target.exitCode === null) await once(target, 'exit')
  return output.replace(/^ready\n/, '').trim()
}

function row(snapshot: CallStatsSnapshot, file: string, func: string): FunctionStats | undefined {
  return snapshot.functions.find((f) => f.file === file && f.func === func)
}

const floorLog2 = (ns: bigint) => ns.toString(2).length - 1

/** What every timed summary must satisfy, from its own numbers. */
function checkTimes(t: Test, summary: LatencySummary, what: string): void {
  const histogram = summary.histogram!
  t.equal(histogram.reduce((a, b) => a + b, 0), summary.timedCalls, `${what}: the histogram holds every timed call`)
  t.equal(histogram.findIndex((count) => count > 0), floorLog2(summary.minNs!), `${what}: the lowest bucket holds the minimum`)
  t.equal(histogram.length - 1, floorLog2(summary.maxNs!), `${what}: the highest bucket holds the maximum`)
  const calls = BigInt(summary.timedCalls)
  t.ok(summary.minNs! * calls <= summary.totalNs! && summary.totalNs! <= summary.maxNs! * calls, `${what}: min·n ≤ total ≤ max·n`)
}

t.test('fib(n): 2·F(n+1)−1 calls, every one timed; run_fib = its own time + fib\'s', async (t) => {
  const n = 14
  const { snapshot, stats } = await finalSnapshot(t, ['fib', String(n)])
  const fib = row(snapshot, WORKLOADS, 'fib')!
  const runFib = row(snapshot, WORKLOADS, 'run_fib')!
  t.equal(fib.calls, 2 * fibonacci(n + 1) - 1, 'fib calls')
  t.equal(fib.timedCalls, fib.calls, 'every fib call timed')
  t.equal(runFib.calls, 1, 'run_fib once')
  checkTimes(t, fib, 'fib')
  // run_fib calls only fib, and fib only fib: what is not run_fib's own time is fib's.
  t.equal(runFib.totalNs, runFib.selfNs! + fib.selfNs!, 'inclusive = self + callees, exactly')
  t.ok(fib.totalNs! > fib.selfNs!, 'recursion: fib\'s inclusive time counts nested calls again')
  t.equal(snapshot.syscalls, undefined, 'no syscalls unless asked')
  t.equal(snapshot.dropped, 0, 'nothing dropped')
  t.equal(stats.lost, 0, 'nothing lost')
  t.ok(snapshot.startNs < snapshot.endNs, 'the interval runs forward')
})

t.test('latency: false counts the same calls from returns alone, without raising the line semaphore', async (t) => {
  const n = 14
  const target = await startWorkload(t, ['fib', String(n)])
  const stats = callStats(target.pid, { latency: false, intervalMs: Infinity })
  await stats.ready
  t.same(readSemaphores(target.pid), { entry: 0, return: 1, line: 0 }, 'only the return probe is attached')
  target.go()
  const [snapshot] = await collectSnapshots(stats)
  const fib = row(snapshot!, WORKLOADS, 'fib')!
  t.equal(fib.calls, 2 * fibonacci(n + 1) - 1, 'fib calls')
  t.same(
    [fib.timedCalls, fib.totalNs, fib.selfNs, fib.minNs, fib.maxNs, fib.histogram],
    [0, undefined, undefined, undefined, undefined, undefined],
    'no times',
  )
})

t.test('self times: per thread, they add up to its outermost frame, and to its own clock within 5%', async (t) => {
  const threads = 3
  const n = 16
  const { snapshot, output } = await finalSnapshot(t, ['selftime', String(threads), String(n)])
  const clocks = new Map(output.split('\n').map((line) => line.split(' ').map(Number) as [number, number]))
  t.equal(clocks.size, threads, 'every thread timed itself')
  for (const [i, elapsedNs] of clocks) {
    const file = `<selftime ${i}>`
    // The module code that defined them ran before, outside outer_i.
    const functions = snapshot.functions.filter((f) => f.file === file && f.func !== '<module>')
    const outer = row(snapshot, file, `outer_${i}`)!
    t.equal(row(snapshot, file, `fib_${i}`)?.calls, 2 * fibonacci(n + 1) - 1, `thread ${i}: fib calls`)
    const selfSum = functions.reduce((sum, f) => sum + f.selfNs!, 0n)
    t.equal(selfSum, outer.totalNs, `thread ${i}: the self times add up to the outermost frame`)
    const ratio = Number(selfSum) / elapsedNs
    t.ok(ratio > 0.95 && ratio < 1.05, `thread ${i}: ${selfSum} ns traced vs ${elapsedNs} ns on its clock (×${ratio.toFixed(4)})`)
  }
})

t.test('thousands of functions created and freed, addresses reused: every name, every count', async (t) => {
  const count = 3000
  const { snapshot, output } = await finalSnapshot(t, ['churn', String(count)], { latency: false })
  const reused = Number(/^reused (\d+)$/m.exec(output)?.[1])
  t.ok(reused > count / 2, `name strings took earlier ones' addresses ${reused} times`)
  const churned = snapshot.functions.filter((f) => /^churn_\d+$/.test(f.func))
  t.equal(churned.length, count, 'one row per function')
  let wrong = 0
  for (const f of churned) {
    const i = Number(f.func.slice('churn_'.length))
    if (f.file !== `<churn ${Math.floor(i / 100)}>` || f.calls !== (i % 5) + 1) {
      if (wrong++ < 5) t.fail(`${f.func} in ${f.file}: ${f.calls} calls`)
    }
  }
  t.equal(wrong, 0, 'each in its own file, with its own count')
  for (let file = 0; file < count / 100; file++) {
    if (row(snapshot, `<churn ${file}>`, '<module>')?.calls !== 100) t.fail(`<churn ${file}>: 100 module runs`)
  }
  t.equal(snapshot.dropped, 0, 'nothing dropped')
})

t.test('syscalls: exact counts per syscall, timed; exit_group counted untimed', async (t) => {
  const n = 40
  const { snapshot } = await finalSnapshot(t, ['syscalls', String(n), '/nonexistent/usdtrace-stats'], { syscalls: true })
  const byName = new Map(snapshot.syscalls!.map((s) => [s.name, s]))
  t.equal(byName.get('getppid')?.calls, n, 'getppid')
  t.equal(byName.get('lseek')?.calls, n, 'lseek')
  t.equal(byName.get('lseek')?.timedCalls, n, 'every lseek timed')
  checkTimes(t, byName.get('lseek')!, 'lseek')
  t.match(byName.get('exit_group'), { calls: 1, timedCalls: 0, totalNs: undefined }, 'exit_group never returns')
  t.ok(row(snapshot, WORKLOADS, 'run_syscalls'), 'functions are summed alongside')

  const { snapshot: filtered } = await finalSnapshot(t, ['syscalls', String(n), '/nonexistent/usdtrace-stats'], {
    syscalls: ['getppid'],
    latency: false,
  })
  t.same(
    filtered.syscalls!.map((s) => [s.name, s.calls]),
    [['getppid', n]],
    'a names list sums only those',
  )
})

t.test('interval snapshots: each phase is counted in the interval it ran in, exactly', async (t) => {
  const phases = [7, 13, 5]
  const target = await startWorkload(t, ['phases'])
  const stats = callStats(target.pid, { intervalMs: 400, syscalls: ['getppid'] })
  await stats.ready
  target.go()
  const lines: Array<() => void> = []
  let buffered = ''
  target.stdout!.on('data', (chunk: Buffer) => {
    buffered += chunk
    for (let at = buffered.indexOf('done\n'); at >= 0; at = buffered.indexOf('done\n')) {
      buffered = buffered.slice(at + 5)
      lines.shift()?.()
    }
  })
  const snapshots = stats[Symbol.asyncIterator]()
  await snapshots.next()
  for (const k of phases) {
    // Right after a snapshot, the phase runs at the start of the next interval.
    const done = new Promise<bigint>((resolve) => lines.push(() => resolve(process.hrtime.bigint())))
    target.stdin!.write(`${k}\n`)
    const doneAt = await done
    const { value: snapshot } = await snapshots.next()
    t.ok(doneAt < snapshot!.endNs, `phase ${k} finished before the snapshot closed its interval`)
    t.equal(row(snapshot!, WORKLOADS, 'leaf')?.calls, k, `phase ${k}: leaf calls`)
    t.equal(snapshot!.syscalls!.find((s) => s.name === 'getppid')?.calls, k, `phase ${k}: getppid calls`)
    t.equal(snapshot!.final, false, 'not the last')
  }
  target.stdin!.end()
  let last: CallStatsSnapshot | undefined
  for (let next = await snapshots.next(); !next.done; next = await snapshots.next()) last = next.value
  t.equal(last?.final, true, 'the stream ends with the final snapshot')
  t.equal(last && row(last, WORKLOADS, 'leaf'), undefined, 'no leaf call after the phases')
})

t.test('full maps are reported as dropped; bad options are typed errors', async (t) => {
  const count = 50
  const { snapshot, stats } = await finalSnapshot(t, ['churn', String(count)], { latency: false, maxFunctions: 2 })
  t.equal(snapshot.functions.length, 2, 'the two functions that fit')
  // churn_1 … churn_49 alone make 149 calls that cannot be counted (the first two rows are the
  // first functions to return, no later than churn_0).
  t.ok(snapshot.dropped >= 149, `dropped ${snapshot.dropped} calls`)
  t.equal(stats.lost, snapshot.dropped, 'and the trace says so too')

  const target = await startWorkload(t, ['calls', '1'])
  const refusals: Array<[CallStatsOptions, RegExp]> = [
    [{ pid: target.pid, intervalMs: 0 }, /intervalMs/],
    [{ pid: target.pid, top: 1.5 }, /top/],
    [{ pid: target.pid, maxFunctions: 0 }, /maxFunctions/],
    [{ pid: target.pid, syscalls: ['getpid', 'opnat'] }, /no syscall named "opnat".*openat/],
    [{ binary: '/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0', syscalls: true }, /shared library/],
  ]
  for (const [options, message] of refusals) {
    const error = await callStats(options).ready.then(() => undefined, (e: unknown) => e)
    t.type(error, TraceError)
    t.match(error, { code: 'INVALID_ARGUMENT', message }, JSON.stringify(options))
  }
})
