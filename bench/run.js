// `make bench`: usdtrace's event path measured side by side with its floor and with the tools
// people use instead, in one run on this machine. Every figure is a ratio to a baseline taken in
// the same run (the median of interleaved rounds), because the machine is shared and noisy.
// Writes bench/RESULTS.md and prints it.
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import * as usdtrace from '../dist/index.js'
import { binding } from '../dist/binding.js'
import { readUsdtProbes } from '../dist/elf.js'
import { findLineSemaphore } from '../dist/inspect.js'
import { encodeUsdtSpec, parseUsdtArgs } from '../dist/usdt-args.js'

const ROUNDS = Number(process.env.ROUNDS ?? 5)
const FIB = Number(process.env.FIB ?? 26)
const FLOOD_SECONDS = Number(process.env.FLOOD_SECONDS ?? 3)
const SOAK_SECONDS = Number(process.env.SOAK_SECONDS ?? 60)
const REFERENCE = new URL('../.output/bench-reference', import.meta.url).pathname
const WORKLOAD = new URL('workload.py', import.meta.url).pathname
const DIST = new URL('../dist/index.js', import.meta.url).href

// A byte-identical python3.11 with its own inode: nothing else on the machine is traced with it.
const dir = mkdtempSync(join(tmpdir(), 'usdtrace-bench-'))
const python = join(dir, 'python3.11')
copyFileSync('/usr/bin/python3.11', python)
chmodSync(python, 0o755)

// What the C reference attaches to: function__return's sites and their one argument spec.
const returnSites = readUsdtProbes(python).filter((p) => p.provider === 'python' && p.name === 'function__return')
const returnSpec = Buffer.from(encodeUsdtSpec(parseUsdtArgs(returnSites[0]), 0n)).toString('hex')
if (returnSites.some((site) => site.args !== returnSites[0].args)) throw new Error('function__return sites differ in their arguments')
const referenceArgs = (mode, pid, ringBytes) => [
  mode,
  String(pid),
  python,
  String(ringBytes),
  returnSpec,
  ...returnSites.map((site) => `${site.fileOffset}:${site.semaphoreFileOffset}`),
]

const progress = (message) => process.stderr.write(`bench: ${message}\n`)
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
const ratio = (value, base) => `${(value / base).toFixed(2)}x`

async function startTarget(args) {
  const child = spawn(python, [WORKLOAD, ...args], { stdio: ['pipe', 'pipe', 'inherit'] })
  const exited = once(child, 'exit')
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
  await lines.next()
  return {
    pid: child.pid,
    send: () => child.stdin.write('\n'),
    async line() {
      return (await lines.next()).value
    },
    async stop() {
      child.kill('SIGKILL')
      await exited
    },
  }
}

/**
 * Starts a helper process and resolves once a line of its output matches `ready`. Tools stopped
 * by a signal get no stdin (bpftrace does not exit on SIGINT while its stdin is a pipe).
 */
async function startTool(command, args, ready, { stopSignal, quiet } = {}) {
  const tool = spawn(command, args, { stdio: [stopSignal ? 'ignore' : 'pipe', 'pipe', quiet ? 'ignore' : 'inherit'] })
  const lines = createInterface({ input: tool.stdout })
  const output = []
  await new Promise((resolve, reject) => {
    lines.on('line', (line) => {
      output.push(line)
      if (ready.test(line)) resolve()
    })
    tool.once('exit', (code) => reject(new Error(`${command} exited (${code}) before it was ready`)))
  })
  return {
    output,
    async stop() {
      const exited = once(tool, 'exit')
      if (stopSignal) tool.kill(stopSignal)
      else tool.stdin.end()
      await exited
    },
  }
}

/** Consumes a usdtrace stream in a for-await loop until stopped. */
function consume(trace) {
  let events = 0
  const done = (async () => {
    for await (const event of trace) {
      void event
      events++
    }
  })()
  return {
    get events() {
      return events
    },
    async stop() {
      await trace.close()
      await done
    },
  }
}

// bpftrace prints "Attaching" before it has attached; BEGIN runs once every probe is in place.
// Its stderr is dropped: without tracefs it reports a harmless failure to clean up legacy probes.
const bpftrace = (pid, action) =>
  startTool(
    'bpftrace',
    ['-B', 'line', '-p', String(pid), '-e', `BEGIN { printf("ready\\n") } usdt:${python}:python:function__return { ${action} }`],
    /^ready/,
    { stopSignal: 'SIGINT', quiet: true },
  )

