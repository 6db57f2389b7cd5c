// `usdtrace usdt` and `usdtrace libcalls` against real processes: a program's own USDT probes
// with typed and with declared-size arguments, by pid and by path (processes started later
// included), CPython 3.11's function__entry, and the libc calls of a python3.11 workload.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import t from 'tap'
import { startReady } from './fixtures/processes.js'
import { compile, tmpDir } from './programs/tools.js'
import { WORKLOADS, fibonacci, startWorkload } from './targets.js'
import { runCli, runCliPiped } from './cli.js'

const hitLines = (text: string) => text.split('\n').filter((line) => /^\s+\d+\.\d{3}\s+\d+\s+\d+\s+demoapp:/.test(line))

t.test('usdt PID provider:name --args str,i32: every hit, decoded', async (t) => {
  const app = compile('usdt-app.c', join(tmpDir(t, 'usdt'), 'demo-app'))
  const target = await startReady(t, app, [])
  const cli = runCli(t, ['usdt', String(target.pid), 'demoapp:request__start', '--args', 'str,i32'])
  await cli.waitFor(/tracing demoapp:request__start \(str, i32\) in \d+/)
  target.stdin!.end('hello\nwith "quotes"\nthird\n')
  t.equal(await cli.exited, 0, 'exit status 0: the target exited')
  const hits = hitLines(cli.text).map((line) => line.replace(/^.*?demoapp:request__start  /, ''))
  t.same(hits, ['"hello" 0', '"with \\"quotes\\"" 1', '"third" 2'], 'each line the program read, and its count')
  t.match(cli.text, /3 hits in .*0 events lost; ended: the target exited/)
})

t.test('usdt PATH: processes started later, arguments by their declared size', async (t) => {
  const app = compile('usdt-app.c', join(tmpDir(t, 'usdt-path'), 'demo-app'))
  const run = runCliPiped(t, ['usdt', app, 'demoapp:request__done', '--json'])
  await run.stderrMatch(/tracing demoapp:request__done \(i64\) in every process of/)
  const pids: number[] = []
  for (let i = 0; i < 2; i++) {
    const child = spawn(app, [], { stdio: ['pipe', 'ignore', 'ignore'] })
    pids.push(child.pid!)
    child.stdin.end('a\nb\n')
    await once(child, 'exit')
  }
  await run.stdoutMatch(new RegExp(`"pid":${pids[1]}.*\\n.*"pid":${pids[1]}`))
  // The trace of a file runs until stopped.
  process.kill(run.pid, 'SIGINT')
  const result = await run.done
  t.equal(result.code, 130, 'Ctrl-C: exit 130')
  const hits = result.stdout.trim().split('\n').map((line) => JSON.parse(line))
  t.same(hits.map((h) => [h.pid, h.args]), [[pids[0], ['0']], [pids[0], ['1']], [pids[1], ['0']], [pids[1], ['1']]], 'both processes, request__done(long) as i64')
})

t.test('libcalls PID -e lseek: every call into libc, with arguments and result', async (t) => {
  const count = 12
  const target = await startWorkload(t, ['syscalls', String(count), '/nonexistent/usdtrace-libcalls'])
  let printed = ''
  target.stdout!.on('data', (d: Buffer) => (printed += d))
  const cli = runCli(t, ['libcalls', String(target.pid), '-e', 'lseek'])
  await cli.waitFor(/tracing lseek of libc in \d+/)
  target.go()
  t.equal(await cli.exited, 0)
  const fd = Number(printed.trim())
  const calls = cli.text.split('\n').filter((line) => /^\s+\d+\.\d{3}\s+\d+\s/.test(line)).map((line) => line.replace(/^.*?\s(?=lseek\()/, ''))
  t.same(calls, Array.from({ length: count }, (_, i) => `lseek(${fd}, ${i}, 0) = ${i}`), 'each lseek: fd, offset, SEEK_SET, the new offset')
})

t.test('usdt PID python:function__entry on 3.11: a line per call', async (t) => {
  const n = 5
  const target = await startWorkload(t, ['fib', String(n)])
  const cli = runCli(t, ['usdt', String(target.pid), 'python:function__entry', '--args', 'str,str'])
  await cli.waitFor(/tracing python:function__entry/)
  target.go()
  t.equal(await cli.exited, 0)
  const fib = cli.text.split('\n').filter((line) => line.endsWith(`python:function__entry  "${WORKLOADS}" "fib"`))
  t.equal(fib.length, 2 * fibonacci(n + 1) - 1, 'fib(n) calls fib 2F(n+1) - 1 times: a line each')
})
