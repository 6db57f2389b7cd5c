// The recording functions on a trace cut short in the middle of a program: frames that began
// before the trace are counted, not drawn; frames still running when it ends are closed there;
// every format stays balanced and keeps every call.
import t from 'tap'
import { CallTimeline, callTree, chromeTrace, foldedStacks, speedscopeFile, traceCalls, type CallEvent } from '../src/index.js'
import { WORKLOADS, startWorkload } from './targets.js'

t.test('a trace that starts and ends mid-run', async (t) => {
  const target = await startWorkload(t, ['flood', '30'])
  const trace = traceCalls(target.pid)
  await trace.ready
  target.go()
  const events: CallEvent[] = []
  for await (const event of trace) {
    events.push(event)
    if (events.length === 20_000) break
  }
  // The test's own replay: which entries have their return, which returns have no entry.
  const open: CallEvent[] = []
  let unmatched = 0
  let completed = 0
  for (const event of events) {
    if (event.kind === 'entry') open.push(event)
    else if (event.durationNs === undefined) unmatched++
    else {
      open.pop()
      completed++
    }
  }
  t.ok(open.some((e) => e.func === 'run_flood'), 'run_flood was still running at the cut')

  const timeline = CallTimeline.from(events)
  t.equal(timeline.untimedReturns, unmatched, 'returns without a traced entry: counted, not drawn')
  t.equal(timeline.unfinishedCalls, open.length, 'frames running at the end: closed there')
  t.equal(trace.lost, 0, 'nothing lost')
  t.equal(timeline.repairedCalls, 0, 'so nothing repaired')
  t.equal(timeline.calls, completed + open.length, 'every traced entry is a call')

  const file = speedscopeFile(timeline)
  const [profile] = file.profiles
  t.equal(profile!.events.filter((e) => e.type === 'O').length, timeline.calls, 'speedscope: an open per call')
  t.equal(profile!.events.filter((e) => e.type === 'C').length, timeline.calls, 'and a close')
  t.ok(profile!.events.every((e, i, all) => i === 0 || e.at >= all[i - 1]!.at), 'in time order')

  const chrome = chromeTrace(timeline).traceEvents
  t.equal(chrome.filter((e) => e.ph === 'B').length, chrome.filter((e) => e.ph === 'E').length, 'Chrome: B and E pair up')

  const leaves = events.filter((e) => e.kind === 'entry' && e.func === 'leaf' && e.file === WORKLOADS).length
  const tree = callTree(timeline)
  t.equal(tree.subtreeCalls, timeline.calls, 'the call tree holds every call')
  const folded = foldedStacks(timeline, { weight: 'calls' })
  let leafCalls = 0
  for (const line of folded.trimEnd().split('\n')) {
    const [, stack, weight] = /^(.*) (\d+)$/.exec(line)!
    if (stack!.split(';').at(-1)!.startsWith('leaf (test/targets/workloads.py:')) leafCalls += Number(weight)
  }
  t.equal(leafCalls, leaves, 'folded stacks keep every call of leaf')
})
