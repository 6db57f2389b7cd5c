// What only sampleStacks(…).batches() has, on every CPython on this machine, probes or not: stack
// ids and stack(id), against the events' frames; one way of reading a trace; and the summaries,
// which have no batches and say so. What samples show read either way (shares and waits, code
// objects freed and reused, release) is tested over both readers (test/fixtures/readers.ts) in
// stacks-sample, stacks-codes and stacks-lifecycle.
import t from 'tap'
import { TraceError, callStats, sampleStacks, stackProfile, stats, type SampleBatch, type StackFrame, type StackSample } from '../src/index.js'
import { STACK_PYTHONS } from './fixtures/processes.js'
import { STACKS_TARGET as TARGET, asTriples, startStacksTarget as start } from './fixtures/stacks.js'
import { startWorkload } from './targets.js'

/** Reads a trace's batches until it ends; `each` sees every batch before the next overwrites it. */
async function eachBatch(batches: AsyncIterable<SampleBatch>, each: (batch: SampleBatch) => void): Promise<SampleBatch | undefined> {
  let last: SampleBatch | undefined
  for await (const batch of batches) {
    each(batch)
    last = batch
  }
  return last
}

const inSpin = (frames: readonly StackFrame[]) => frames[0]?.func === 'spin' && frames[0].file === TARGET

for (const python of STACK_PYTHONS) {
  t.test(`${python}: a stack id stands for one stack, the same frozen frames for the life of the trace: the frames the events give, sampled side by side`, async (t) => {
    const { pid, report } = await start(t, python, ['busy', '0.05'])
    const spinner = report.spinner as number
    const events = sampleStacks({ pid, hz: 199, offCpu: true })
    const batched = sampleStacks({ pid, hz: 199, offCpu: true })
    const batches = batched.batches()
    await Promise.all([events.ready, batched.ready])
    setTimeout(() => void Promise.all([events.close(), batched.close()]), 1500)
    const fromEvents = new Set<string>()
    const fromBatches = new Set<string>()
    const eventsRead = (async () => {
      for await (const sample of events as AsyncIterable<StackSample>) {
        if (sample.tid === spinner && sample.onCpu && inSpin(sample.frames)) fromEvents.add(JSON.stringify(asTriples(sample.frames)))
      }
    })()
    let problems = 0
    const expect = (ok: boolean, message: string) => {
      if (!ok && problems++ < 5) t.fail(message)
    }
    // Each id's frames as first handed out: the same frozen array for the life of the trace.
    const seen = new Map<number, readonly StackFrame[]>()
    let stackCount = 0
    let batchCount = 0
    const last = await eachBatch(batches, (batch) => {
      expect(
        [batch.pid, batch.tid, batch.cpu, batch.timestampNs, batch.onCpu, batch.offCpuNs, batch.truncated, batch.stackId].every((column) => column.length === batch.length),
        'every column has the batch\'s length',
      )
      batchCount++
      expect(batch.stackCount >= stackCount, 'stackCount never goes down')
      stackCount = batch.stackCount
      for (let i = 0; i < batch.length; i++) {
        const id = batch.stackId[i]!
        expect(id < batch.stackCount, 'every id is below stackCount')
        const frames = batch.stack(id)
        expect((seen.get(id) ?? frames) === frames, 'an id keeps its frames')
        seen.set(id, frames)
        if (batch.tid[i] === spinner && batch.onCpu[i] && inSpin(frames)) fromBatches.add(JSON.stringify(asTriples(frames)))
      }
    })
    await eventsRead
    t.equal(problems, 0, 'every row holds')

    const texts = new Set([...seen.values()].map((frames) => JSON.stringify(asTriples(frames))))
    t.ok(batchCount > 1, `ids checked across ${batchCount} batches`)
    t.equal(texts.size, seen.size, `${seen.size} ids, each a distinct stack`)
    t.ok([...seen].every(([id, frames]) => last!.stack(id) === frames && Object.isFrozen(frames)), 'the last batch gives every id the frozen frames it first had')
    t.throws(() => last!.stack(last!.stackCount), TraceError, 'an id never handed out is a TraceError')

    t.ok(fromEvents.size > 0, `the events saw the spinner in spin() on ${fromEvents.size} distinct stacks`)
    // spin()'s loop is a line or two: over some 300 samples each way, both see every one.
    t.same([...fromBatches].sort(), [...fromEvents].sort(), 'the batches saw the same stacks, frame by frame')
  })
}

t.test('sampleStacks is read one way: events after batches, or batches after events, is a TraceError', async (t) => {
  const { pid } = await start(t, STACK_PYTHONS[2]!, ['busy', '0.01'])
  const asBatches = sampleStacks(pid)
  asBatches.batches()
  await t.rejects(asBatches.next(), { name: 'TraceError', code: 'ALREADY_CONSUMED' }, 'next() on a batches trace')
  await asBatches.close()
  const asEvents = sampleStacks(pid)
  const first = await asEvents.next()
  t.notOk(first.done, 'an event')
  t.throws(() => asEvents.batches(), { name: 'TraceError', code: 'ALREADY_CONSUMED' }, 'batches() on an events trace')
  await asEvents.close()
})

t.test('the summaries have no batches: each says why and what to use, and stays readable as snapshots', async (t) => {
  const workload = await startWorkload(t, ['lines'])
  workload.go()
  const { pid } = await start(t, STACK_PYTHONS[2]!, ['busy', '0.01'])
  const summaries = [
    { name: 'callStats', trace: callStats(workload.pid, { intervalMs: 200 }), rows: /traceCalls\(…\)\.batches\(\)/ },
    { name: 'stats', trace: stats(workload.pid, { intervalMs: 200 }), rows: /traceCalls\(…\)\.batches\(\)/ },
    { name: 'stackProfile', trace: stackProfile(pid, { intervalMs: 200 }), rows: /sampleStacks\(…\)\.batches\(\)/ },
  ]
  for (const { name, trace, rows } of summaries) {
    const error = (() => {
      try {
        trace.batches()
      } catch (e) {
        return e
      }
    })()
    t.ok(error instanceof TraceError, `${name}.batches() throws a TraceError`)
    t.equal((error as TraceError).code, 'INVALID_ARGUMENT')
    t.match((error as Error).message, new RegExp(`^${name} yields one snapshot per interval, already aggregated in the kernel`), 'names the cause')
    t.match((error as Error).message, /iterate it with for await/, 'and the fix')
    t.match((error as Error).message, rows, 'and the stream with a row per event')
    const first = await trace.next()
    t.notOk(first.done, `${name}: the refusal leaves the trace readable as snapshots`)
    await trace.close()
  }
})