const tracers = {
  untraced: async () => ({ stop: async () => {} }),
  floor: (pid) => startTool(REFERENCE, referenceArgs('floor', pid, 8 << 20), /^attached/),
  semaphore: async (pid) => {
    const line = findLineSemaphore(await usdtrace.inspect(pid))
    const session = new binding.Session({ object: 'calls' })
    const site = { fileOffset: line.coldCodeOffsets[0], refCtrOffset: line.semaphoreFileOffset, cookie: 0n }
    session.attachUprobes('hold_semaphore', pid, python, [site], false)
    return { stop: () => session.close() }
  },
  callStats: async (pid) => {
    const stats = usdtrace.callStats(pid, { intervalMs: 1000, latency: false })
    await stats.ready
    return consume(stats)
  },
  returns: async (pid) => {
    const trace = usdtrace.traceCalls(pid, { entries: false })
    await trace.ready
    return consume(trace)
  },
  entries: async (pid) => {
    const trace = usdtrace.traceCalls(pid)
    await trace.ready
    return consume(trace)
  },
  // The kernel undoes what a killed tracer raised: the target is measured right after the kill.
  afterSigkill: async (pid) => {
    const script = `import { traceCalls } from ${JSON.stringify(DIST)}
      const trace = traceCalls(${pid}); await trace.ready; console.log('attached')
      for await (const event of trace) void event`
    const tracer = await startTool(process.execPath, ['--input-type=module', '-e', script], /^attached/, {
      stopSignal: 'SIGKILL',
    })
    await tracer.stop()
    return { stop: async () => {} }
  },
  bpftraceCount: (pid) => bpftrace(pid, '@calls = count();'),
  bpftracePrintf: (pid) => bpftrace(pid, 'printf("%s %s %d\\n", str(arg0), str(arg1), arg2);'),
}

const rows = [
  ['untraced', 'untraced'],
  ['floor', 'the floor: an empty BPF program on function__return (C, libbpf)'],
  ['semaphore', '3.11 line semaphore raised, no probe attached'],
  ['callStats', 'usdtrace callStats, in-kernel counts (latency: false)'],
  ['returns', 'usdtrace traceCalls returns only, into for-await'],
  ['entries', 'usdtrace traceCalls with entries (3.11 line semaphore)'],
  ['afterSigkill', 'untraced, right after a traceCalls tracer was SIGKILLed'],
  ['bpftraceCount', 'bpftrace counting the same probe'],
  ['bpftracePrintf', 'bpftrace printing file, function, line'],
]

function available(name) {
  if (name === 'callStats' && typeof usdtrace.callStats !== 'function') return 'callStats is not in this build'
  if (name.startsWith('bpftrace') && spawnSync('bpftrace', ['--version']).status !== 0) return 'bpftrace is not installed'
  return true
}

async function overhead() {
  const target = await startTarget(['fib', String(FIB)])
  const run = async () => {
    target.send()
    return Number(await target.line())
  }
  await run()
  const samples = Object.fromEntries(rows.map(([name]) => [name, []]))
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name] of rows) {
      if (available(name) !== true) continue
      progress(`overhead round ${round + 1}/${ROUNDS}: ${name}`)
      const tracer = await tracers[name](target.pid)
      samples[name].push(await run())
      await tracer.stop()
    }
  }
  await target.stop()
  return samples
}

/** One flood: how many returns the target made, how many the consumer got, how many were lost. */
async function flood(consumer, ringBytes) {
  const target = await startTarget(['flood', String(FLOOD_SECONDS)])
  let produced, delivered, lost
  if (consumer === 'c') {
    const reference = await startTool(REFERENCE, referenceArgs('drain', target.pid, ringBytes), /^attached/)
    target.send()
    produced = Number(await target.line())
    await sleep(50)
    await reference.stop()
    ;[delivered, lost] = reference.output.at(-1).split(' ').map(Number)
  } else {
    const trace = usdtrace.traceCalls(target.pid, { entries: false, ringBufferBytes: ringBytes })
    await trace.ready
    const consumer = consume(trace)
    target.send()
    produced = Number(await target.line())
    await sleep(50)
    lost = trace.lost
    delivered = consumer.events
    await consumer.stop()
  }
  await target.stop()
  // The leaf calls plus the few frames around them (the flood loop, the module) that also return.
  return { perSecond: produced / FLOOD_SECONDS, share: Math.min(delivered / produced, 1), lost }
}

