// What the command says when it cannot do what was asked: one line naming the cause and the fix,
// no stack trace unless --debug, and an exit status that says which kind of failure it was.
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { DEBIAN_PYTHON, PYTHON_WAIT, deadPid, startReady } from './fixtures/processes.js'
import { NOBODY } from './fixtures/staged.js'
import { compile, tmpDir } from './programs/tools.js'
import { readSemaphores } from './semaphores.js'
import { startWorkload } from './targets.js'
import { runCli } from './cli.js'

/** Runs usdtrace ARGS, expects `status` and exactly one line of output; returns it. */
async function oneLine(t: Test, args: string[], status: number, options: { asNobody?: boolean; cwd?: string } = {}): Promise<string> {
  const cli = runCli(t, args, options)
  t.equal(await cli.exited, status, `exit status ${status}`)
  const lines = cli.text.trim().split('\n')
  t.equal(lines.length, 1, `one line: ${cli.text.trim()}`)
  t.notMatch(cli.text, /^\s+at /m, 'no stack trace')
  return lines[0]!
}

t.test('no such process', async (t) => {
  const pid = await deadPid()
  const line = await oneLine(t, ['calls', String(pid)], 1)
  t.match(line, new RegExp(`^usdtrace: no process with pid ${pid}; .*usdtrace ps`))
})

t.test('--debug adds the code and the stack', async (t) => {
  const pid = await deadPid()
  const cli = runCli(t, ['flow', String(pid), '--debug'])
  t.equal(await cli.exited, 1)
  t.match(cli.text, /\[NO_SUCH_PROCESS\]/)
  t.match(cli.text, /^\s+at /m, 'the stack')
})

t.test('a python without probes: how to get one', async (t) => {
  const stripped = join(tmpDir(t, 'noprobes'), 'python3.11')
  execFileSync('objcopy', ['--remove-section=.note.stapsdt', DEBIAN_PYTHON, stripped])
  const target = await startReady(t, stripped, ['-c', PYTHON_WAIT])
  const line = await oneLine(t, ['flow', String(target.pid)], 1)
  t.match(line, /no python USDT probes/, 'the cause')
  t.match(line, /--with-dtrace/, 'why')
  t.match(line, /Debian\/Ubuntu python3\.X/, 'where to get one')
})

t.test('CPython 3.12-3.14: no call probes; what still works', async (t) => {
  const python = compile('python312.c', join(tmpDir(t, 'py312'), 'python3.12'), ['-rdynamic'])
  const target = await startReady(t, python, [])
  const line = await oneLine(t, ['calls', String(target.pid)], 1)
  t.match(line, /3\.12/, 'the version')
  t.match(line, /gh-104280/, 'the cause')
  t.match(line, /gc, imports and audit still work/, 'what still works')
  t.match(line, /`usdtrace top PID`, `usdtrace dump PID`, `usdtrace record PID --sample`$/, 'and the sampling commands, in their words')
})

t.test('not root: BPF refused, with the capabilities to grant', async (t) => {
  const target = await startReady(t, 'setpriv', [...NOBODY, DEBIAN_PYTHON, '-c', PYTHON_WAIT])
  const line = await oneLine(t, ['calls', String(target.pid)], 1, { asNobody: true })
  t.match(line, /permission denied/)
  t.match(line, /CAP_BPF/)
  t.match(line, /run as root/)
})

t.test('usage errors exit 2 and point at --help', async (t) => {
  const cases: [string[], RegExp][] = [
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['calls'], /give the PIDs of Python processes \(`usdtrace ps` lists them\), --binary PATH, --name PATTERN/],
    [['calls', '1', '--binary', '/usr/bin/python3.11'], /give one of PIDs, --binary, --name or a command to start, not PIDs and --binary/],
    [['calls', 'abc'], /'abc' is not a process id/],
    [['calls', '1', '-T', 'x'], /--top takes a whole number/],
    [['flow', '1', '--nope'], /unknown option '--nope'/],
    [['record', '1'], /-o FILE/],
    [['record', '1', '-o', 'x.json', '--format', 'pdf'], /--format takes one of speedscope, perfetto, folded, ndjson/],
    [['ps', '-d', '1'], /unknown option '-d'/],
  ]
  for (const [args, message] of cases) {
    const cli = runCli(t, args)
    t.equal(await cli.exited, 2, `usdtrace ${args.join(' ')}: exit 2`)
    t.match(cli.text, message)
    t.match(cli.text, /Try 'usdtrace( \w+)? --help'\./)
  }
})

t.test('SIGTERM detaches and exits 143', async (t) => {
  const target = await startWorkload(t, ['flood', '60'])
  const cli = runCli(t, ['flow', String(target.pid)])
  await cli.waitFor(/tracing calls in/)
  target.go()
  await cli.waitFor(/-> leaf/)
  t.same(readSemaphores(target.pid), { entry: 1, return: 1, line: 1 }, 'attached')
  process.kill(await cli.cliPid(), 'SIGTERM')
  t.equal(await cli.exited, 143)
  t.match(cli.text, /ended: terminated \(SIGTERM\)/)
  t.same(readSemaphores(target.pid), { entry: 0, return: 0, line: 0 }, 'every semaphore back to 0')
})
