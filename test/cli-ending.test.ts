// How a command ends on a real service: repeated signals never cut the writing of what was
// collected, a pipe whose reader went away ends the trace though nothing more is written, and
// durations past what one Node timer holds (24.8 days) neither end it at once nor are refused.
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { tmpDir } from './programs/tools.js'
import { readSemaphores } from './semaphores.js'
import { startWorkload } from './targets.js'
import { CLI, ROOT, runCli, runCliPiped, shellQuote, tableAfter } from './cli.js'

t.test('two SIGINTs 10 ms apart leave a complete, valid recording', async (t) => {
  const target = await startWorkload(t, ['flood', '60'])
  const file = join(tmpDir(t, 'ending'), 'flood.json')
  const run = runCliPiped(t, ['record', String(target.pid), '-o', file])
  await run.stderrMatch(/tracing calls in/)
  target.go()
  await new Promise((resolve) => setTimeout(resolve, 500))
  // As `timeout -s INT` does: the process, then (here: 10 ms later) its group.
  process.kill(run.pid, 'SIGINT')
  await new Promise((resolve) => setTimeout(resolve, 10))
  process.kill(run.pid, 'SIGINT')
  const { code, stderr } = await run.done
  t.equal(code, 130, 'exit 130: interrupted')
  t.match(stderr, /already stopping; finishing what was collected first/, 'the second signal is acknowledged, not obeyed')
  const written = /wrote \S+ \(perfetto: ([\d,]+) calls on 1 thread\)/.exec(stderr)
  t.ok(written, 'the final line names the file and its calls')
  const trace = JSON.parse(readFileSync(file, 'utf8'))
  const begins = trace.traceEvents.filter((e: { ph: string }) => e.ph === 'B').length
  const ends = trace.traceEvents.filter((e: { ph: string }) => e.ph === 'E').length
  t.ok(begins > 0, `the recording holds ${begins} calls`)
  t.equal(begins, ends, 'every call closed: the file was written to its end')
  t.equal(begins, Number(written![1]!.replace(/,/g, '')), 'as many as the final line says')
  t.same(readSemaphores(target.pid), { entry: 0, return: 0, line: 0 }, 'nothing left attached')
})

t.test('| head -1: a filter that prints nothing still ends once the reader is gone', async (t) => {
  const target = await startWorkload(t, ['flood', '60'])
  const script = `${shellQuote(process.execPath)} ${shellQuote(CLI)} flow ${target.pid} -M no_such_function_ | head -n 1; echo "cli-status=\${PIPESTATUS[0]}"`
  const shell = spawn('bash', ['-c', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => void shell.kill('SIGKILL'))
  let stdout = ''
  let stderr = ''
  shell.stdout.on('data', (d: Buffer) => (stdout += d))
  shell.stderr.on('data', (d: Buffer) => (stderr += d))
  target.go()
  // Nothing matches -M, so after its header usdtrace never writes again: only the reader's going tells it.
  const [code] = await new Promise<[number | null]>((resolve) => shell.on('exit', (c) => resolve([c])))
  t.equal(code, 0)
  t.match(stdout, /TIME\(ms\)\s+TID\s+DURATION\s+CALL\ncli-status=141\n$/, 'the header, then usdtrace exited 141')
  t.match(stderr, /ended: the output was closed/)
  t.same(readSemaphores(target.pid), { entry: 0, return: 0, line: 0 }, 'every semaphore back to 0')
  t.equal(target.exitCode, null, 'the target runs on')
})

t.test('-d and -i of 3,000,000 s: the trace runs until the target exits', async (t) => {
  const target = await startWorkload(t, ['fib', '10'])
  const cli = runCli(t, ['calls', String(target.pid), '-d', '3000000', '-i', '3000000'])
  await cli.waitFor(/tracing calls in/)
  target.go()
  t.equal(await cli.exited, 0)
  t.match(cli.text, /ended: the target exited/, 'not ended by an overflowed timer')
  t.same(tableAfter(cli.text, /^FUNCTION\s+FILE\s+CALLS$/).find((r) => r[0] === 'run_fib'), ['run_fib', 'test/targets/workloads.py', '1'], 'with its table')

  const calls = 500
  const stat = await startWorkload(t, ['stats', String(calls), '0', tmpDir(t, 'ending-stat'), '0', '0'])
  const run = runCliPiped(t, ['stat', String(stat.pid), '-i', '35d', '--json'])
  await run.stderrMatch(/tracing counts in \d+/)
  stat.go()
  const { code, stdout } = await run.done
  t.equal(code, 0)
  const tables = stdout.trim().split('\n').map((line) => JSON.parse(line))
  t.equal(tables.length, 1, 'one table, at the exit: no table every millisecond')
  t.equal(tables[0].processes[0].calls, calls, 'with every call of the interval')
})

t.test('usage: what a value that looks like an option means', async (t) => {
  const cli = runCli(t, ['calls', '1', '-d', '-3'])
  t.equal(await cli.exited, 2)
  t.match(cli.text, /^usdtrace: -d needs a value, and '-3' looks like an option; a value starting with '-' is written --duration=-3$/m)
})
