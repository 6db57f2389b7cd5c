// The cap on a trace's batch ids (maxIds), against real processes: a target that makes many more
// distinct values (audit event names, read by traceAudit and as a USDT str argument; stacks)
// than a small cap. The first `cap` distinct values get ids and names; later new ones get
// UNNAMED_ID in rows that are still delivered, and trace.unnamed counts them.
import t from 'tap'
import { TraceError, UNNAMED_ID, sampleStacks, stackProfile, traceAudit, traceImports, traceUsdt, type SampleBatch } from '../src/index.js'
import { STACK_PYTHONS } from './fixtures/processes.js'
import { startStacksTarget } from './fixtures/stacks.js'
import { startWorkload } from './targets.js'

/** One batch's id column and its namer, whichever stream it came from. */
interface IdColumn {
  ids: Uint32Array
  name(id: number): string
  count: number
}

/** Rows per id over a trace's batches, and the last batch's namer and id count. */
async function rowsPerId(batches: AsyncIterable<unknown>, column: (batch: any) => IdColumn) {
  const rows = new Map<number, number>()
  let last: IdColumn | undefined
  for await (const batch of batches) {
    last = column(batch)
    for (const id of last.ids) rows.set(id, (rows.get(id) ?? 0) + 1)
  }
  return { rows, last: last! }
}

t.test('maxIds: names past the cap are delivered as UNNAMED_ID and counted in trace.unnamed, for traceAudit and a USDT str argument', async (t) => {
  const count = 5000
  const distinct = 1000
  const cap = 100
  const target = await startWorkload(t, ['audit_events', String(count), String(distinct)])
  let output = ''
  target.stdout!.on('data', (chunk: Buffer) => (output += chunk))
  const usdt = traceUsdt({ pid: target.pid, provider: 'python', name: 'audit', args: ['str'], maxIds: cap })
  const audit = traceAudit(target.pid, { maxIds: cap })
  await Promise.all([usdt.ready, audit.ready])
  target.go()
  const [fromUsdt, fromAudit] = await Promise.all([
    rowsPerId(usdt.batches(), (batch) => ({ ids: batch.args[0], name: (id: number) => batch.string(id), count: batch.stringCount })),
    rowsPerId(audit.batches(), (batch) => ({ ids: batch.nameId, name: (id: number) => batch.name(id), count: batch.nameCount })),
  ])
  const sent = Number(output.replace(/^ready\n/, '').trim())
  t.equal(sent, count, 'the target made every sys.audit() call')

  // sys.audit(f"usdtrace.batch_{i % distinct}") for i below count: name k is first seen k-th,
  // and seen once for every i = k + n * distinct below count. Then one long name, new too.
  const expected = new Map(Array.from({ length: cap }, (_, k) => [k, Math.ceil((count - k) / distinct)]))
  const named = [...expected.values()].reduce((sum, rows) => sum + rows, 0)
  for (const [stream, trace, { rows, last }] of [
    ['traceUsdt', usdt, fromUsdt],
    ['traceAudit', audit, fromAudit],
  ] as const) {
    t.equal(last.count, cap, `${stream}: ${cap} ids, no more`)
    t.same(Array.from({ length: cap }, (_, k) => last.name(k)), Array.from({ length: cap }, (_, k) => `usdtrace.batch_${k}`), `${stream}: the first ${cap} names, in the order first seen`)
    const unnamedRows = rows.get(UNNAMED_ID) ?? 0
    rows.delete(UNNAMED_ID)
    t.same(rows, expected, `${stream}: each of them every time it was sent`)
    t.equal(unnamedRows, sent - named + 1, `${stream}: every other call a row of UNNAMED_ID`)
    t.equal(trace.unnamed, sent - named + 1, `${stream}: trace.unnamed counts them`)
    t.equal(trace.lost, 0, `${stream}: nothing lost`)
    t.throws(() => last.name(UNNAMED_ID), { name: 'TraceError', code: 'INVALID_ARGUMENT', message: /UNNAMED_ID.*maxIds/ }, `${stream}: UNNAMED_ID names nothing, and says why`)
  }
})

t.test('maxIds: stacks past the cap are UNNAMED_ID, after the ids handed out, and counted in trace.unnamed', async (t) => {
  const cap = 10
  // Functions made and run in turn: a stack of its own each, many more than the cap.
  const { child, pid } = await startStacksTarget(t, STACK_PYTHONS[0]!, ['unique', '200', '2'])
  const trace = sampleStacks(pid, { hz: 997, maxIds: cap })
  const batches = trace.batches()
  await trace.ready
  child.stdin!.write('go\n')
  const ids: number[] = []
  let last: SampleBatch | undefined
  for await (const batch of batches) {
    ids.push(...batch.stackId)
    last = batch
  }
  const firstSeen = [...new Set(ids)]
  const unnamedRows = ids.filter((id) => id === UNNAMED_ID).length
  t.equal(last!.stackCount, cap, `${cap} ids, no more`)
  t.same(firstSeen.filter((id) => id !== UNNAMED_ID), Array.from({ length: cap }, (_, id) => id), 'ids handed out dense from 0, in ring order')
  t.ok(ids.indexOf(UNNAMED_ID) > ids.indexOf(cap - 1), 'no stack is unnamed before the last id is handed out')
  t.ok(unnamedRows > 0, `${unnamedRows} of ${ids.length} rows are of stacks past the cap`)
  t.equal(trace.unnamed, unnamedRows, 'trace.unnamed counts every one of them')
  t.equal(new Set(Array.from({ length: cap }, (_, id) => JSON.stringify(last!.stack(id)))).size, cap, 'each id a distinct stack')
  t.throws(() => last!.stack(UNNAMED_ID), TraceError, 'UNNAMED_ID has no frames: a TraceError')
  t.equal(trace.lost, 0, 'nothing lost')
})

t.test('maxIds: a bad value rejects ready; stackProfile, summed in the kernel, has no ids to cap', async (t) => {
  const target = await startWorkload(t, ['audit_events', '1', '1'])
  for (const maxIds of [0, 1.5, 2 ** 32]) {
    await t.rejects(traceImports(target.pid, { maxIds }).ready, { name: 'TraceError', code: 'INVALID_ARGUMENT', message: /maxIds must be an integer from 1 to 4294967295/ }, `maxIds ${maxIds}`)
  }
  await t.rejects(stackProfile(target.pid, { maxIds: 10 } as object).ready, { name: 'TraceError', code: 'INVALID_ARGUMENT', message: /no option "maxIds"/ })
})
