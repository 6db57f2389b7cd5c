// Samples on every CPython on this machine, probes or not, across thousands of code objects freed
// and reused, each named after the function running at that moment, read as events and as
// batches (test/fixtures/readers.ts); and streams ending with their target.
import { once } from 'node:events'
import t from 'tap'
import { sampleStacks, stackProfile, type StackFrame } from '../src/index.js'
import { STACK_PYTHONS } from './fixtures/processes.js'
import { eachReader } from './fixtures/readers.js'
import { startStacksTarget as start } from './fixtures/stacks.js'

for (const python of STACK_PYTHONS) {
  t.test(`${python}: thousands of code objects, freed and reused, are each named right`, (t) =>
    eachReader(t, async (t, reader) => {
      const functions = 1500
      const { child, pid } = await start(t, python, ['unique', String(functions), '1'])
      let output = ''
      child.stdout!.on('data', (d: Buffer) => (output += d))
      // Listened for before the read: the trace ends on the exit, and may do so after node saw it.
      const exited = once(child, 'exit')
      const trace = sampleStacks(pid, { hz: 997 })
      await trace.ready
      child.stdin!.write('go\n')
      const { rows } = await reader.samples(trace)
      await exited
      const ran = new Map((JSON.parse(output.trim()) as [number, string, string][]).map(([n, start, end]) => [n, [BigInt(start), BigInt(end)]]))
      t.equal(ran.size, functions)
      let checked = 0
      let wrong = 0
      const sampled = new Set<string>()
      // Batches: each id's frames as first handed out, which the id keeps as codes are freed and reused.
      const framesOf = new Map<number, readonly StackFrame[]>()
      for (const row of rows) {
        if (row.stackId !== undefined) {
          const kept = framesOf.get(row.stackId) ?? row.frames
          if (kept !== row.frames && wrong++ < 5) t.fail('an id keeps its frames (batches)', { stackId: row.stackId, kept, frames: row.frames })
          framesOf.set(row.stackId, kept)
        }
        const frame = row.frames[0]
        const match = frame && /^f_(\d+)$/.exec(frame.func)
        if (!match) continue
        const [startNs, endNs] = ran.get(Number(match[1]))!
        const right = frame.file === `<unique-${match[1]}>` && row.timestampNs >= startNs && row.timestampNs <= endNs
        if (!right && wrong++ < 5) t.fail('a row names the function that ran then', { row, ran: [startNs, endNs] })
        sampled.add(frame.func)
        checked++
      }
      t.equal(wrong, 0, `${checked} rows in generated functions, each named after the one running`)
      t.ok(checked > functions / 2 && sampled.size > functions / 2, `most functions were sampled (${sampled.size} of ${functions})`)
      t.equal(trace.lost, 0, 'nothing lost')
    }),
  )

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
