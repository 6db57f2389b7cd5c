// `usdtrace agent` as an operator meets it: one-line errors for bad options, an address in use and
// an exporter nobody answers at; an endpoint that only reads; processes of an interpreter file
// followed as they start and let go of once they exit, through a churn of them; rules reloaded
// on SIGHUP; and the systemd unit it ships, verified by systemd-analyze and run as systemd runs it.
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { CLI, ROOT, runCliPiped } from './cli.js'
import { tmpDir } from './fixtures/package.js'
import { eventually, scrape, startAgent, valueOf } from './fixtures/agent.js'
import { DEBIAN_PYTHON, PYTHON_WAIT, privatePython, startReady } from './fixtures/processes.js'
import { startWorkload } from './targets.js'

t.test('a bad option is one line and exit 2, before anything is attached', async (t) => {
  for (const [args, message] of [
    [['--listen', 'everywhere'], /--listen takes HOST:PORT/],
    [['--slow', 'fast'], /--slow takes milliseconds/],
    [['--binary', DEBIAN_PYTHON, '--pid', '1'], /give --binary or --pid, not both/],
    [['--otlp-endpoint', 'collector:4318'], /--otlp-endpoint takes an http or https URL/],
    [['--top', '0'], /--top takes a whole number of at least 1/],
    [['--sample-hz', 'fast'], /--sample-hz takes a whole number of at least 0/],
    [['--sample-hz', '20000'], /--sample-hz takes at most 10000 samples a second/],
    [['--off-cpu'], /--off-cpu samples waits: give --pprof-endpoint or --sample-hz N too/],
    [['--pprof-endpoint', 'http://127.0.0.1:1/ingest', '--sample-hz', '0', '--no-call-profiles'], /leave --pprof-endpoint nothing to push/],
  ] as const) {
    const { code, stderr } = await runCliPiped(t, ['agent', ...args]).done
    t.equal(code, 2, `${args.join(' ')}: exit 2`)
    t.match(stderr.split('\n')[0], message, stderr.split('\n')[0])
  }
})

t.test('an exporter endpoint nobody answers at, and an address in use: one line, exit 1', async (t) => {
  const closed = createServer()
  closed.listen(0, '127.0.0.1')
  await once(closed, 'listening')
  const { port } = closed.address() as { port: number }
  await new Promise((resolve) => closed.close(resolve))
  const unreachable = await runCliPiped(t, ['agent', '--otlp-endpoint', `http://127.0.0.1:${port}/v1/traces`]).done
  t.equal(unreachable.code, 1, 'exit 1')
  t.match(unreachable.stderr, new RegExp(`^usdtrace: cannot reach --otlp-endpoint http://127.0.0.1:${port}/v1/traces \\(ECONNREFUSED\\); start the receiver`), 'names the endpoint and the cause')
  t.equal(unreachable.stderr.trim().split('\n').length, 1, 'in one line')

  const taken = createServer()
  taken.listen(0, '127.0.0.1')
  await once(taken, 'listening')
  t.teardown(() => new Promise((resolve) => taken.close(resolve)))
  const address = `127.0.0.1:${(taken.address() as { port: number }).port}`
  const inUse = await runCliPiped(t, ['agent', '--listen', address]).done
  t.equal(inUse.code, 1, 'exit 1')
  t.match(inUse.stderr, new RegExp(`^usdtrace: cannot listen on ${address}: the address is in use; choose another --listen`), 'says so')
})

t.test('the endpoint reads and never acts', async (t) => {
  const target = await startReady(t, DEBIAN_PYTHON, ['-c', PYTHON_WAIT])
  const agent = await startAgent(t, ['--pid', String(target.pid), '--no-syscalls'])
  for (const method of ['POST', 'PUT', 'DELETE']) {
    const response = await fetch(agent.url, { method, body: method === 'DELETE' ? undefined : 'attach 1' })
    t.equal(response.status, 405, `${method} /metrics: 405`)
    t.equal(response.headers.get('allow'), 'GET, HEAD')
  }
  t.equal((await fetch(new URL('/attach?pid=1', agent.url))).status, 404, 'no other path')
  const samples = await scrape(agent.url)
  t.equal(valueOf(samples, 'usdtrace_process_info', { pid: String(target.pid), probes: 'line-semaphore' }), 1, 'GET /metrics describes the process')
  t.match(agent.stderr, /serving http:\/\/127\.0\.0\.1:\d+\/metrics/, 'on loopback')
})