async function cost() {
  const attach = []
  const firstEvent = []
  const detach = []
  const target = await startTarget(['flood', String(3600)])
  target.send()
  for (let round = 0; round < ROUNDS; round++) {
    const start = performance.now()
    const trace = usdtrace.traceCalls(target.pid)
    await trace.ready
    attach.push(performance.now() - start)
    await trace.next()
    firstEvent.push(performance.now() - start)
    const closing = performance.now()
    await trace.close()
    detach.push(performance.now() - closing)
  }

  const trace = usdtrace.traceCalls(target.pid)
  await trace.ready
  const consumer = consume(trace)
  const rss = []
  const cpuStart = process.cpuUsage()
  const wallStart = performance.now()
  for (let second = 1; second <= SOAK_SECONDS; second++) {
    await sleep(1000)
    rss.push(process.memoryUsage().rss)
  }
  const cpu = process.cpuUsage(cpuStart)
  const wall = performance.now() - wallStart
  const events = consumer.events
  const lost = trace.lost
  await consumer.stop()
  await target.stop()
  const warm = Math.min(10, Math.floor(SOAK_SECONDS / 3))
  return {
    attachMs: median(attach),
    firstEventMs: median(firstEvent),
    detachMs: median(detach),
    cpuPercent: ((cpu.user + cpu.system) / 1000 / wall) * 100,
    rssWarmMiB: rss[warm - 1] / 2 ** 20,
    rssEndMiB: rss.at(-1) / 2 ** 20,
    rssMaxMiB: Math.max(...rss.slice(warm)) / 2 ** 20,
    eventsPerSecond: events / (wall / 1000),
    lost,
  }
}

const overheadSamples = await overhead()
const deliveries = {}
for (const ring of [8 << 20, 64 << 20]) {
  for (const consumer of ['usdtrace', 'c']) {
    const runs = []
    for (let round = 0; round < ROUNDS; round++) {
      progress(`delivery round ${round + 1}/${ROUNDS}: ${consumer}, ${ring >> 20} MiB ring`)
      runs.push(await flood(consumer, ring))
    }
    deliveries[`${consumer}:${ring}`] = {
      perSecond: median(runs.map((r) => r.perSecond)),
      share: median(runs.map((r) => r.share)),
      lost: median(runs.map((r) => r.lost)),
    }
  }
}
progress(`cost: attach, detach, then a ${SOAK_SECONDS} s flood`)
const costs = await cost()
rmSync(dir, { recursive: true, force: true })

