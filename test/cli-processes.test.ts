// A service is its processes: several PIDs, --binary (every process of a program, those started
// later too), --name, a replacement worker picked up by stat, and spawn mode following the
// children its program forks. Every count is exact and taken only from this test's processes:
// --binary /usr/bin/python3.11 also sees other programs on the machine.
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { DEBIAN_PYTHON } from './fixtures/processes.js'
import { tmpDir } from './programs/tools.js'
import { readSemaphores } from './semaphores.js'
import { runCli, runCliPiped, tableAfter } from './cli.js'

const WORKERS = fileURLToPath(new URL('targets/workers.py', import.meta.url))
const CALLS = 2000

/** test/targets/workers.py: three forked workers, held until SIGUSR1. */
async function startWorkers(t: Test): Promise<{ parent: ChildProcess; workers: number[]; go(): void; exited: Promise<unknown> }> {
  const parent = spawn(DEBIAN_PYTHON, [WORKERS, '3', String(CALLS)], { stdio: ['ignore', 'pipe', 'inherit'] })
  const lines = createInterface({ input: parent.stdout! })[Symbol.asyncIterator]()
  const workers = String((await lines.next()).value).split(' ').map(Number)
  t.equal((await lines.next()).value, 'ready')
  const exited = once(parent, 'exit')
  t.teardown(() => [...workers, parent.pid!].forEach(kill))
  return { parent, workers, exited, go: () => workers.forEach((pid) => process.kill(pid, 'SIGUSR1')) }
}

/** Resolves once the return probe's semaphore is raised in each process: the trace is on it. */
async function attachedTo(pids: number[]): Promise<void> {
  while (!pids.every((pid) => readSemaphores(pid).return > 0)) await new Promise((resolve) => setTimeout(resolve, 20))
}

t.test('calls PID PID PID: three forked workers, every call counted', async (t) => {
  const { workers, go } = await startWorkers(t)
  const cli = runCli(t, ['calls', ...workers.map(String)])
  await cli.waitFor(/tracing calls in 3 processes/)
  go()
  t.equal(await cli.exited, 0, 'ends once all three exited')
  const leaf = tableAfter(cli.text, /^FUNCTION\s+FILE\s+CALLS$/).find((row) => row[0] === 'leaf')
  t.same(leaf, ['leaf', 'test/targets/workers.py', String(3 * CALLS)], 'three workers, each its calls')
  t.match(cli.text, /summed over 3 processes/)
  t.match(cli.text, /3 processes traced; ended: the target exited/)
})

t.test('stat --binary /usr/bin/python3.11: each worker counted exactly, by pid', async (t) => {
  const run = runCliPiped(t, ['stat', '--binary', DEBIAN_PYTHON, '--json', '-i', '0.2'])
  await run.stderrMatch(/tracing counts in every process of \/usr\/bin\/python3\.11/)
  // Started after the trace: a binary's processes are followed now and later.
  const { workers, go, exited } = await startWorkers(t)
  go()
  await exited
  await run.stdoutMatch(new RegExp(`"pid":${workers[2]}\\b`))
  // Two more tables: the last counts have been read.
  const tables = () => run.stdoutMatch(/(\n.*){2}$/)
  await tables()
  process.kill(run.pid, 'SIGINT')
  const { code, stdout } = await run.done
  t.equal(code, 130)
  const calls = new Map<number, number>()
  for (const line of stdout.trim().split('\n')) {
    for (const row of JSON.parse(line).processes) if (workers.includes(row.pid)) calls.set(row.pid, (calls.get(row.pid) ?? 0) + row.calls)
  }
  t.same(workers.map((pid) => calls.get(pid)), [CALLS, CALLS, CALLS], 'each worker: its calls, and nothing of the other processes')
})

t.test('-- CMD follows the children its program forks', async (t) => {
  const run = runCliPiped(t, ['calls', '--', DEBIAN_PYTHON, WORKERS, '3', String(CALLS)])
  // The program's lines pass through usdtrace's stdout: the workers' pids, then "ready".
  await run.stdoutMatch(/^ready$/m)
  const workers = /^(\d+) (\d+) (\d+)$/m.exec(run.stdout)!.slice(1).map(Number)
  t.teardown(() => workers.forEach((pid) => kill(pid)))
  await attachedTo(workers)
  for (const pid of workers) process.kill(pid, 'SIGUSR1')
  const { code, stdout, stderr } = await run.done
  t.equal(code, 0, `the program's status (${stderr.trim()})`)
  for (const pid of workers) t.match(stderr, new RegExp(`\\+ ${pid} \\(.*workers\\.py.*\\) forked by \\d+: traced from \\d+ ms after it started`), `${pid} joined, and when`)
  const leaf = tableAfter(stdout, /^FUNCTION\s+FILE\s+CALLS$/).find((row) => row[0] === 'leaf')
  t.same(leaf, ['leaf', 'test/targets/workers.py', String(3 * CALLS)], 'every call of the three children')
})

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

  const kept = runCli(t, ['calls', '-d', '0.3', '--keep-running', '--', DEBIAN_PYTHON, ...program])
  t.equal(await kept.exited, 0)
  const left = /left .* \(pid (\d+)\) running \(--keep-running\)/.exec(kept.text)
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

function kill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL')
  } catch {
    // exited
  }
}
