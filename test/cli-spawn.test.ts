// `usdtrace -- CMD` and `--spawn`: the program is held until the trace is attached, so its very
// first call is traced; it runs as python would have run it (argv, sys.path[0], __main__), its
// exit status becomes usdtrace's, a program that cannot be traced is never let go, and one that
// dies between its release and its first line ends with its exit status, not a pipe error.
import { execFileSync } from 'node:child_process'
import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { spawnHeld } from '../src/cli/spawn.js'
import { DEBIAN_PYTHON } from './fixtures/processes.js'
import { tmpDir } from './programs/tools.js'
import { WORKLOADS, fibonacci } from './targets.js'
import { runCli, runCliPiped } from './cli.js'

const SHOW = `import json, sys
print(json.dumps({"argv": sys.argv, "path0": sys.path[0], "name": __name__, "file": globals().get("__file__"),
                  "globals": sorted(k for k in globals() if k not in ("json", "sys"))}))`

t.test('-- python3.11 SCRIPT: traced from the first call of the program', async (t) => {
  const n = 6
  // stdin is closed: the workload's wait for a line returns at once.
  const { code, stdout, stderr } = await runCliPiped(t, ['flow', '--json', '--', DEBIAN_PYTHON, WORKLOADS, 'fib', String(n)]).done
  t.equal(code, 0, `exit status 0 (${stderr.trim()})`)
  const events = stdout.trim().split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line))
  t.match(events[0], { kind: 'entry', func: '<module>', file: WORKLOADS, depth: 0 }, 'the first event is the script starting')
  const end = events.findIndex((e) => e.kind === 'return' && e.func === '<module>' && e.file === WORKLOADS)
  t.match(events[end], { depth: 0, durationNs: Number }, 'the script ends, timed: its start was traced')
  t.ok(events.slice(end + 1).every((e) => e.file !== WORKLOADS), 'after it only the interpreter shutting down')
  t.ok(events.every((e) => !/usdtrace_spawn/.test(e.file)), 'nothing of the bootstrap shows')
  t.equal(events.filter((e) => e.kind === 'entry' && e.func === 'fib').length, 2 * fibonacci(n + 1) - 1, 'every call of fib')
  const open = new Map<number, number>()
  for (const e of events) open.set(e.tid, (open.get(e.tid) ?? 0) + (e.kind === 'entry' ? 1 : -1))
  t.ok([...open.values()].every((v) => v === 0), 'every entry has its return: nothing began before the trace')
})

t.test('the program runs as python runs it: script, -c, -m and a #! script', async (t) => {
  const dir = tmpDir(t, 'spawn')
  const script = join(dir, 'show.py')
  writeFileSync(script, SHOW)
  writeFileSync(join(dir, 'showmod.py'), SHOW)
  const shebang = join(dir, 'show-tool')
  writeFileSync(shebang, `#!${DEBIAN_PYTHON}\n${SHOW}`)
  chmodSync(shebang, 0o755)
  const direct = (args: string[]) => JSON.parse(execFileSync(DEBIAN_PYTHON, args, { cwd: dir, encoding: 'utf8' }))
  const traced = async (args: string[]) => {
    const cli = runCli(t, ['calls', '--', ...args], { cwd: dir })
    t.equal(await cli.exited, 0, `usdtrace calls -- ${args.join(' ')}`)
    return JSON.parse(/^\{.*\}$/m.exec(cli.text)![0])
  }
  t.same(await traced([DEBIAN_PYTHON, script, 'a', '--b']), direct([script, 'a', '--b']), 'a script')
  t.same(await traced([DEBIAN_PYTHON, '-c', SHOW, 'x']), direct(['-c', SHOW, 'x']), '-c')
  t.same(await traced([DEBIAN_PYTHON, '-m', 'showmod', 'y']), direct(['-m', 'showmod', 'y']), '-m')
  const viaShebang = await traced([shebang, 'z'])
  t.same(viaShebang, { ...direct([shebang, 'z']) }, 'a #! script started by its path')
})

t.test('the exit status is the program\'s; --spawn takes one string', async (t) => {
  const cli = runCli(t, ['calls', '--spawn', `${DEBIAN_PYTHON} -c "import sys; sys.exit(7)"`])
  t.equal(await cli.exited, 7, 'exit status 7, as the program')
  t.match(cli.text, /ended: the target exited/)
})

t.test('what cannot be spawned and traced: one line, exit 1, nothing left running', async (t) => {
  const notPython = runCli(t, ['--', '/bin/true'])
  t.equal(await notPython.exited, 1)
  t.match(notPython.text.trim(), /^usdtrace: \/bin\/true is neither a python interpreter nor a script whose #! line names one.*usdtrace ps/, 'says what --spawn runs and what to do instead')

  const dir = tmpDir(t, 'spawn-noprobes')
  const stripped = join(dir, 'python3.11')
  execFileSync('objcopy', ['--remove-section=.note.stapsdt', DEBIAN_PYTHON, stripped])
  const mark = `usdtrace-spawn-${process.pid}`
  const held = runCli(t, ['flow', '--', stripped, '-c', `import time; time.sleep(60)  # ${mark}`])
  t.equal(await held.exited, 1)
  const lines = held.text.trim().split('\n')
  t.equal(lines.length, 1, 'one line')
  t.match(lines[0], /--with-dtrace/, 'says how to get a python with probes')
  const left = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').filter((line) => line.includes(mark) && !line.includes('usdtrace'))
  t.same(left, [], 'the held program was killed, never run')
})

t.test('a program that dies after release() but before it read the go byte: its exit, no pipe error', async (t) => {
  const program = await spawnHeld([DEBIAN_PYTHON, '-c', 'import time; time.sleep(60)'])
  t.teardown(() => program.signal('SIGKILL'))
  // Held still, the go byte stays unread: as when a signal (a forwarded Ctrl-C) ends the
  // bootstrap before the scheduler lets it read. The kernel then resets usdtrace's end of the pipe.
  process.kill(program.pid, 'SIGSTOP')
  program.release()
  process.kill(program.pid, 'SIGKILL')
  t.equal(await program.exited, 128 + 9, 'the exit says what happened: SIGKILL')
  // The reset reaches usdtrace with the exit at the latest; one more turn, and an unhandled error event would have failed the test.
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(program.running, false)
})
