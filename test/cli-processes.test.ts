// A service is its processes: several PIDs, --binary (every process of a program, those started
// later too), --name, a replacement worker picked up by stat, and spawn mode following the
// children its program forks. Every count is exact and taken only from this test's processes,
// and --binary follows a private copy of python3.11, so no other process on the machine is traced.
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { DEBIAN_PYTHON, privatePython } from './fixtures/processes.js'
import { runCli, runCliPiped, tableAfter } from './cli.js'

const WORKERS = fileURLToPath(new URL('targets/workers.py', import.meta.url))
const CALLS = 2000

/** test/targets/workers.py: three forked workers, held until SIGUSR1. */
async function startWorkers(t: Test, python = DEBIAN_PYTHON): Promise<{ parent: ChildProcess; workers: number[]; go(): void; exited: Promise<unknown> }> {
  const parent = spawn(python, [WORKERS, '3', String(CALLS)], { stdio: ['ignore', 'pipe', 'inherit'] })
  let printed = ''
  const lines = createInterface({ input: parent.stdout! })
  await new Promise<void>((resolve) => lines.on('line', (line) => ((printed += `${line}\n`), line === 'ready' && resolve())))
  const workers = /^(\d+) (\d+) (\d+)$/m.exec(printed)!.slice(1).map(Number)
  // Each worker has said it is past what a fork runs in the child (Python's after-fork hooks).
  while ((printed.match(/^worker \d+$/gm) ?? []).length < 3) await new Promise((resolve) => setTimeout(resolve, 20))
  const exited = once(parent, 'exit')
  t.teardown(() => [...workers, parent.pid!].forEach(kill))
  return { parent, workers, exited, go: () => workers.forEach((pid) => process.kill(pid, 'SIGUSR1')) }
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

t.test('stat --binary PYTHON: each worker counted exactly, by pid', async (t) => {
  const python = privatePython(t)
  const run = runCliPiped(t, ['stat', '--binary', python, '--json', '-i', '0.2'])
  await run.stderrMatch(/tracing counts in every process of \/.*\/python3\.11/)
  // Started after the trace: a binary's processes are followed now and later.
  const { workers, go, exited } = await startWorkers(t, python)
  // Two tables later, every count made before SIGUSR1 (the fork's own calls) is in a table read before it.
  const tables = () => run.stdout.split('\n').length
  const after = async (count: number) => {
    const start = tables()
    while (tables() < start + count) await new Promise((resolve) => setTimeout(resolve, 20))
    return tables() - 1
  }
  const before = await after(2)
  go()
  await exited
  await after(2)
  process.kill(run.pid, 'SIGINT')
  const { code, stdout } = await run.done
  t.equal(code, 130)
  const calls = new Map<number, number>()
  for (const line of stdout.trim().split('\n').slice(before)) {
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
  // A child's semaphores are its parent's, copied at the fork: usdtrace's note says it is attached.
  for (const pid of workers) await run.stderrMatch(new RegExp(`\\+ ${pid} `))
  for (const pid of workers) process.kill(pid, 'SIGUSR1')
  const { code, stdout, stderr } = await run.done
  t.equal(code, 0, `the program's status (${stderr.trim()})`)
  for (const pid of workers) t.match(stderr, new RegExp(`\\+ ${pid} \\(.*workers\\.py.*\\) forked by \\d+: traced from \\d+ ms after it started`), `${pid} joined, and when`)
  const leaf = tableAfter(stdout, /^FUNCTION\s+FILE\s+CALLS$/).find((row) => row[0] === 'leaf')
  t.same(leaf, ['leaf', 'test/targets/workers.py', String(3 * CALLS)], 'every call of the three children')
})

function kill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL')
  } catch {
    // exited
  }
}
