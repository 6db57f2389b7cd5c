// `usdtrace flow` in a terminal against real python3.11 workloads: the exact nesting of a
// recursion, the -M, -C and --max-depth filters, --json, and `| head` ending it cleanly with
// nothing left attached.
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import t, { type Test } from 'tap'
import { readSemaphores } from './semaphores.js'
import { WORKLOADS, startWorkload } from './targets.js'
import { CLI, ROOT, runCli, runCliPiped, shellQuote } from './cli.js'

const SHORT = 'test/targets/workloads.py'
const source = readFileSync(WORKLOADS, 'utf8').split('\n')
const defLine = (func: string) => source.findIndex((line) => line.startsWith(`def ${func}(`)) + 1

/** The CALL column of run_fib(n) as the test works it out: python evaluates fib(n-1) before fib(n-2). */
function expectedFlow(n: number, maxDepth = Infinity, only?: string): string[] {
  const lines: string[] = []
  const call = (func: string, depth: number, body: () => void) => {
    const shown = depth < maxDepth && (only === undefined || func === only)
    if (shown) lines.push(`${'  '.repeat(depth)}-> ${func}  ${SHORT}:${defLine(func)}`)
    body()
    if (shown) lines.push(`${'  '.repeat(depth)}<- ${func}`)
  }
  const fib = (k: number, depth: number): void =>
    call('fib', depth, () => {
      if (k >= 2) {
        fib(k - 1, depth + 1)
        fib(k - 2, depth + 1)
      }
    })
  call('run_fib', 0, () => fib(n, 1))
  return lines
}

/** The CALL column of every flow line, the columns before it checked for shape. */
function callColumn(t: Test, text: string): string[] {
  const lines = text.split('\n')
  const header = lines.findIndex((line) => /^\s*CPU\s+TIME\(ms\)\s+TID\s+DURATION\s+CALL$/.test(line))
  t.ok(header >= 0, 'the header: CPU TIME(ms) TID DURATION CALL')
  const column = lines[header]!.indexOf('CALL')
  const flow = lines.slice(header + 1).filter((line) => /^\s*\d+\s+\d+\.\d{3}\s+\d+\s/.test(line))
  return flow.map((line) => line.slice(column))
}

t.test('flow PID -C FILE: every call of a recursion, indented by its depth', async (t) => {
  const n = 5
  const target = await startWorkload(t, ['fib', String(n)])
  const cli = runCli(t, ['flow', String(target.pid), '-C', WORKLOADS])
  await cli.waitFor(/tracing calls in/)
  target.go()
  t.equal(await cli.exited, 0, 'exit status 0: the target exited')
  const calls = callColumn(t, cli.text)
  // The module's own frame began before the trace: its return closes the flow, without a duration.
  t.same(calls, [...expectedFlow(n), '<- <module>'], `run_fib(${n}) nested exactly`)
  const durations = cli.text.split('\n').filter((line) => / <- fib$/.test(line))
  t.ok(durations.every((line) => /\d (ns|µs|ms)\s+<- fib$/.test(line)), 'every traced return has its duration')
  t.match(cli.text, /ended: the target exited/)
})

t.test('-M and --max-depth', async (t) => {
  const n = 4
  const byMethod = await startWorkload(t, ['fib', String(n)])
  const onlyRunFib = runCli(t, ['flow', String(byMethod.pid), '-M', 'run_'])
  await onlyRunFib.waitFor(/tracing calls in/)
  byMethod.go()
  t.equal(await onlyRunFib.exited, 0)
  t.same(callColumn(t, onlyRunFib.text), expectedFlow(n, Infinity, 'run_fib'), '-M run_: run_fib only')
  const shown = expectedFlow(n, Infinity, 'run_fib').length
  t.match(onlyRunFib.text, new RegExp(`\\b${shown} shown; ended`), 'the final line counts what was shown')

  const byDepth = await startWorkload(t, ['fib', String(n)])
  const shallow = runCli(t, ['flow', String(byDepth.pid), '-C', WORKLOADS, '--max-depth', '2'])
  await shallow.waitFor(/tracing calls in/)
  byDepth.go()
  t.equal(await shallow.exited, 0)
  t.same(callColumn(t, shallow.text), [...expectedFlow(n, 2), '<- <module>'], '--max-depth 2: depths 0 and 1')
})

