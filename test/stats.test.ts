// stats() against real processes: python3.11 workloads doing known numbers of calls,
// collections, imports and thread starts, and a CPython 3.12 stand-in without the call probes.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { stats, type ProcessStats, type StatsSnapshot } from '../src/index.js'
import { DEBIAN_PYTHON, startReady } from './fixtures/processes.js'
import { compile, copyExecutable, tmpDir } from './programs/tools.js'
import { collect, startWorkload } from './targets.js'

const EXCEPTIONS_UNAVAILABLE = /no probe for raised exceptions/

/** The `stats` workload: calls, gc.collect()s, imports of fresh modules, threads; then os._exit. */
async function statsWorkload(t: Test, work: { calls?: number; collections?: number; modules?: number; threads?: number }) {
  const dir = tmpDir(t, 'stats')
  for (let i = 0; i < (work.modules ?? 0); i++) writeFileSync(join(dir, `stats_module_${i}.py`), 'VALUE = 1\n')
  const args = [work.calls, work.collections, dir, work.modules, work.threads].map((n) => String(n ?? 0))
  const target = await startWorkload(t, ['stats', ...args])
  let output = ''
  target.stdout!.on('data', (chunk: Buffer) => (output += chunk))
  return Object.assign(target, { printed: () => Number(output.trim()) })
}

/** Each pid's counts added up over every snapshot. */
function totals(snapshots: StatsSnapshot[]): Map<number, ProcessStats> {
  const sums = new Map<number, ProcessStats>()
  for (const snapshot of snapshots) {
    for (const row of snapshot.processes) {
      const sum = sums.get(row.pid) ?? { pid: row.pid }
      for (const [column, value] of Object.entries(row)) {
        if (column !== 'pid') sum[column as 'calls'] = (sum[column as 'calls'] ?? 0) + value
      }
      sums.set(row.pid, sum)
    }
  }
  return sums
}

t.test('exact counts per process in one interval; exceptions reported unavailable, not 0', async (t) => {
  const calls = 5000
  const work = { collections: 3, modules: 4, threads: 2 }
  const caller = await statsWorkload(t, { calls })
  const busy = await statsWorkload(t, work)
  // One interval: only the final snapshot, taken when both have exited.
  const trace = stats({ pids: [caller.pid, busy.pid], intervalMs: 3_600_000 })
  await trace.ready
  caller.go()
  busy.go()
  const snapshots = await collect(trace)
  t.equal(snapshots.length, 1, 'one snapshot')
  const [snapshot] = snapshots as [StatsSnapshot]
  t.equal(snapshot.final, true)
  t.same(snapshot.processes.map((row) => row.pid), [caller.pid, busy.pid].sort((a, b) => a - b), 'a row per pid')
  const rows = new Map(snapshot.processes.map((row) => [row.pid, row]))
  t.same(rows.get(caller.pid), { pid: caller.pid, calls, gcRuns: 0, gcCollected: 0, imports: 0, threads: 0 })
  const busyRow = rows.get(busy.pid)!
  t.match(busyRow, {
    gcRuns: work.collections,
    gcCollected: busy.printed(),
    imports: work.modules,
    threads: work.threads,
  })
  t.ok(busyRow.calls! >= work.threads, "importlib's and threading's Python calls, and each thread's leaf()")
  t.notOk('exceptions' in busyRow, 'no exceptions column')
  t.same(Object.keys(snapshot.unavailable), ['exceptions'])
  t.match(snapshot.unavailable.exceptions, EXCEPTIONS_UNAVAILABLE)
  t.equal(snapshot.dropped, 0)
  t.ok(snapshot.intervalNs > 0n)
})

