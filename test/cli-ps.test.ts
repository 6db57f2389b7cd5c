// `usdtrace ps` against real processes: a python3.11 with a python3.11 child drawn as a tree
// with version, probe status and whether its stacks can be read, a 3.12-like build (calls
// unavailable, no interpreter to read stacks of), a python3.11 whose probes were stripped (no
// probes, stacks still read), a program of another runtime found by its notes; --json,
// colour only on a terminal without NO_COLOR, and -t threads.
import { execFileSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { DEBIAN_PYTHON, PYTHON_WAIT, startReady } from './fixtures/processes.js'
import { notes } from './fixtures/readelf.js'
import { compile, tmpDir } from './programs/tools.js'
import { runCli, runCliPiped, stripAnsi, tableAfter } from './cli.js'

const version = execFileSync(DEBIAN_PYTHON, ['-c', 'import platform; print(platform.python_version())'], { encoding: 'utf8' }).trim()

/** A python3.11 that starts a python3.11 child and waits; both command lines carry `mark`. */
async function pythonTree(t: Test, mark: string) {
  const child = `import sys; print("ready", flush=True); sys.stdin.read()  # ${mark}`
  const parent = [
    'import subprocess, sys',
    `child = subprocess.Popen([sys.executable, "-c", ${JSON.stringify(child)}], stdin=subprocess.PIPE, stdout=subprocess.PIPE)`,
    'child.stdout.readline()',
    'print("ready", flush=True)',
    'sys.stdin.read()',
    `# ${mark}`,
  ].join('\n')
  const started = await startReady(t, DEBIAN_PYTHON, ['-c', parent])
  const childPid = Number(execFileSync('pgrep', ['-P', String(started.pid)], { encoding: 'utf8' }).trim())
  return { parent: started.pid, child: childPid }
}

t.test('ps -f PATTERN: the tree, versions and what tracing can do', async (t) => {
  const mark = `usdtrace-ps-${randomUUID()}`
  const tree = await pythonTree(t, mark)
  const dir = tmpDir(t, 'ps')
  const py312 = await startReady(t, compile('python312.c', join(dir, 'python3.12'), ['-rdynamic']), [mark])
  const stripped = join(dir, 'python3.11')
  execFileSync('objcopy', ['--remove-section=.note.stapsdt', DEBIAN_PYTHON, stripped])
  const noProbes = await startReady(t, stripped, ['-c', PYTHON_WAIT, mark])
  const app = compile('usdt-app.c', join(dir, 'demo-app'))
  const demo = await startReady(t, app, [mark])
  const demoProbes = notes(app).filter((p) => p.provider === 'demoapp').length

  const cli = runCli(t, ['ps', '-f', mark])
  t.equal(await cli.exited, 0)
  const rows = tableAfter(cli.text, /^\s*PID\s+RUNTIME\s+PROBES\s+STACKS\s+THR\s+CPU%\s+RSS\s+COMMAND$/)
  const row = (pid: number) => rows.find((r) => r[0] === String(pid))
  const parent = row(tree.parent)
  t.match(parent, [String(tree.parent), `python ${version}`, 'calls via line semaphore', 'yes', '1', /^\d+\.\d$/, /^\d+(\.\d)?[KMG]$/, /^\/usr\/bin\/python3\.11 -c import subprocess/], 'the parent: version, probes, stacks, threads, CPU%, RSS')
  const child = row(tree.child)
  t.match(child, [String(tree.child), `python ${version}`, 'calls via line semaphore', 'yes', '1', /./, /./, /^└─ \/usr\/bin\/python3\.11 -c /], 'the child, drawn under its parent')
  t.equal(rows.indexOf(child!), rows.indexOf(parent!) + 1, 'right after it')
  t.match(row(py312.pid), [String(py312.pid), 'python 3.12.4', 'calls unavailable', 'no'], '3.12: no call probes; a C program without an interpreter: no stacks')
  t.match(row(noProbes.pid), [String(noProbes.pid), `python ${version}`, 'no probes', 'yes'], 'stripped of its notes: no probes, yet stacks')
  t.match(row(demo.pid), [String(demo.pid), 'demoapp', `${demoProbes} probes`, '-'], 'another runtime, by its notes')
  t.equal(rows.length, 5, 'nothing else matches')
  t.notMatch(cli.raw, /\x1b\[[\d;]*m/, 'NO_COLOR: no colour')
})

t.test('ps --json: one object per process, the tree as parent pids', async (t) => {
  const mark = `usdtrace-ps-${randomUUID()}`
  const tree = await pythonTree(t, mark)
  const { code, stdout } = await runCliPiped(t, ['ps', '-f', mark, '--json', '-i', '0.1']).done
  t.equal(code, 0)
  const processes = stdout.trim().split('\n').map((line) => JSON.parse(line))
  t.match(processes, [
    { type: 'process', pid: tree.parent, parent: null, name: 'python3.11', runtime: 'python', version, calls: 'line-semaphore', stacks: 'version-table', probeObject: DEBIAN_PYTHON, threads: 1 },
    { type: 'process', pid: tree.child, ppid: tree.parent, parent: tree.parent, runtime: 'python', version, calls: 'line-semaphore' },
  ])
  t.equal(processes.length, 2)
  t.type(processes[0].cpuPercent, 'number')
  t.type(processes[0].rssBytes, 'number')
})

t.test('colour on a terminal unless NO_COLOR; -t lists threads', async (t) => {
  const mark = `usdtrace-ps-${randomUUID()}`
  const target = await startReady(t, DEBIAN_PYTHON, ['-c', PYTHON_WAIT, mark])
  const colored = runCli(t, ['ps', '-f', mark, '-t'], { color: true })
  t.equal(await colored.exited, 0)
  t.match(colored.raw, /\x1b\[\d+m/, 'colour on a terminal')
  const rows = tableAfter(stripAnsi(colored.text), /^\s*PID\s+RUNTIME/)
  t.match(rows, [[String(target.pid), `python ${version}`], [String(target.pid), /^\d+\.\d$/, '└─ {python3.11}']], 'its one thread under it')
  const piped = await runCliPiped(t, ['ps', '-f', mark], { env: { NO_COLOR: '' } }).done
  t.notMatch(piped.stdout, /\x1b\[[\d;]*m/, 'no colour into a pipe')
  t.match(piped.stdout, String(target.pid))
})
