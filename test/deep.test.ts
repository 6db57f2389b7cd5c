// Frames at any depth: recursion 10,000 frames deep, mutual recursion, an exception unwinding
// hundreds of frames and imports nested hundreds deep, far past the frames a thread keeps in its
// own map entry (bpf/thread_stack.bpf.h). Every return whose entry was traced is timed, exactly,
// at its depth; the pages the deep frames took are given back.
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import t, { type Test } from 'tap'
import { callStats, inspect, traceCalls, traceImports, type CallEvent, type CallStatsSnapshot, type FunctionStats } from '../src/index.js'
import { attachPythonProbe, openAttached, raiseLineSemaphore } from '../src/kernel/attach.js'
import { callSessionOptions } from '../src/streams/calls.js'
import { mapEntries } from './fixtures/maps.js'
import { tmpDir } from './fixtures/package.js'
import { WORKLOADS, collect, startWorkload, type Target } from './targets.js'

/** The run_deep workloads: how deep each goes, and the functions that recurse. */
const RECURSIONS = [
  { kind: 'descend', funcs: ['descend'], depth: 10_000 },
  { kind: 'mutual', funcs: ['ping', 'pong'], depth: 10_000 },
  { kind: 'unwind', funcs: ['sink'], depth: 1_000 },
]

/** What run_deep printed: the deep thread's id, and when its deep_<kind> call began and ended. */
async function deepThread(target: Target): Promise<{ tid: number; startNs: bigint; endNs: bigint }> {
  const [line] = (await once(createInterface({ input: target.stdout! }), 'line')) as [string]
  const [tid, start, end] = line.split(' ')
  return { tid: Number(tid), startNs: BigInt(start!), endNs: BigInt(end!) }
}

/**
 * Replays the thread's events on a stack of its own: every return pairs with the entry on top,
 * at that entry's depth, timed as its timestamp minus the entry's. Returns the thread's returns.
 */
function checkThread(t: Test, events: CallEvent[], tid: number): CallEvent[] {
  const stack: CallEvent[] = []
  const returns: CallEvent[] = []
  let problems = 0
  const expect = (ok: boolean, message: string, event: CallEvent) => {
    if (!ok && problems++ < 5) t.fail(message, { event })
  }
  for (const event of events.filter((e) => e.tid === tid)) {
    if (event.kind === 'entry') {
      expect(event.depth === stack.length, 'an entry sits one deeper than its caller', event)
      stack.push(event)
      continue
    }
    const entry = stack.pop()
    expect(entry !== undefined, 'the thread began after the trace: every return has its entry', event)
    if (!entry) continue
    expect(entry.func === event.func && entry.file === event.file, 'a return matches its entry', event)
    expect(event.depth === stack.length, "a return has its entry's depth", event)
    expect(event.durationNs !== undefined, 'every return is timed', event)
    expect(event.durationNs === event.timestampNs - entry.timestampNs, 'its duration is its timestamp minus its entry\'s', event)
    returns.push(event)
  }
  t.equal(problems, 0, `thread ${tid}: ${events.filter((e) => e.tid === tid).length} events nest and are timed`)
  t.equal(stack.length, 0, 'every frame returned')
  return returns
}

for (const { kind, funcs, depth } of RECURSIONS) {
  t.test(`traceCalls, ${kind} ${depth} deep: every return timed, at its depth`, async (t) => {
    const target = await startWorkload(t, ['deep', kind, String(depth)])
    const trace = traceCalls(target.pid)
    await trace.ready
    target.go()
    const [events, thread] = await Promise.all([collect(trace), deepThread(target)])
    const all = checkThread(t, events, thread.tid).filter((e) => e.file === WORKLOADS)
    const returns = all.filter((e) => funcs.includes(e.func))
    t.equal(returns.length, depth + 1, `${funcs.join(' and ')} returned ${depth + 1} times`)
    const outer = all.find((e) => e.func === `deep_${kind}`)
    const depths = returns.map((e) => e.depth)
    t.same([Math.min(...depths), Math.max(...depths)], [outer!.depth + 1, outer!.depth + 1 + depth], `from right under deep_${kind} to ${depth} frames below`)
    if (kind === 'mutual') t.same([...new Set(returns.filter((e) => e.depth % 2 === outer!.depth % 2).map((e) => e.func))], ['pong'], 'ping and pong take turns')
    const outermost = returns.find((e) => e.depth === outer!.depth + 1)!
    t.ok(thread.startNs <= outermost.timestampNs - outermost.durationNs! && outermost.timestampNs <= thread.endNs, "inside the target's own clock readings around it")
    t.equal(trace.lost, 0, 'nothing lost')
  })
}

function row(snapshot: CallStatsSnapshot, func: string): FunctionStats {
  return snapshot.functions.find((f) => f.file === WORKLOADS && f.func === func)!
}

