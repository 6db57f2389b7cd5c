// dumpStacks on every CPython on this machine, probes or not, against the target's own
// sys._current_frames(); and how inspect() says each is read.
import t from 'tap'
import { dumpStacks, inspect } from '../src/index.js'
import { STACK_PYTHONS } from './fixtures/processes.js'
import { asTriples, startStacksTarget as start, threadGone } from './fixtures/stacks.js'

/** The deepest stack a sample carries (STACK_FRAMES_MAX in bpf/usdtrace.h). */
const FRAMES_KEPT = 127

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

}

t.test('inspect says how each CPython stacks are read', async (t) => {
  for (const python of STACK_PYTHONS) {
    const { pid } = await start(t, python, ['idle'])
    const { capabilities, version } = await inspect(pid)
    const mode = version!.minor >= 13 ? 'debug-offsets' : 'version-table'
    t.same(capabilities.stacks, { available: true, mode }, `${python}: ${mode}`)
  }
})
