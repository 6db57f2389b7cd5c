// src/export/report.ts: the flow and the summary, fed by a real traced python3.11, plus pure checks of
// units, paths and the self-time arithmetic on made-up events.
import { relative } from 'node:path'
import t from 'tap'
import { traceCalls, type CallEvent } from '../src/index.js'
import { CallSummary, FlowFormatter, formatDuration, formatMilliseconds, shortenPath } from '../src/export/report.js'
import { WORKLOADS, collect, fibonacci, startWorkload } from './targets.js'

const ms = 1_000_000n

t.test('fib(10) traced, summarized and printed', async (t) => {
  const n = 10
  const target = await startWorkload(t, ['fib', String(n)])
  const trace = traceCalls(target.pid)
  await trace.ready
  target.go()
  const events = await collect(trace)
  t.equal(trace.lost, 0, 'nothing lost')
  const main = events.filter((e) => e.tid === target.pid)

  t.test('summary', async (t) => {
    const summary = new CallSummary()
    for (const event of main) summary.add(event)
    const rows = summary.rows()
    const fib = rows.find((r) => r.file === WORKLOADS && r.func === 'fib')!
    t.ok(fib, 'a row for fib')
    t.equal(fib.calls, 2 * fibonacci(n + 1) - 1, 'fib calls: 2·F(n+1)−1')
    t.equal(fib.timedCalls, fib.calls, 'every fib call was timed')

    const fibReturns = main.filter((e) => e.func === 'fib' && e.kind === 'return')
    const outerFib = fibReturns.find((e) => e.depth === Math.min(...fibReturns.map((r) => r.depth)))!
    t.equal(fib.totalNs, outerFib.durationNs, "fib's total is the outermost fib's duration (recursion counted once)")
    const sum = fibReturns.reduce((s, e) => s + e.durationNs!, 0n)
    t.ok(fib.meanNs! - sum / BigInt(fibReturns.length) <= 1n, 'mean is the mean duration of a call')

    for (const row of rows) {
      t.ok(row.totalNs >= row.selfNs, `${row.func}: total ≥ self`)
      t.ok(row.selfNs >= 0n, `${row.func}: self ≥ 0`)
    }
    const order = rows.map((r) => r.totalNs)
    t.same(order, [...order].sort((a, b) => (a < b ? 1 : a > b ? -1 : 0)), 'rows sorted by total, descending')

    // The workload was already inside <module> when the probes attached: its return is untimed.
    const untimed = main.filter((e) => e.kind === 'return' && e.durationNs === undefined).length
    t.ok(untimed >= 1, 'the <module> frame returns without a traced entry')
    t.equal(summary.untimedCalls, untimed, 'untimed returns are counted')
    t.match(summary.format(), /without a traced entry/, 'and the footer says so')
    t.equal(summary.openCalls, 0, 'every traced entry returned before the process exited')
  })

  t.test('self times add up to the outermost frame', async (t) => {
    const [runFib] = main.filter((e) => e.func === 'run_fib' && e.kind === 'return')
    t.ok(runFib?.durationNs, 'run_fib returned, timed')
    t.equal(runFib!.depth, 0, 'run_fib is the outermost traced frame')
    const first = main.findIndex((e) => e.func === 'run_fib' && e.kind === 'entry')
    const last = main.indexOf(runFib!)
    const summary = new CallSummary()
    for (const event of main.slice(first, last + 1)) summary.add(event)
    const selfSum = summary.rows().reduce((s, r) => s + r.selfNs, 0n)
    const inclusive = runFib!.durationNs!
    t.ok(
      Math.abs(Number(selfSum - inclusive)) <= Number(inclusive) / 100,
      `Σ self ${formatDuration(selfSum)} = run_fib ${formatDuration(inclusive)} within 1%`,
    )

    // Over the whole trace: every timed frame at depth 0 is an outermost one.
    const whole = new CallSummary()
    for (const event of main) whole.add(event)
    const outermost = main
      .filter((e) => e.kind === 'return' && e.depth === 0 && e.durationNs !== undefined)
      .reduce((s, e) => s + e.durationNs!, 0n)
    const wholeSelf = whole.rows().reduce((s, r) => s + r.selfNs, 0n)
    t.ok(
      Math.abs(Number(wholeSelf - outermost)) <= Number(outermost) / 100,
      'Σ self over the whole trace = Σ of the outermost frames within 1%',
    )
  })

  t.test('flow', async (t) => {
    const flow = new FlowFormatter()
    const header = flow.header()
    const column = header.indexOf('CALL')
    t.equal(column, flow.callColumn, 'callColumn points at CALL')
    const lines = events.map((e) => flow.format(e))
    t.equal(lines.length, events.length, 'one line per event')
    t.notOk(lines.some((l) => l.includes('\n')), 'no line breaks inside a line')
    t.equal(flow.startNs, events[0]!.timestampNs, 'time counts from the first event')
    t.match(lines[0]!, new RegExp(`^\\s*${events[0]!.cpu}\\s+0\\.000\\s`), 'the first event: its CPU, then 0.000 ms')
    const short = relative(process.cwd(), WORKLOADS)
    let bad = 0
    events.forEach((event, i) => {
      const line = lines[i]!
      const arrow = event.kind === 'entry' ? '-> ' : '<- '
      const at = line.indexOf(arrow, column)
      const ok =
        line.slice(column, at).trim() === '' &&
        at - column === 2 * event.depth &&
        line.startsWith(event.func, at + 3) &&
        line.slice(0, column).includes(String(event.tid)) &&
        line.slice(0, column).trimStart().startsWith(`${event.cpu} `) &&
        (event.kind === 'return' || event.file !== WORKLOADS || line.endsWith(`  ${short}:${event.line}`)) &&
        (event.kind === 'entry' || event.durationNs === undefined || line.includes(formatDuration(event.durationNs)))
      if (!ok && bad++ < 5) t.fail('a line shows the event', { line, event })
    })
    t.equal(bad, 0, `indentation, arrow, name, place and duration on all ${lines.length} lines`)
  })
})