for (const { kind, funcs, depth } of RECURSIONS) {
  t.test(`callStats, ${kind} ${depth} deep: every call counted and timed, self times add up`, async (t) => {
    const target = await startWorkload(t, ['deep', kind, String(depth)])
    const stats = callStats(target.pid, { intervalMs: Infinity })
    await stats.ready
    target.go()
    const [snapshots, thread] = await Promise.all([collect(stats), deepThread(target)])
    const snapshot = snapshots.at(-1)!
    const rows = funcs.map((func) => row(snapshot, func))
    const calls = rows.reduce((sum, f) => sum + f.calls, 0)
    const timed = rows.reduce((sum, f) => sum + f.timedCalls, 0)
    t.same([calls, timed], [depth + 1, depth + 1], `${depth + 1} calls, every one timed`)
    // deep_<kind> calls nothing but the recursion: what is not its own time is the recursion's, all of it self time somewhere.
    const outer = row(snapshot, `deep_${kind}`)
    const recursionSelf = rows.reduce((sum, f) => sum + f.selfNs!, 0n)
    t.equal(outer.totalNs, outer.selfNs! + recursionSelf, 'inclusive = self + the recursion\'s self times, exactly')
    // The outermost frame of the recursion is the longest, and it is all deep_<kind> waited for.
    const longest = rows.reduce((max, f) => (f.maxNs! > max ? f.maxNs! : max), 0n)
    t.equal(longest, outer.totalNs! - outer.selfNs!, "the longest call is the outermost, which is the rest of deep_<kind>'s time")
    t.ok(outer.totalNs! <= thread.endNs - thread.startNs, "inside the target's own clock readings around it")
    t.equal(snapshot.dropped, 0, 'nothing dropped')
    t.equal(stats.lost, 0, 'nothing lost')
  })
}

t.test('traceImports, 300 modules each importing the next: every load timed, nested at its depth', async (t) => {
  const depth = 300
  const dir = tmpDir(t, 'nested-imports')
  for (let i = 0; i < depth; i++) writeFileSync(join(dir, `nested_${i}.py`), i + 1 < depth ? `import nested_${i + 1}\n` : 'VALUE = 1\n')
  const target = await startWorkload(t, ['nested_imports', dir, String(depth)])
  const trace = traceImports(target.pid)
  await trace.ready
  target.go()
  const loads = (await collect(trace)).filter((e) => e.module.startsWith('nested_'))
  // A load is reported when it ends: the innermost first.
  t.same(
    loads.map((e) => [e.module, e.depth]),
    Array.from({ length: depth }, (_, i) => [`nested_${depth - 1 - i}`, depth - 1 - i]),
    'the innermost load first, each at the depth of the loads around it',
  )
  t.ok(loads.every((e) => e.durationNs !== undefined), 'every load timed')
  let outside = 0
  for (let i = 1; i < loads.length; i++) {
    const [inner, outer] = [loads[i - 1]!, loads[i]!]
    if (!(outer.startNs! <= inner.startNs! && inner.startNs! + inner.durationNs! <= outer.startNs! + outer.durationNs!)) outside++
  }
  t.equal(outside, 0, 'each load covers the one it made')
  t.equal(trace.lost, 0, 'nothing lost')
})

t.test('a thread gives its pages back as it comes up, and all it holds as it exits deep', async (t) => {
  const depth = 1_000
  // At the bottom: run_deep_exit, depth + 1 dives, the lambda and pause. The first 256 frames
  // live in the thread's entry, the rest in pages of 256 (bpf/thread_stack.bpf.h).
  const pagesAtBottom = Math.ceil((depth + 4 - 256) / 256)
  const survivor = await startWorkload(t, ['lines'])
  const target = await startWorkload(t, ['deep_exit', String(depth)])
  const trace = traceCalls({ pids: [survivor.pid, target.pid] })
  await trace.ready
  const events = collect(trace)
  const lines = createInterface({ input: target.stdout! })[Symbol.asyncIterator]()
  const reach = async (said: string) => t.same((await lines.next()).value, said, `the target is ${said}`)
  target.go()
  await reach('bottom')
  t.same([mapEntries('threads'), mapEntries('frame_pages')], [[1], [pagesAtBottom]], `at the bottom: one stack, ${pagesAtBottom} pages`)
  target.stdin!.write('\n')
  await reach('back')
  t.same([mapEntries('threads'), mapEntries('frame_pages')], [[1], [1]], 'back up: one page kept, the spare')
  const exited = once(target, 'exit')
  target.stdin!.write('\n')
  await exited
  t.same([mapEntries('threads'), mapEntries('frame_pages')], [[0], [0]], 'exited from the bottom: nothing left')
  survivor.stdin!.end()
  const returns = (await events).filter((e) => e.pid === target.pid && e.func === 'dive' && e.kind === 'return')
  t.equal(returns.length, depth + 1, 'every dive of the way back up returned')
  t.ok(returns.every((e) => e.durationNs !== undefined), 'every one timed')
  t.equal(trace.lost, 0, 'nothing lost')
})

t.test('frames that find no page are counted, never dropped silently', async (t) => {
  const depth = 1_000
  const target = await startWorkload(t, ['deep_count', String(depth)])
  const inspection = await inspect(target.pid)
  const options = callSessionOptions({}, [inspection])
  // The calls object as traceCalls loads and attaches it, with room for one page where the
  // recursion needs three.
  const session = await openAttached({ ...options, maxEntries: { ...options.maxEntries, frame_pages: 1 } }, [inspection], (session) => {
    attachPythonProbe(session, inspection, 'on_call_return', 'function__return')
    attachPythonProbe(session, inspection, 'on_call_entry', 'function__entry')
    raiseLineSemaphore(session, inspection, 'hold_semaphore')
  })
  t.teardown(() => session.close())
  const printed = once(createInterface({ input: target.stdout! }), 'line')
  target.go()
  const [line] = (await printed) as [string]
  await once(target, 'exit')
  // 256 frames in the thread's entry and 256 in the one page (bpf/thread_stack.bpf.h): each frame
  // deeper had nowhere to go, and its return went untimed.
  const counters = session.counters()
  t.equal(counters.dropped_deep_frames, BigInt(Number(line) - 512), `${Number(line)} frames open at the bottom: all past the 512th counted`)
  t.equal(counters.dropped_thread_slots, 0n, 'every thread had its entry')
})