t.test('--json: one event per line', async (t) => {
  const n = 3
  const target = await startWorkload(t, ['fib', String(n)])
  const run = runCliPiped(t, ['flow', String(target.pid), '--json', '-M', 'fib'])
  await run.stderrMatch(/tracing calls in/)
  target.go()
  const { code, stdout } = await run.done
  t.equal(code, 0)
  const events = stdout.trim().split('\n').map((line) => JSON.parse(line))
  // Depth counts the calls shown: run_fib, hidden, does not.
  const expected = expectedFlow(n, Infinity, 'fib').map((line) => ({
    kind: line.includes('->') ? 'entry' : 'return',
    depth: (line.length - line.trimStart().length) / 2 - 1,
  }))
  t.same(events.map((e) => ({ kind: e.kind, depth: e.depth })), expected, 'kinds and depths in order')
  t.ok(events.every((e) => e.type === 'call' && e.pid === target.pid && e.func === 'fib' && e.file === WORKLOADS), 'the schema fields')
  t.ok(events.filter((e) => e.kind === 'return').every((e) => typeof e.durationNs === 'number'), 'returns carry durationNs')
  t.ok(events.every((e, i) => i === 0 || e.ns >= events[i - 1].ns), 'ns never goes backwards')
})

t.test('| head: a closed pipe ends the trace, detaches, exits 141', async (t) => {
  const target = await startWorkload(t, ['flood', '60'])
  const script = `${shellQuote(process.execPath)} ${shellQuote(CLI)} flow ${target.pid} | head -n 5; echo "cli-status=\${PIPESTATUS[0]}"`
  const shell = spawn('bash', ['-c', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => void shell.kill('SIGKILL'))
  let stdout = ''
  let stderr = ''
  shell.stdout.on('data', (d: Buffer) => (stdout += d))
  const attached = new Promise<void>((resolve) =>
    shell.stderr.on('data', (d: Buffer) => {
      stderr += d
      if (/tracing calls in/.test(stderr)) resolve()
    }),
  )
  await attached
  t.same(readSemaphores(target.pid), { entry: 1, return: 1, line: 1 }, 'attached')
  target.go()
  const [code] = await new Promise<[number | null]>((resolve) => shell.on('exit', (c) => resolve([c])))
  t.equal(code, 0)
  const lines = stdout.trimEnd().split('\n')
  t.equal(lines.length, 6, 'head printed five lines, then the status line')
  t.match(lines[0], /TIME\(ms\)\s+TID\s+DURATION\s+CALL/)
  t.equal(lines[5], 'cli-status=141', 'usdtrace exited 141: its output was closed')
  t.match(stderr, /ended: the output was closed/, 'the final line says why it ended')
  t.same(readSemaphores(target.pid), { entry: 0, return: 0, line: 0 }, 'every semaphore back to 0')
  t.equal(target.exitCode, null, 'the target runs on')
})

t.test('-C as users write it, depth over what is shown, --min-duration', async (t) => {
  const n = 4
  const byBasename = await startWorkload(t, ['fib', String(n)])
  const basename = runCli(t, ['flow', String(byBasename.pid), '-C', 'workloads.py'])
  await basename.waitFor(/tracing calls in/)
  byBasename.go()
  t.equal(await basename.exited, 0)
  t.same(callColumn(t, basename.text), [...expectedFlow(n), '<- <module>'], '-C workloads.py: the basename is enough')

  // fib's frames under a hidden run_fib count from 0: --max-depth 3 shows three levels of fib.
  const byDepth = await startWorkload(t, ['fib', String(n)])
  const shallow = runCli(t, ['flow', String(byDepth.pid), '-M', 'fib', '--max-depth', '3'])
  await shallow.waitFor(/tracing calls in/)
  byDepth.go()
  t.equal(await shallow.exited, 0)
  const shown = expectedFlow(n, 4, 'fib').map((line) => line.slice(2))
  t.same(callColumn(t, shallow.text), shown, '-M fib --max-depth 3: fib at depths 0, 1 and 2')

  // Every timed call takes at least a nanosecond: all are shown, the untimed return of <module> not.
  const slow = await startWorkload(t, ['fib', String(n)])
  const everything = runCli(t, ['flow', String(slow.pid), '-C', 'workloads.py', '--min-duration', '1ns'])
  await everything.waitFor(/tracing calls in/)
  slow.go()
  t.equal(await everything.exited, 0)
  t.same(callColumn(t, everything.text), expectedFlow(n), '--min-duration 1ns: every timed call, callers first')
})

t.test('a filter that matches nothing says what it saw', async (t) => {
  const cases: [string[], RegExp][] = [
    [['-M', 'no_such_'], /-M no_such_ matched none of the \d+ calls seen; the functions called most: fib \(\d+\)/],
    [['-C', 'nothing.py'], /-C nothing\.py matched none of the \d+ calls seen; their files: \/.*test\/targets\/workloads\.py \(\d+\)/],
    [['--min-duration', '1h'], /--min-duration 3600 s: no call took that long; the longest: \S+ \([\d.]+ (ns|µs|ms|s)\)/],
  ]
  for (const [filter, hint] of cases) {
    const target = await startWorkload(t, ['fib', '5'])
    const cli = runCli(t, ['flow', String(target.pid), ...filter])
    await cli.waitFor(/tracing calls in/)
    target.go()
    t.equal(await cli.exited, 0)
    t.match(cli.text, hint, `flow ${filter.join(' ')}`)
  }
})
