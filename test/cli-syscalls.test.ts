// `usdtrace syscalls` against a real python3.11 workload: every lseek of a loop with its decoded
// arguments and result, a failed openat with its errno, the kernel-side -e filter, -Z and --json.
import t from 'tap'
import { startWorkload } from './targets.js'
import { runCli, runCliPiped } from './cli.js'

t.test('syscalls PID -e: strace lines with decoded arguments, results and errors', async (t) => {
  const count = 25
  const missing = `/nonexistent/usdtrace-${process.pid}`
  const target = await startWorkload(t, ['syscalls', String(count), missing])
  let printed = ''
  target.stdout!.on('data', (d: Buffer) => (printed += d))
  const cli = runCli(t, ['syscalls', String(target.pid), '-e', 'lseek,openat,getppid'])
  await cli.waitFor(/tracing syscalls/)
  target.go()
  t.equal(await cli.exited, 0, 'exit status 0: the target exited')
  const fd = Number(printed.trim())
  const lines = cli.text.split('\n')
  const column = lines.find((line) => /^\s+TIME\(ms\)\s+TID\s+DURATION\s+SYSCALL$/.test(line))!.indexOf('SYSCALL')
  const calls = lines.filter((line) => /^\s+\d+\.\d{3}\s+\d+\s/.test(line)).map((line) => line.slice(column))
  const lseeks = calls.filter((c) => c.startsWith('lseek('))
  t.same(lseeks, Array.from({ length: count }, (_, i) => `lseek(${fd}, ${i}, SEEK_SET) = ${i}`), 'every lseek: fd, offset, whence and result')
  t.equal(calls.filter((c) => c === 'getppid() = ' + process.pid).length, count, 'every getppid returns the test runner, its parent')
  t.ok(calls.includes(`openat(AT_FDCWD, "${missing}", O_RDONLY|O_CLOEXEC) = -1 ENOENT`), 'the failed open, with its errno')
  t.notOk(calls.some((c) => /^(read|write|close)\(/.test(c)), 'nothing outside -e')
  t.match(cli.text, /syscalls \(1 failed\)/, 'the final line counts the failure')
})

t.test('-Z --json: only the failures, one object each', async (t) => {
  const missing = `/nonexistent/usdtrace-json-${process.pid}`
  const target = await startWorkload(t, ['syscalls', '3', missing])
  const run = runCliPiped(t, ['syscalls', String(target.pid), '-Z', '--json'])
  await run.stderrMatch(/tracing syscalls/)
  target.go()
  const { code, stdout } = await run.done
  t.equal(code, 0)
  const events = stdout.trim().split('\n').map((line) => JSON.parse(line))
  const open = events.find((e) => e.path === missing)
  t.match(open, { type: 'syscall', pid: target.pid, name: 'openat', errno: 'ENOENT', ret: '-2', call: `openat(AT_FDCWD, "${missing}", O_RDONLY|O_CLOEXEC)` })
  t.ok(events.every((e) => e.errno !== null), 'failures only')
})