t.test('short intervals: the snapshots add up to the same exact counts', async (t) => {
  const calls = 200_000
  const caller = await statsWorkload(t, { calls })
  const trace = stats(caller.pid, { intervalMs: 20 })
  await trace.ready
  caller.go()
  const snapshots = await collect(trace)
  t.ok(snapshots.length >= 2, `${snapshots.length} snapshots`)
  t.same(
    snapshots.map((s) => s.final),
    [...Array(snapshots.length - 1).fill(false), true],
    'only the last is final',
  )
  t.ok(
    snapshots.every((s) => s.processes.length === 1 && s.processes[0]!.pid === caller.pid),
    'the traced pid has a row in every snapshot',
  )
  t.same(totals(snapshots).get(caller.pid), { pid: caller.pid, calls, gcRuns: 0, gcCollected: 0, imports: 0, threads: 0 })
  for (let i = 1; i < snapshots.length; i++) {
    t.equal(snapshots[i]!.timestampNs - snapshots[i - 1]!.timestampNs, snapshots[i]!.intervalNs, `interval ${i}`)
  }
})

t.test('a full per-process map: what it could not count is in `dropped` and `lost`', async (t) => {
  const [first, second] = [await statsWorkload(t, { calls: 3000 }), await statsWorkload(t, { calls: 2000 })]
  const trace = stats({ pids: [first.pid, second.pid], intervalMs: 3_600_000, maxProcesses: 1 })
  await trace.ready
  first.go()
  second.go()
  const [snapshot] = (await collect(trace)) as [StatsSnapshot]
  const counted = snapshot.processes.map((row) => row.calls!)
  t.same(
    [...counted].sort((a, b) => a - b),
    [0, counted.find((c) => c > 0)],
    'one process got the only slot, the other counted nothing',
  )
  t.equal(counted[0]! + counted[1]! + snapshot.dropped, 3000 + 2000, 'counted + dropped = every call')
  t.equal(trace.lost, snapshot.dropped, 'lost says the same')
})

t.test('a CPython 3.12 stand-in: the columns it cannot give are named, the others counted', async (t) => {
  const python = compile('python312.c', join(tmpDir(t, 'stats-py312'), 'python3.12'), ['-rdynamic'])
  const target = await startReady(t, python, [])
  const trace = stats(target.pid, { intervalMs: 3_600_000 })
  await trace.ready
  // One read of stdin fires each probe once (python312.c), then end of input exits it.
  target.stdin!.end('go\n')
  const [snapshot] = (await collect(trace)) as [StatsSnapshot]
  t.same(snapshot.processes, [{ pid: target.pid, gcRuns: 1, gcCollected: 0, imports: 1 }])
  t.same(Object.keys(snapshot.unavailable).sort(), ['calls', 'exceptions', 'threads'])
  t.match(snapshot.unavailable.calls, /3\.12.*gh-104280/)
  t.match(snapshot.unavailable.threads, /PyThread_start_new_thread/)
  t.match(snapshot.unavailable.exceptions, EXCEPTIONS_UNAVAILABLE)
})

t.test('{ binary }: every process of the executable, each under its own pid', async (t) => {
  // A copy of python3.11 (its own inode), so no other python on the machine is touched.
  const python = copyExecutable(DEBIAN_PYTHON, tmpDir(t, 'stats-binary'), 'python3.11')
  const [a, b] = [
    await startWorkload(t, ['stats', '300', '0', '/nonexistent', '0', '1'], python),
    await startWorkload(t, ['stats', '700', '0', '/nonexistent', '0', '0'], python),
  ]
  const trace = stats({ binary: python, intervalMs: 20 })
  await trace.ready
  a.go()
  b.go()
  const snapshots: StatsSnapshot[] = []
  const done = () => {
    const sums = totals(snapshots)
    return sums.get(a.pid)?.threads === 1 && sums.get(b.pid)?.calls === 700
  }
  for await (const snapshot of trace) {
    snapshots.push(snapshot)
    if (done()) break
  }
  const sums = totals(snapshots)
  t.match(sums.get(a.pid), { gcRuns: 0, imports: 0, threads: 1 }, 'the thread a started')
  t.ok(sums.get(a.pid)!.calls! >= 300 + 1, "a's 300 leaf() calls, its thread's, and threading's own")
  t.same(sums.get(b.pid), { pid: b.pid, calls: 700, gcRuns: 0, gcCollected: 0, imports: 0, threads: 0 })
  t.ok(snapshots.every((s) => !s.final), 'a binary has no end: no final snapshot')
  t.ok(
    snapshots.every((s) => s.processes.every((row) => row.pid === a.pid || row.pid === b.pid)),
    'no other process',
  )
})
