// The agent's sampled profiles, pushed as Pyroscope's /ingest takes pprof and read back with
// `go tool pprof` and pprof-format: pyenv's CPythons, which have no probes, spinning in a known
// function, each its own profile with that function on top; the sampling health in the metrics;
// and a churn of processes that start, are sampled and exit, each let go of.
import { once } from 'node:events'
import { dirname } from 'node:path'
import t from 'tap'
import { eventually, pushedProfiles, receiver, scrape, startAgent, valueOf } from './fixtures/agent.js'
import { tmpDir } from './fixtures/package.js'
import { pprofTop } from './fixtures/pprof.js'
import { PYENV, STACK_PYTHONS, privatePython } from './fixtures/processes.js'
import { CLOCK_TICKS, cpuTicks, startStacksTarget } from './fixtures/stacks.js'

const PYENV_PYTHONS = STACK_PYTHONS.filter((python) => python.startsWith(PYENV))
const HZ = 99
/** Pushes of each process to read before judging: a few seconds of spinning. */
const PUSHES = 3

t.test("pyenv's Pythons, no probes: each process's sampled pprof has the spinning function on top; samples in the metrics", async (t) => {
  const pyroscope = await receiver(t)
  const targets = await Promise.all(PYENV_PYTHONS.map((python) => startStacksTarget(t, python, ['busy', '0.05'])))
  const pids = targets.map((target) => target.pid)
  const agent = await startAgent(t, [
    '--pid', pids.join(','),
    '--pprof-endpoint', `${pyroscope.url}/ingest`,
    '--profile-interval', '1',
    '--interval', '0.5',
    '--off-cpu',
    '--no-syscalls',
    '--linger', '600',
  ])
  const sorted = [...pids].sort((a, b) => a - b)
  t.match(agent.stderr, new RegExp(`${pids.length} Python processes without probes \\(${sorted.join(', ')}\\): sampled stacks only`), 'the probeless processes are named')
  const dir = tmpDir(t, 'agent-samples')
  const pushes = await eventually(`${PUSHES} sampled pushes of each process`, async () => {
    const pushes = await pushedProfiles(pyroscope.received, dir, 'samples/count')
    return pids.every((pid) => pushes.filter((push) => push.pid === pid && push.profile.samples.length > 0).length >= PUSHES) ? pushes : undefined
  })
  const pprofPushes = pyroscope.received.filter((r) => r.query.get('format') === 'pprof')
  t.equal(pprofPushes.length, pushes.length, 'no call-time profile: these Pythons have no probes')

  for (const [i, python] of PYENV_PYTHONS.entries()) {
    const pid = pids[i]!
    const own = pushes.filter((push) => push.pid === pid)
    t.match(own[0]!.name, new RegExp(`^stacks\\{pid=${pid},executable=\\S*python3\\.\\d+\\}$`), `${python}: named service{pid,executable} as Pyroscope names applications`)
    const { profile } = own[0]!
    t.same(profile.sampleTypes, ['samples/count', 'cpu/nanoseconds', 'wall/nanoseconds'], `${python}: samples, CPU time and (--off-cpu) wall time`)
    const periodNs = Math.round(1e9 / HZ)
    t.same(profile.period, { type: 'cpu/nanoseconds', value: periodNs }, `${python}: a sample stands for 1/${HZ} s of CPU`)
    const pushed = own.flatMap((push) => push.profile.samples)
    t.ok(pushed.every(({ values: [samples, cpuNs] }) => cpuNs === samples! * periodNs), `${python}: every stack's CPU time is its samples times the period`)

    // As people read it: go tool pprof over every push of the process, merged.
    const { rows } = pprofTop(own.map((push) => push.file), 'samples')
    const spin = rows.get('spin')?.flat ?? 0
    const all = [...rows.values()].reduce((sum, row) => sum + row.flat, 0)
    const others = [...rows].filter(([func]) => func !== 'spin').map(([func, row]) => `${func} ${row.flat}`)
    t.ok(spin > 0 && spin >= 0.9 * all, `${python}: spin() has ${spin} of the ${all} on-CPU samples (the rest: ${others.join(', ') || 'none'})`)
    t.equal(rows.get('spin')?.cum, spin, `${python}: spin() calls nothing`)
    t.ok((rows.get('Thread.run')?.cum ?? rows.get('run')?.cum ?? 0) >= spin, `${python}: under the thread's run()`)
    const wall = pprofTop(own.map((push) => push.file), 'wall').rows
    t.ok((wall.get('sleeper')?.flat ?? 0) > 0, `${python}: the sleeping thread's waits are wall time`)
  }

  // The counts against the spinners' own CPU time over a window: --interval (0.5 s) late at either end.
  const spinners = targets.map((target) => target.report.spinner as number)
  const samplesOf = async () => {
    const samples = await scrape(agent.url)
    return pids.map((pid) => valueOf(samples, 'usdtrace_python_samples_total', { pid: String(pid) }) ?? 0)
  }
  const [samples0, ticks0] = [await samplesOf(), pids.map((pid, i) => cpuTicks(pid, spinners[i]!))]
  await new Promise((resolve) => setTimeout(resolve, 5000))
  const [samples1, ticks1] = [await samplesOf(), pids.map((pid, i) => cpuTicks(pid, spinners[i]!))]
  for (const [i, python] of PYENV_PYTHONS.entries()) {
    const counted = samples1[i]! - samples0[i]!
    const expected = ((ticks1[i]! - ticks0[i]!) / CLOCK_TICKS) * HZ
    t.ok(counted > 0.75 * expected && counted < 1.25 * expected, `${python}: ${counted} samples counted for ${expected.toFixed(0)} expected from the spinner's CPU time at ${HZ} Hz`)
  }

  const samples = await scrape(agent.url)
  for (const pid of pids) {
    t.ok(valueOf(samples, 'usdtrace_python_samples_total', { pid: String(pid), service: 'stacks' })! > 0, `process ${pid}: samples > 0`)
    t.equal(valueOf(samples, 'usdtrace_process_info', { pid: String(pid), probes: 'no-probes' }), 1, `process ${pid}: followed, without probes`)
  }
  t.ok(valueOf(samples, 'usdtrace_agent_samples_total', { kind: 'on_cpu' })! > 0, 'on-CPU samples taken')
  t.ok(valueOf(samples, 'usdtrace_agent_samples_total', { kind: 'off_cpu' })! > 0, 'waits taken')
  t.equal(valueOf(samples, 'usdtrace_agent_sampled_processes', {}), pids.length, 'every process sampled')
  t.equal(valueOf(samples, 'usdtrace_agent_samples_lost_total', {}), 0, 'none lost')
  t.equal(valueOf(samples, 'usdtrace_agent_exports_total', { exporter: 'pprof', outcome: 'failed' }), undefined, 'no failed push')

  agent.child.kill('SIGTERM')
  t.equal(await agent.exited, 143, 'SIGTERM ends it')
  t.match(agent.stderr, /every probe detached/)
})

