// `usdtrace calls` in a terminal against real python3.11 workloads: exact counts, the -L columns,
// interval snapshots in --json, and Ctrl-C printing the summary and leaving no probe attached.
import t from 'tap'
import { readSemaphores } from './semaphores.js'
import { WORKLOADS, fibonacci, startWorkload } from './targets.js'
import { runCli, runCliPiped, tableAfter } from './cli.js'

const fibCalls = (n: number) => 2 * fibonacci(n + 1) - 1

t.test('calls PID counts every call until the target exits', async (t) => {
  const n = 16
  const target = await startWorkload(t, ['fib', String(n)])
  const cli = runCli(t, ['calls', String(target.pid)])
  await cli.waitFor(/tracing calls in (\d+)/)
  t.same(readSemaphores(target.pid), { entry: 0, return: 1, line: 0 }, 'counting raises only the return probe: no slowdown')
  target.go()
  t.equal(await cli.exited, 0, 'exit status 0: the target exited')
  const rows = tableAfter(cli.text, /^FUNCTION\s+FILE\s+CALLS$/)
  const row = (func: string) => rows.find((r) => r[0] === func)
  t.same(row('fib'), ['fib', 'test/targets/workloads.py', String(fibCalls(n))], `fib(${n}) made ${fibCalls(n)} calls`)
  t.same(row('run_fib'), ['run_fib', 'test/targets/workloads.py', '1'])
  t.equal(rows[0]![0], 'fib', 'the most called function first')
  t.match(cli.text, /0 calls lost; ended: the target exited/, 'the final line says nothing was lost and why it ended')
})

t.test('calls -L -m: calls, inclusive, self and mean time in milliseconds', async (t) => {
  const n = 12
  const target = await startWorkload(t, ['fib', String(n)])
  const cli = runCli(t, ['calls', String(target.pid), '-L', '-m'])
  await cli.waitFor(/tracing calls in/)
  t.same(readSemaphores(target.pid), { entry: 1, return: 1, line: 1 }, 'timing needs entries: 3.11 raises the line semaphore')
  target.go()
  t.equal(await cli.exited, 0)
  const rows = tableAfter(cli.text, /^FUNCTION\s+FILE\s+CALLS\s+TOTAL\(ms\)\s+SELF\(ms\)\s+MEAN\(ms\)\s+P50\(ms\)\s+P99\(ms\)\s+MAX\(ms\)$/)
  const fib = rows.find((r) => r[0] === 'fib')!
  t.equal(fib[2], String(fibCalls(n)), 'exact count')
  for (const cell of fib.slice(3)) t.match(cell, /^\d+\.\d{3}$/, 'milliseconds with microsecond digits')
  const runFib = rows.find((r) => r[0] === 'run_fib')!
  const totals = rows.filter((r) => r.length === 9).map((r) => Number(r[3]))
  t.same(totals, [...totals].sort((a, b) => b - a), 'sorted by total time')
  t.equal(Number(runFib[3]), Number(runFib[5]), 'one call: its total is its mean')
  t.same(runFib.slice(6), [runFib[3], runFib[3], runFib[3]], 'and its P50, P99 and MAX')
  const [p50, p99, max] = fib.slice(6).map(Number) as [number, number, number]
  t.ok(p50 <= p99 && p99 <= max, `fib: P50 ${p50} <= P99 ${p99} <= MAX ${max}`)
})

t.test('Ctrl-C prints the summary, detaches and exits 130', async (t) => {
  const target = await startWorkload(t, ['flood', '60'])
  const cli = runCli(t, ['calls', String(target.pid), '-L', '-T', '1'])
  await cli.waitFor(/tracing calls in/)
  target.go()
  const pid = await cli.cliPid()
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.same(readSemaphores(target.pid), { entry: 1, return: 1, line: 1 }, 'attached while running')
  process.kill(pid, 'SIGINT')
  t.equal(await cli.exited, 130, 'exit status 130')
  const rows = tableAfter(cli.text, /^FUNCTION\s+FILE\s+CALLS/)
  const leaf = rows.find((r) => r[0] === 'leaf')
  t.ok(leaf && Number(leaf[2]) > 0, 'the summary has the calls seen until Ctrl-C')
  t.equal(rows.filter((r) => r.length > 1).length, 1, '-T 1 keeps the top one')
  t.match(cli.text, /1 of \d+ functions?, by total time/)
  t.match(cli.text, /ended: interrupted \(SIGINT\)/)
  t.same(readSemaphores(target.pid), { entry: 0, return: 0, line: 0 }, 'every semaphore back to 0: nothing attached')
  t.equal(target.exitCode, null, 'the target runs on')
})

t.test('--json -i: a snapshot per interval that add up to every call', async (t) => {
  const target = await startWorkload(t, ['flood', '1.2'])
  let printed = ''
  target.stdout!.on('data', (d: Buffer) => (printed += d))
  const run = runCliPiped(t, ['calls', String(target.pid), '--json', '-i', '0.25'])
  await run.stderrMatch(/tracing calls in/)
  target.go()
  const { code, stdout, stderr } = await run.done
  t.equal(code, 0, `exit status 0 (stderr: ${stderr.trim()})`)
  const snapshots = stdout.trim().split('\n').map((line) => JSON.parse(line))
  t.ok(snapshots.length >= 2, `${snapshots.length} snapshots over 1.2 s`)
  t.ok(snapshots.every((s) => s.type === 'calls' && Array.isArray(s.functions) && s.seconds > 0), 'each line is a calls snapshot')
  let leaf = 0
  for (const snapshot of snapshots) {
    for (const f of snapshot.functions) if (f.func === 'leaf' && f.file === WORKLOADS) leaf += f.calls
  }
  t.equal(leaf, Number(printed.trim()), 'the snapshots add up to the calls the workload counted itself')
})

t.test('-S: the syscalls table, counted in the kernel too', async (t) => {
  const count = 40
  const target = await startWorkload(t, ['syscalls', String(count), `/nonexistent/usdtrace-calls-${process.pid}`])
  const cli = runCli(t, ['calls', String(target.pid), '-S', '-T', '50'])
  await cli.waitFor(/tracing calls in/)
  target.go()
  t.equal(await cli.exited, 0)
  const syscalls = tableAfter(cli.text, /^SYSCALL\s+CALLS$/)
  const row = (name: string) => syscalls.find((r) => r[0] === name)
  t.same(row('lseek'), ['lseek', String(count)], 'every lseek of the loop')
  t.same(row('getppid'), ['getppid', String(count)], 'every getppid')
  const functions = tableAfter(cli.text, /^FUNCTION\s+FILE\s+CALLS$/)
  t.same(functions.find((r) => r[0] === 'run_syscalls'), ['run_syscalls', 'test/targets/workloads.py', '1'], 'and the functions above it')
})

t.test('-d: stops after the duration, exit 0, nothing left attached', async (t) => {
  const target = await startWorkload(t, ['flood', '60'])
  const cli = runCli(t, ['calls', String(target.pid), '-L', '-d', '0.5'])
  await cli.waitFor(/tracing calls in .*every Python call and return trap into the kernel.*µs of CPU per call/)
  target.go()
  t.equal(await cli.exited, 0, 'exit 0')
  t.match(cli.text, /ended: the duration elapsed/)
  t.ok(Number(tableAfter(cli.text, /^FUNCTION\s+FILE\s+CALLS/).find((r) => r[0] === 'leaf')?.[2]) > 0, 'the calls of the half second')
  t.same(readSemaphores(target.pid), { entry: 0, return: 0, line: 0 }, 'every semaphore back to 0')
})