t.test('durations in human units', async (t) => {
  const cases: [bigint | number, string][] = [
    [0n, '0 ns'],
    [999n, '999 ns'],
    [999.6, '1.00 µs'],
    [1000n, '1.00 µs'],
    [1_234n, '1.23 µs'],
    [12_345n, '12.3 µs'],
    [123_456n, '123 µs'],
    [999_600n, '1.00 ms'],
    [4_560_000n, '4.56 ms'],
    [1_200_000_000n, '1.20 s'],
    [59_990_000_000n, '60.0 s'],
    [3_600_000_000_000n, '3600 s'],
    [-1_500n, '-1.50 µs'],
  ]
  for (const [ns, text] of cases) t.equal(formatDuration(ns), text, `${ns} ns`)
  t.equal(formatMilliseconds(1_234_567n), '1.235', 'milliseconds with 3 decimals')
  t.equal(formatMilliseconds(-500n), '-0.001', 'negative offsets stay negative')
})

t.test('paths shortened', async (t) => {
  t.equal(shortenPath('/srv/app/orders/price.py', '/srv/app'), 'orders/price.py', 'relative to cwd')
  t.equal(shortenPath('/srv/app/orders/price.py', '/srv/app/'), 'orders/price.py', 'cwd with a slash')
  t.equal(shortenPath('/srv/application.py', '/srv/app'), 'application.py', 'a sibling is not inside cwd')
  t.equal(shortenPath('/usr/lib/python3.11/json/decoder.py', '/srv'), 'json/decoder.py', 'standard library')
  t.equal(
    shortenPath('/venv/lib/python3.12/site-packages/requests/api.py', '/srv'),
    'requests/api.py',
    'installed package',
  )
  t.equal(shortenPath('/opt/tool/run.py', '/srv'), 'run.py', 'anything else: the basename')
  t.equal(shortenPath('<frozen importlib._bootstrap>', '/srv'), '<frozen importlib._bootstrap>', 'not a path')
  const flow = new FlowFormatter({ fullPaths: true, startNs: 0n })
  t.match(flow.format(event('entry', 0, 0n, 'f', undefined, '/srv/app/x.py')), /-> f {2}\/srv\/app\/x\.py:1$/, 'fullPaths')
})

