// `usdtrace agent` scraped by a real Prometheus (Debian's package, on loopback): several
// python3.11 services at once, each doing a known amount of work, and PromQL must find exactly
// that work per process: calls, collections, the objects they found (what gc.collect() returned
// in the target), imports, threads, syscalls; the functions summed over the processes; the
// service names the rules gave them.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { tmpDir } from './fixtures/package.js'
import { startAgent, startPrometheus, type Prometheus } from './fixtures/agent.js'
import { WORKLOADS, startWorkload } from './targets.js'

/** Polls a PromQL query for one series until it reaches `expected` (counters only grow), then returns what it holds. */
async function settled(prometheus: Prometheus, expr: string, expected: number): Promise<number | undefined> {
  const deadline = performance.now() + 60_000
  let value: number | undefined
  while (performance.now() < deadline) {
    const [result, ...more] = await prometheus.query(expr)
    if (more.length > 0) throw new Error(`${expr} gave ${more.length + 1} series`)
    value = result?.value
    if (value !== undefined && value >= expected) return value
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
  return value
}

t.test('a real Prometheus finds each service\'s exact counts through PromQL', async (t) => {
  const dir = tmpDir(t, 'agent-prometheus')
  for (let i = 0; i < 3; i++) writeFileSync(join(dir, `stats_module_${i}.py`), 'VALUE = 1\n')
  // The stats workload: `calls` leaf() calls, `collections` gc.collect()s, fresh modules, threads; then os._exit.
  const orders = { calls: 7000, collections: 3 }
  const billing = { calls: 1234, collections: 5 }
  const lseeks = 321
  const ordersTarget = await startWorkload(t, ['stats', String(orders.calls), String(orders.collections), dir, '0', '0'])
  const billingTarget = await startWorkload(t, ['stats', String(billing.calls), String(billing.collections), dir, '0', '0'])
  const importer = await startWorkload(t, ['stats', '0', '0', dir, '3', '2'])
  const syscaller = await startWorkload(t, ['syscalls', String(lseeks), '/nonexistent/usdtrace-agent'])
  let collected = ''
  billingTarget.stdout!.on('data', (d: Buffer) => (collected += d))

  const rules = join(dir, 'rules.json')
  writeFileSync(rules, JSON.stringify([
    { match: `stats ${orders.calls} `, service: 'orders' },
    { match: `stats ${billing.calls} `, service: 'billing' },
  ]))
  const pids = [ordersTarget, billingTarget, importer, syscaller].map((target) => target.pid)
  const agent = await startAgent(t, ['--pid', pids.join(','), '--interval', '1', '--linger', '600', '--rules', rules])
  t.match(agent.stderr, /following processes/, 'attached to the python probes')
  t.match(agent.stderr, /following syscalls/, 'and to the syscalls')
  const prometheus = await startPrometheus(t, new URL(agent.url).host)
  for (const target of [ordersTarget, billingTarget, importer, syscaller]) target.go()

  const pid = (target: { pid: number }) => `pid="${target.pid}"`
  t.equal(await settled(prometheus, `usdtrace_python_calls_total{${pid(ordersTarget)},service="orders"}`, orders.calls), orders.calls, 'orders: every leaf() call, under its rule\'s name')
  t.equal(await settled(prometheus, `usdtrace_python_calls_total{${pid(billingTarget)},service="billing"}`, billing.calls), billing.calls, 'billing: every leaf() call')
  t.equal(await settled(prometheus, `usdtrace_python_gc_collections_total{${pid(ordersTarget)}}`, orders.collections), orders.collections, 'orders: every collection')
  t.equal(await settled(prometheus, `usdtrace_python_gc_collections_total{${pid(billingTarget)}}`, billing.collections), billing.collections, 'billing: every collection')
  t.equal(await settled(prometheus, `usdtrace_python_gc_pause_seconds_count{${pid(billingTarget)}}`, billing.collections), billing.collections, 'a pause observed per collection')
  const found = Number(collected.trim())
  t.equal(await settled(prometheus, `usdtrace_python_gc_collected_objects_total{${pid(billingTarget)}}`, found), found, 'the objects gc.collect() returned in the target')
  t.equal(await settled(prometheus, `usdtrace_python_imports_total{${pid(importer)}}`, 3), 3, 'three fresh modules')
  t.equal(await settled(prometheus, `usdtrace_python_threads_started_total{${pid(importer)}}`, 2), 2, 'two threads')
  t.equal(await settled(prometheus, `usdtrace_syscalls_total{${pid(syscaller)},syscall="lseek"}`, lseeks), lseeks, 'every lseek of the syscalls service')
  t.equal(await settled(prometheus, `usdtrace_syscalls_total{${pid(syscaller)},syscall="getppid"}`, lseeks), lseeks, 'and every getppid')

  // Functions are summed over the processes followed; the importer's two threads call leaf() too.
  const leafCalls = orders.calls + billing.calls + 2
  t.equal(await settled(prometheus, `usdtrace_python_function_calls_total{function="leaf",file="${WORKLOADS}"}`, leafCalls), leafCalls, 'leaf() over every service')
  const byService = await prometheus.query('sum by (service) (usdtrace_python_calls_total{service=~"orders|billing"})')
  t.same(
    Object.fromEntries(byService.map((r) => [r.metric.service, r.value])),
    { orders: orders.calls, billing: billing.calls },
    'PromQL aggregates them by service',
  )
  const info = await prometheus.query(`usdtrace_process_info{${pid(ordersTarget)}}`)
  t.match(info[0]?.metric, { executable: '/usr/bin/python3.11', probes: 'line-semaphore', container: undefined }, 'the process is described')
  const health = await prometheus.query('usdtrace_agent_lost_events_total')
  t.ok(health.every((r) => r.value === 0), 'the agent lost nothing')
})
