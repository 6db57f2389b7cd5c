// pprof written by usdtrace, read by pprof itself: `usdtrace record --format pprof` of fib(n),
// opened with `go tool pprof -top` (Debian's golang-go), must show every fib call in fib's flat
// count and the whole recursion in run_fib's cum, as the test's own arithmetic counts them.
import { join } from 'node:path'
import t from 'tap'
import { tmpDir } from './programs/tools.js'
import { fibonacci, startWorkload } from './targets.js'
import { runCli } from './cli.js'
import { pprofTop } from './fixtures/pprof.js'

const N = 12
const fibCalls = 2 * fibonacci(N + 1) - 1

t.test('usdtrace record --format pprof opens in go tool pprof with every call', async (t) => {
  const path = join(tmpDir(t, 'pprof'), 'fib.pb.gz')
  const target = await startWorkload(t, ['fib', String(N)])
  const cli = runCli(t, ['record', String(target.pid), '-o', path])
  await cli.waitFor(/tracing calls in/)
  target.go()
  t.equal(await cli.exited, 0, 'exit status 0: the target exited')
  t.match(cli.text, /\(pprof: /, 'the format came from the .pb.gz name')

  const calls = pprofTop(path, 'calls')
  t.match(calls.header, /Type: calls/, 'the calls sample type')
  t.same(calls.rows.get('fib'), { flat: fibCalls, cum: fibCalls }, `fib: ${fibCalls} calls, each its own stack's innermost frame`)
  t.same(calls.rows.get('run_fib'), { flat: 1, cum: fibCalls + 1 }, 'run_fib: one call, and the recursion under it')

  const wall = pprofTop(path, 'wall')
  t.match(wall.header, /Type: wall/, 'the wall time sample type, shown by default')
  t.ok(wall.rows.has('fib') && wall.rows.has('run_fib'), 'both functions have time')
})
