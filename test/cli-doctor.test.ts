// `usdtrace doctor` as root and as an unprivileged user: a line per requirement, the failed one
// with what it needs and the fix, and the exit status saying whether everything passed.
import { release } from 'node:os'
import t from 'tap'
import { runCli, runCliPiped } from './cli.js'

t.test('as root: every check passes, exit 0', async (t) => {
  const cli = runCli(t, ['doctor'])
  t.equal(await cli.exited, 0)
  const lines = cli.text.trim().split('\n')
  t.same(lines.map((line) => line.split(/\s+/).slice(0, 2)), [['ok', 'addon'], ['ok', 'kernel'], ['ok', 'btf'], ['ok', 'uprobe'], ['ok', 'privileges']])
  t.match(cli.text, `Linux ${release()}`, 'the kernel it runs on')
})

t.test('unprivileged: the privileges check fails with its fix, exit 1', async (t) => {
  const cli = runCli(t, ['doctor'], { asNobody: true })
  t.equal(await cli.exited, 1)
  t.match(cli.text, /^FAIL\s+privileges\s+uid 65534 /m, 'the failed check')
  t.match(cli.text, /^\s+fix: run as root, or grant CAP_BPF and CAP_PERFMON/m, 'and how to fix it')
  t.match(cli.text, /usdtrace: 1 of 5 checks failed/)
})

t.test('--json: one check per line', async (t) => {
  const { code, stdout } = await runCliPiped(t, ['doctor', '--json']).done
  t.equal(code, 0)
  const checks = stdout.trim().split('\n').map((line) => JSON.parse(line))
  t.same(checks.map((c) => [c.type, c.name, c.ok]), ['addon', 'kernel', 'btf', 'uprobe', 'privileges'].map((name) => ['check', name, true]))
  t.ok(checks.every((c) => typeof c.requirement === 'string' && typeof c.found === 'string'), 'requirement and found')
})