function event(
  kind: CallEvent['kind'],
  depth: number,
  timestampNs: bigint,
  func: string,
  durationNs?: bigint,
  file = '/srv/app.py',
  tid = 1,
): CallEvent {
  return { kind, pid: 1, tid, timestampNs, file, func, line: 1, depth, durationNs, truncated: false }
}

t.test('self and total time on made-up events', async (t) => {
  // a (10 ms) calls b (4 ms), which calls itself (1 ms); a then calls c (3 ms). Thread 2 runs
  // b (2 ms) at the same time. Then an old frame returns without a traced entry.
  const events = [
    event('entry', 0, 0n, 'a'),
    event('entry', 0, 0n, 'b', undefined, undefined, 2),
    event('entry', 1, 1n * ms, 'b'),
    event('entry', 2, 2n * ms, 'b'),
    event('return', 2, 3n * ms, 'b', 1n * ms),
    event('return', 0, 2n * ms, 'b', 2n * ms, undefined, 2),
    event('return', 1, 5n * ms, 'b', 4n * ms),
    event('entry', 1, 6n * ms, 'c'),
    event('return', 1, 9n * ms, 'c', 3n * ms),
    event('return', 0, 10n * ms, 'a', 10n * ms),
    event('return', 0, 11n * ms, '<module>'),
    event('entry', 0, 12n * ms, 'd'),
  ]
  const summary = new CallSummary({ cwd: '/srv' })
  for (const e of events) summary.add(e)
  const rows = Object.fromEntries(summary.rows().map((r) => [r.func, r]))
  t.same(rows.a, { file: '/srv/app.py', func: 'a', calls: 1, timedCalls: 1, totalNs: 10n * ms, selfNs: 3n * ms, meanNs: 10n * ms })
  t.same(rows.b, { file: '/srv/app.py', func: 'b', calls: 3, timedCalls: 3, totalNs: 6n * ms, selfNs: 6n * ms, meanNs: (7n * ms) / 3n })
  t.same(rows.c, { file: '/srv/app.py', func: 'c', calls: 1, timedCalls: 1, totalNs: 3n * ms, selfNs: 3n * ms, meanNs: 3n * ms })
  t.same(rows['<module>'], { file: '/srv/app.py', func: '<module>', calls: 1, timedCalls: 0, totalNs: 0n, selfNs: 0n, meanNs: undefined })
  t.notOk(rows.d, 'an entry without its return is no call (yet)')
  t.same(summary.rows().map((r) => r.func), ['a', 'b', 'c', '<module>'], 'by total time')
  t.equal(summary.untimedCalls, 1)
  t.equal(summary.openCalls, 1)

  const table = summary.format(2).split('\n')
  t.match(table[0], /^FUNCTION\s+FILE\s+CALLS\s+TOTAL\s+SELF\s+MEAN$/, 'header')
  t.match(table[1], /^a\s+app\.py\s+1\s+10\.0 ms\s+3\.00 ms\s+10\.0 ms$/, 'first row')
  t.match(table[2], /^b\s+app\.py\s+3\s+6\.00 ms\s+6\.00 ms\s+2\.33 ms$/, 'second row')
  t.equal(new Set(table.slice(0, 3).map((l) => l.length)).size, 1, 'right-aligned columns end together')
  t.match(table.join('\n'), /2 of 4 functions/, 'says how many are shown')
  t.match(table.join('\n'), /1 return without a traced entry/, 'footer: untimed returns')
  t.match(table.join('\n'), /1 call was still running/, 'footer: open calls')
  t.match(new CallSummary().format(), /no completed calls/, 'an empty summary says so')
})
