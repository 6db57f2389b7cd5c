// The command on a real service and on the programs it starts: a restarted gunicorn worker
// (Debian's gunicorn and python3-flask) picked up by stat while the one that exited leaves it,
// and a started program that never outlives usdtrace, whichever way the trace ends.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { DEBIAN_PYTHON } from './fixtures/processes.js'
import { tmpDir } from './programs/tools.js'
import { runCli, runCliPiped } from './cli.js'

t.test('stat picks up a restarted gunicorn worker and drops the one that exited', async (t) => {
  const dir = tmpDir(t, 'gunicorn')
  writeFileSync(join(dir, 'app.py'), 'from flask import Flask\napp = Flask(__name__)\n\n@app.route("/")\ndef index():\n    return "ok"\n')
  const socket = join(dir, 'gunicorn.sock')
  const master = spawn('/usr/bin/gunicorn', ['--workers', '3', '--bind', `unix:${socket}`, '--chdir', dir, 'app:app'], { stdio: ['ignore', 'ignore', 'pipe'] })
  let log = ''
  master.stderr!.on('data', (d: Buffer) => (log += d))
  t.teardown(() => void master.kill('SIGKILL'))
  const booted = () => [...log.matchAll(/Booting worker with pid: (\d+)/g)].map((m) => Number(m[1]))
  while (booted().length < 3) await new Promise((resolve) => setTimeout(resolve, 50))
  const [first, killed, third] = booted() as [number, number, number]
  const run = runCliPiped(t, ['stat', String(first), String(killed), String(third), '--json', '-i', '0.2'])
  await run.stderrMatch(/tracing counts in 3 processes/)
  process.kill(killed, 'SIGKILL')
  while (booted().length < 4) await new Promise((resolve) => setTimeout(resolve, 50))
  const replacement = booted()[3]!
  await run.stderrMatch(new RegExp(`\\+ ${replacement} \\(.*\\) replaces ${killed}: traced from \\d+ ms after it started`))
  await run.stdoutMatch(new RegExp(`"pid":${replacement}\\b`))
  const tablesBefore = run.stdout.trim().split('\n').length
  await run.stdoutMatch(new RegExp(`(.*\\n){${tablesBefore + 1}}`))
  process.kill(run.pid, 'SIGINT')
  const { code, stdout } = await run.done
  t.equal(code, 130)
  const last = JSON.parse(stdout.trim().split('\n').at(-1)!)
  t.same(last.processes.map((row: { pid: number }) => row.pid).sort(), [first, third, replacement].sort(), 'the last table: the two that ran on and the replacement, not the one that exited')
  master.kill('SIGTERM')
  await once(master, 'exit')
})

t.test('spawn mode leaves nothing running: after -d, and after SIGINT to usdtrace alone', async (t) => {
  const mark = `usdtrace-orphan-${process.pid}`
  const program = ['-c', `import time; time.sleep(600)  # ${mark}`]
  const running = () => listMarked(mark)

  const timed = runCli(t, ['calls', '-d', '0.5', '--', DEBIAN_PYTHON, ...program])
  t.equal(await timed.exited, 0, '-d: exit 0')
  t.match(timed.text, /stopped .*sleep\(600\).* \(pid \d+\), which it started, with SIGTERM; --keep-running leaves it running/, 'says it stopped the program')
  t.same(running(), [], 'the program is gone')

  // Through pipes usdtrace is not in a terminal's foreground group: the SIGINT is passed on.
  const piped = runCliPiped(t, ['calls', '--', DEBIAN_PYTHON, ...program])
  await piped.stderrMatch(/tracing calls in/)
  process.kill(piped.pid, 'SIGINT')
  const { code, stderr } = await piped.done
  t.equal(code, 130, 'interrupted: 130')
  t.match(stderr, /KeyboardInterrupt/, 'the program got the SIGINT')
  t.same(running(), [], 'the program is gone')

  // In a terminal, usdtrace alone gets it (kill PID): the program is stopped at the end.
  const alone = runCli(t, ['calls', '--', DEBIAN_PYTHON, ...program])
  await alone.waitFor(/tracing calls in/)
  process.kill(await alone.cliPid(), 'SIGINT')
  t.equal(await alone.exited, 130)
  t.match(alone.text, /stopped .* with SIGTERM/)
  t.same(running(), [], 'the program is gone')

  // Without a terminal to close behind it (which would hang it up).
  const kept = await runCliPiped(t, ['calls', '-d', '0.3', '--keep-running', '--', DEBIAN_PYTHON, ...program]).done
  t.equal(kept.code, 0)
  const left = /left .* \(pid (\d+)\) running \(--keep-running\)/.exec(kept.stderr)
  t.ok(left, 'says it left the program running')
  t.same(running(), [Number(left![1])], 'and it runs')
  process.kill(Number(left![1]), 'SIGKILL')
})

t.test('a script that does not exist: python\'s own error and status', async (t) => {
  const cli = runCli(t, ['calls', '--', DEBIAN_PYTHON, 'no-such-script.py'], { cwd: tmpDir(t, 'noscript') })
  t.equal(await cli.exited, 2, "python's status for a missing script")
  t.match(cli.text.trim(), /^\/usr\/bin\/python3\.11: can't open file '\/.*\/no-such-script\.py': \[Errno 2\] No such file or directory$/, 'its message, alone')
})

/** Pids of the processes whose command line holds `mark` (and are not usdtrace). */
function listMarked(mark: string): number[] {
  const pids: number[] = []
  for (const entry of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8')
      const state = readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1]![0]
      if (cmdline.includes(mark) && !cmdline.includes('main.js') && state !== 'Z') pids.push(Number(entry))
    } catch {
      // gone
    }
  }
  return pids
}

