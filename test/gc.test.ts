// traceGC against real python3.11 processes whose automatic collection is off (gc.disable()
// before the trace attaches), so the only collections are the ones the workload asks for.
import t from 'tap'
import { traceGC, type GCEvent } from '../src/index.js'
import { collect, startWorkload } from './targets.js'

t.test('gc.collect(g) for g = 0, 1, 2: one event each, with that generation', async (t) => {
  const target = await startWorkload(t, ['gc_generations'])
  const trace = traceGC(target.pid)
  await trace.ready
  const before = process.hrtime.bigint()
  target.go()
  const events = await collect(trace)
  const after = process.hrtime.bigint()
  t.same(
    events.map((e) => e.generation),
    [0, 1, 2],
  )
  t.ok(events.every((e) => e.pid === target.pid && e.tid === target.pid), 'pid and tid of the main thread')
  t.ok(events.every((e) => e.durationNs > 0n), 'durations are positive')
  t.ok(
    events.every((e) => e.startNs >= before && e.startNs + e.durationNs <= after),
    'each collection lies between go and the end of the trace (CLOCK_MONOTONIC, as hrtime)',
  )
  for (let i = 1; i < events.length; i++) {
    t.ok(events[i - 1]!.startNs + events[i - 1]!.durationNs <= events[i]!.startNs, 'collections do not overlap')
  }
  t.equal(trace.lost, 0)
})

/*
 * What gc__done reports: CPython's gc_collect_main passes n + m to the probe, the unreachable
 * objects it found (m collected, n uncollectable, which only objects with legacy finalizers are),
 * the same number gc.collect() returns. In 3.11 an instance of a plain class keeps its attributes
 * in the instance itself, so a cycle of two instances is two GC-tracked objects. Reading an
 * instance's __dict__ makes a real dict for it, tracked because it holds the other instance: four.
 */
for (const [variant, perCycle] of [
  ['plain', 2],
  ['dicts', 4],
] as const) {
  t.test(`N unreachable cycles of two instances (${variant}): collected = ${perCycle}N`, async (t) => {
    const cycles = 500
    const target = await startWorkload(t, ['gc_cycles', String(cycles), variant])
    let output = ''
    target.stdout!.on('data', (chunk: Buffer) => (output += chunk))
    const trace = traceGC(target.pid)
    await trace.ready
    target.go()
    const events: GCEvent[] = await collect(trace)
    t.equal(events.length, 2, 'a collection to start clean, then the one that finds the cycles')
    t.equal(events[1]!.generation, 2, 'gc.collect() collects the oldest generation')
    t.equal(events[1]!.collected, perCycle * cycles, `${perCycle} objects per cycle`)
    t.equal(events[1]!.collected, Number(output.trim()), 'what gc.collect() returned in the target')
  })
}

t.test('minDurationNs: the filter runs in the kernel; 0 lets every collection through', async (t) => {
  const [slow, all] = [await startWorkload(t, ['gc_generations']), await startWorkload(t, ['gc_generations'])]
  const none = traceGC(slow.pid, { minDurationNs: 1_000_000_000_000n })
  const every = traceGC({ pid: all.pid, minDurationNs: 0 })
  await Promise.all([none.ready, every.ready])
  slow.go()
  all.go()
  const [filtered, unfiltered] = await Promise.all([collect(none), collect(every)])
  t.same(filtered, [], 'no collection takes 1000 s')
  t.equal(none.lost, 0, 'they were filtered, not lost')
  t.equal(none.deliveries, 0, 'no record crossed to user space')
  t.same(
    unfiltered.map((e) => e.generation),
    [0, 1, 2],
  )
})