const base = median(overheadSamples.untraced)
const floor = median(overheadSamples.floor)
const overheadOf = (name) => median(overheadSamples[name]) / base
const floorOverhead = floor / base
const out = []
out.push('# Benchmark results', '')
out.push(
  `Measured by \`make bench\` (bench/run.js) on ${new Date().toISOString().slice(0, 10)}: Debian 12, kernel ` +
    `${spawnSync('uname', ['-r']).stdout.toString().trim()}, 2 shared cores, Debian's python3.11 (a copy with its ` +
    `own inode). Medians of ${ROUNDS} interleaved rounds; every figure is a ratio to a baseline in the same run.`,
  '',
)
out.push(`## 1. Overhead on the traced program: fib(${FIB}), a Python call every few tens of ns`, '')
out.push('| tracer | target time | vs untraced | vs the floor\'s overhead |', '|---|---:|---:|---:|')
for (const [name, label] of rows) {
  const why = available(name)
  if (why !== true) {
    out.push(`| ${label} | not run: ${why} | | |`)
    continue
  }
  const seconds = median(overheadSamples[name])
  const vsFloor = name === 'untraced' ? '' : ratio(seconds / base - 1, floorOverhead - 1)
  out.push(`| ${label} | ${seconds.toFixed(3)} s | ${ratio(seconds, base)} | ${vsFloor} |`)
}
out.push(
  "| bcc's pythoncalls / pythonflow | not run: bcc compiles its programs against kernel headers, and this kernel has none | | |",
  '',
  'The last column compares the time each tracer adds to the time the bare uprobe adds (1.00x = the floor).',
  '',
)
out.push('## 2. Delivery: a flood of returns into a consumer', '')
out.push(
  `One python3.11 calling a trivial function as fast as it can for ${FLOOD_SECONDS} s, traced for returns. ` +
    'The traced program is the bottleneck on this machine (it pays the uprobe per call): when both consumers ' +
    'take every event, neither is at its ceiling, and the comparison says only that neither falls behind.',
  '',
)
out.push('| consumer | ring | returns/s made | share delivered | lost |', '|---|---:|---:|---:|---:|')
for (const ring of [8 << 20, 64 << 20]) {
  for (const [consumer, label] of [
    ['usdtrace', 'usdtrace traceCalls, for-await'],
    ['c', 'C reference, same BPF object and ring'],
  ]) {
    const d = deliveries[`${consumer}:${ring}`]
    out.push(
      `| ${label} | ${ring >> 20} MiB | ${Math.round(d.perSecond).toLocaleString('en')} | ${(d.share * 100).toFixed(1)}% | ${d.lost} |`,
    )
  }
}
out.push('', '## 3. Cost of the tracer', '')
out.push(
  '| measure | value |',
  '|---|---:|',
  `| traceCalls() to attached (ready) | ${costs.attachMs.toFixed(0)} ms |`,
  `| traceCalls() to the first event | ${costs.firstEventMs.toFixed(0)} ms |`,
  `| close() to every probe detached | ${costs.detachMs.toFixed(0)} ms |`,
  `| tracer CPU over a ${SOAK_SECONDS} s flood (entries and returns) | ${costs.cpuPercent.toFixed(0)}% of a core |`,
  `| events/s over that flood; lost | ${Math.round(costs.eventsPerSecond).toLocaleString('en')}; ${costs.lost} |`,
  `| tracer RSS after warm-up, at the end, highest | ${costs.rssWarmMiB.toFixed(0)} / ${costs.rssEndMiB.toFixed(0)} / ${costs.rssMaxMiB.toFixed(0)} MiB |`,
  '',
)
const met = (ok) => (ok ? 'met' : 'NOT met')
const streamVsFloor = (overheadOf('returns') - 1) / (floorOverhead - 1)
const drainShare = deliveries[`usdtrace:${8 << 20}`].share / deliveries[`c:${8 << 20}`].share
const targets = [
  available('callStats') === true
    ? `- In-kernel aggregation <= 1.1x the floor's overhead: ${((overheadOf('callStats') - 1) / (floorOverhead - 1)).toFixed(2)}x, ${met((overheadOf('callStats') - 1) / (floorOverhead - 1) <= 1.1)}`
    : '- In-kernel aggregation <= 1.1x the floor: not measured (callStats is not in this build)',
  `- Streaming returns <= 1.25x the floor's overhead: ${streamVsFloor.toFixed(2)}x, ${met(streamVsFloor <= 1.25)}`,
  `- 0 lost at default settings: ${deliveries[`usdtrace:${8 << 20}`].lost} lost, ${met(deliveries[`usdtrace:${8 << 20}`].lost === 0)}`,
  `- Delivered events/s >= 50% of the C drain: ${(drainShare * 100).toFixed(0)}% of its share of the flood, ${met(drainShare >= 0.5)}`,
  available('callStats') === true
    ? `- In-kernel aggregation ahead of bpftrace counting: ${ratio(overheadOf('callStats'), overheadOf('bpftraceCount'))} of its time, ${met(overheadOf('callStats') < overheadOf('bpftraceCount'))}`
    : '- Ahead of bpftrace counting: not measured (callStats is not in this build)',
  `- Streaming ahead of bpftrace printing: ${ratio(overheadOf('returns'), overheadOf('bpftracePrintf'))} of its time, ${met(overheadOf('returns') < overheadOf('bpftracePrintf'))}`,
  `- Attach < 200 ms: ${costs.attachMs.toFixed(0)} ms, ${met(costs.attachMs < 200)}; detach < 100 ms: ${costs.detachMs.toFixed(0)} ms, ${met(costs.detachMs < 100)}`,
  `- RSS flat after warm-up: ${met(costs.rssMaxMiB <= costs.rssWarmMiB * 1.1 + 8)}`,
]
out.push('## Targets', '', ...targets, '')
const report = out.join('\n')
writeFileSync(new URL('RESULTS.md', import.meta.url), report)
console.log(report)