t.test('--binary: processes started later are followed, exited ones let go; a churn leaves nothing behind', async (t) => {
  const python = privatePython(t)
  const agent = await startAgent(t, ['--binary', python, '--interval', '0.2', '--linger', '3', '--rescan', '0.5'])
  t.match(agent.stderr, new RegExp(`following processes of ${python}`))
  const calls = 500
  const churned: number[] = []
  let followed = 0
  for (let i = 0; i < 20; i++) {
    // Started after the agent attached: counted from its start, interpreter start-up included.
    const target = await startWorkload(t, ['stats', String(calls), '2', '/nonexistent', '0', '0'], python)
    churned.push(target.pid)
    target.go()
    await once(target, 'exit')
    const pid = String(target.pid)
    // Both counters, not one then the other: the kernel copies a process's per-CPU counts one
    // CPU after another, so a read can hold the collections made last on a CPU it read late and
    // miss calls made first on a CPU it had read already: the next interval has them.
    const counted = await eventually(`process ${pid}'s counts`, async () => {
      const samples = await scrape(agent.url)
      const collected = valueOf(samples, 'usdtrace_python_gc_collections_total', { pid })! >= 2
      return collected && valueOf(samples, 'usdtrace_python_calls_total', { pid })! >= calls ? true : undefined
    }, 20_000).catch(() => false)
    if (counted) followed++
  }
  t.equal(followed, churned.length, `each of ${churned.length} processes started later: its two collections and ${calls} calls, and its start-up's`)
  const left = await eventually('every churned process let go of', async () => {
    const samples = await scrape(agent.url)
    return samples.some((s) => churned.includes(Number(s.labels.pid))) ? undefined : samples
  })
  t.ok(left.length > 0, `no series of the ${churned.length} exited processes remain`)
  t.equal(valueOf(left, 'usdtrace_agent_dropped_total', { source: 'stats' }), undefined, 'nothing dropped for want of kernel map room')
  t.equal(agent.child.exitCode, null, 'the agent runs on')
})

t.test('SIGHUP reloads the rules; the process is renamed', async (t) => {
  const dir = tmpDir(t, 'agent-rules')
  const rules = join(dir, 'rules.json')
  writeFileSync(rules, JSON.stringify([{ match: 'import sys', service: 'alpha' }]))
  const target = await startReady(t, DEBIAN_PYTHON, ['-c', PYTHON_WAIT])
  const agent = await startAgent(t, ['--pid', String(target.pid), '--no-syscalls', '--rules', rules])
  t.equal(valueOf(await scrape(agent.url), 'usdtrace_process_info', { pid: String(target.pid) }) !== undefined, true)
  t.equal((await scrape(agent.url)).find((s) => s.name === 'usdtrace_process_info' && s.labels.pid === String(target.pid))?.labels.service, 'alpha', 'named by the rule')
  writeFileSync(rules, JSON.stringify([{ match: 'import sys', service: 'beta' }]))
  agent.child.kill('SIGHUP')
  await agent.waitFor(/reloaded the rules in/)
  t.equal((await scrape(agent.url)).find((s) => s.name === 'usdtrace_process_info' && s.labels.pid === String(target.pid))?.labels.service, 'beta', 'renamed')
  writeFileSync(rules, '[{ "match": "(" }]')
  agent.child.kill('SIGHUP')
  await agent.waitFor(/kept the rules in force: .*rule 1 needs "match"/)
  t.equal(agent.child.exitCode, null, 'a bad rules file does not end it')
})

t.test('the systemd unit: verified by systemd-analyze, and run as systemd runs it', async (t) => {
  const unit = readFileSync(join(ROOT, 'systemd/usdtrace-agent.service'), 'utf8')
  const dir = tmpDir(t, 'agent-unit')
  const local = join(dir, 'usdtrace-agent.service')
  writeFileSync(local, unit.replace('/usr/local/bin/usdtrace', CLI))
  const verify = spawnSync('systemd-analyze', ['verify', local], { encoding: 'utf8' })
  t.equal(verify.status, 0, `systemd-analyze verify: ${verify.stderr}`)
  t.equal(verify.stderr, '', 'no warning')
  const setting = (key: string) => new RegExp(`^${key}=(.*)$`, 'm').exec(unit)?.[1]
  t.equal(setting('ExecReload'), '/bin/kill -HUP $MAINPID')
  t.equal(setting('KillSignal'), 'SIGTERM')
  t.equal(setting('SuccessExitStatus'), '143', 'the exit status after SIGTERM counts as success')

  // ExecStart with its variable expanded as systemd would, from the environment file's variable.
  const target = await startReady(t, DEBIAN_PYTHON, ['-c', PYTHON_WAIT])
  const args = `--listen 127.0.0.1:0 --pid ${target.pid}`
  const [command, ...argv] = setting('ExecStart')!.replace('$USDTRACE_AGENT_ARGS', args).replace('/usr/local/bin/usdtrace', CLI).split(/\s+/)
  const env = { ...process.env }
  delete env.NODE_OPTIONS
  const child = spawn(command!, argv, { env, stdio: ['ignore', 'ignore', 'pipe'] })
  t.teardown(() => void child.kill('SIGKILL'))
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d))
  await eventually('serving', async () => (/serving http/.test(stderr) ? true : undefined))
  process.kill(child.pid!, 'SIGHUP')
  await eventually('the reload', async () => (/SIGHUP: no --rules to reload/.test(stderr) ? true : undefined))
  process.kill(child.pid!, 'SIGTERM')
  const [code] = await once(child, 'exit')
  t.equal(code, 143, 'SIGTERM: 143, a success for the unit')
  t.match(stderr, /every probe detached/)
})