t.test('a churn of sampled processes (--no-call-profiles): each is pushed, then let go of; nothing of them stays', async (t) => {
  const pyroscope = await receiver(t)
  const python = privatePython(t)
  const agent = await startAgent(t, [
    '--binary', python,
    '--pprof-endpoint', `${pyroscope.url}/ingest`,
    '--no-call-profiles',
    '--profile-interval', '0.5',
    '--interval', '0.25',
    '--no-syscalls',
    '--linger', '2',
    '--rescan', '0.5',
  ])
  t.match(agent.stderr, new RegExp(`following stacks of ${python}`))
  const dir = tmpDir(t, 'agent-samples-churn')
  const churned: number[] = []
  for (let i = 0; i < 12; i++) {
    // Started after the agent attached; spins until its samples are pushed (the agent finds a
    // process by its first sample, so a busy host may take a while), then exits by itself.
    const { child, pid } = await startStacksTarget(t, python, ['exit', '60'])
    churned.push(pid)
    child.stdin!.write('go\n')
    await eventually(`process ${pid}'s samples of spin() pushed`, async () => {
      const own = (await pushedProfiles(pyroscope.received, dir, 'samples/count')).filter((push) => push.pid === pid)
      return own.some((push) => push.profile.samples.some((sample) => sample.funcs[0] === 'spin')) ? true : undefined
    })
    const exited = once(child, 'exit')
    child.stdin!.end()
    await exited
  }
  t.pass(`each of ${churned.length} processes started later was sampled in spin()`)
  const left = await eventually('every churned process let go of', async () => {
    const samples = await scrape(agent.url)
    return samples.some((s) => churned.includes(Number(s.labels.pid))) ? undefined : samples
  })
  t.equal(valueOf(left, 'usdtrace_agent_sampled_processes', {}), 0, 'no process counted as sampled')
  t.ok(valueOf(left, 'usdtrace_agent_samples_total', { kind: 'on_cpu' })! > 0, 'the samples taken stay counted')
  t.equal(valueOf(left, 'usdtrace_agent_samples_lost_total', {}), 0, 'none lost')
  t.same(await pushedProfiles(pyroscope.received, dir, 'calls/count'), [], '--no-call-profiles: no call-time profile, though these Pythons have probes')
  // Once let go of, a process is pushed no more: the pushes stop growing.
  const before = pyroscope.received.length
  await new Promise((resolve) => setTimeout(resolve, 1500))
  t.equal(pyroscope.received.length, before, 'nothing more pushed for processes that are gone')
  t.equal(agent.child.exitCode, null, 'the agent runs on')
})

t.test('--binary of a libpython without probes, --sample-hz without an endpoint: its processes, started later, sampled for the metrics', async (t) => {
  const python = PYENV_PYTHONS[0]!
  const libpython = `${dirname(dirname(python))}/lib/libpython${/python(3\.\d+)$/.exec(python)![1]}.so.1.0`
  const agent = await startAgent(t, ['--binary', libpython, '--sample-hz', String(HZ), '--interval', '0.5', '--no-syscalls'])
  t.match(agent.stderr, new RegExp(`following stacks of ${libpython}`), 'its stacks are followed')
  t.notMatch(agent.stderr, /following processes of/, 'no probes to attach to')
  const { pid } = await startStacksTarget(t, python, ['busy', '0.05'])
  const samples = await eventually(`process ${pid} sampled`, async () => {
    const samples = await scrape(agent.url)
    return valueOf(samples, 'usdtrace_python_samples_total', { pid: String(pid) })! > 0 ? samples : undefined
  })
  t.equal(valueOf(samples, 'usdtrace_process_info', { pid: String(pid), probes: 'no-probes' }), 1, 'followed, labelled as without probes')
  t.equal(valueOf(samples, 'usdtrace_agent_exports_total', { exporter: 'pprof', outcome: 'ok' }), undefined, 'nothing pushed: no endpoint')
})
