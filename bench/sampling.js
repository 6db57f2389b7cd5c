// `make bench`, stack sampling: what sampling a CPython without probes costs the program, side by
// side with no sampler and with the kernel's own sampler (perf record -F 999 -g), in one run. Each
// figure is the median over interleaved rounds of the work's time under the sampler divided by its
// time with none, in the same round. The BPF programs' own cost per run comes from the kernel's
// BPF statistics. Writes bench/SAMPLING.md and prints it.
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'

const ROUNDS = Number(process.env.ROUNDS ?? 7)
const RUNS_PER_SAMPLE = 3
const PYTHON = process.env.PYTHON ?? '/root/.pyenv/versions/3.12.1/bin/python3.12'
const WORKLOAD = new URL('sampling_workload.py', import.meta.url).pathname
const DIST = new URL('../dist/index.js', import.meta.url).href
const WORK = { cpu: ['cpu', process.env.FIB ?? '25'], switch: ['switch', process.env.SWITCHES ?? '20000'] }
const STATS = '/proc/sys/kernel/bpf_stats_enabled'
const dir = mkdtempSync(join(tmpdir(), 'usdtrace-sampling-'))

const progress = (message) => process.stderr.write(`bench: ${message}\n`)
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

/** A process whose stdout is read line by line. */
function start(command, args, options = {}) {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'inherit'], ...options })
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
  const exited = once(child, 'exit')
  return { child, pid: child.pid, next: async () => (await lines.next()).value, exited }
}

/** The target: send() runs its work once, and the line it prints is the seconds that took. */
async function startTarget(kind) {
  const target = start(PYTHON, [WORKLOAD, ...WORK[kind]])
  if ((await target.next()) !== 'ready') throw new Error('the workload did not start')
  return {
    pid: target.pid,
    async run() {
      let best = Infinity
      for (let i = 0; i < RUNS_PER_SAMPLE; i++) {
        target.child.stdin.write('\n')
        best = Math.min(best, Number(await target.next()))
      }
      return best
    },
    async stop() {
      target.child.kill('SIGKILL')
      await target.exited
    },
  }
}

/** A usdtrace sampler in a process of its own, as a user runs one, consuming what it yields. */
async function usdtrace(pid, { stream, hz, offCpu }) {
  const script = `
    import { sampleStacks, stackProfile } from ${JSON.stringify(DIST)}
    const options = { pid: ${pid}, hz: ${hz}, offCpu: ${offCpu} }
    const trace = ${stream === 'profile' ? 'stackProfile({ ...options, intervalMs: 1000 })' : 'sampleStacks(options)'}
    await trace.ready
    console.log('ready')
    process.on('SIGTERM', () => void trace.close())
    let items = 0
    for await (const item of trace) items++
    console.log(JSON.stringify({ items, lost: trace.lost }))`
  const tool = start(process.execPath, ['--input-type=module', '-e', script])
  if ((await tool.next()) !== 'ready') throw new Error('usdtrace did not start')
  return {
    pid: tool.pid,
    async stop() {
      tool.child.kill('SIGTERM')
      const summary = JSON.parse(await tool.next())
      await tool.exited
      if (summary.lost !== 0) throw new Error(`usdtrace lost ${summary.lost} samples`)
      return summary
    },
  }
}

/** The kernel's own sampler, as a user runs it on a process. */
async function perfRecord(pid) {
  const output = join(dir, 'perf.data')
  const perf = spawn('perf', ['record', '-F', '999', '-g', '-p', String(pid), '-o', output], { stdio: ['ignore', 'ignore', 'pipe'] })
  const exited = once(perf, 'exit')
  // perf says nothing when it starts; the kernel has its events once its output file exists.
  for (let i = 0; i < 200; i++) {
    try {
      if (readFileSync(output).length > 0) break
    } catch {}
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  return {
    async stop() {
      perf.kill('SIGINT')
      await exited
      rmSync(output, { force: true })
    },
  }
}

const SAMPLERS = [
  { name: 'none', start: null },
  { name: 'sampleStacks 99 Hz, on CPU', start: (pid) => usdtrace(pid, { stream: 'samples', hz: 99, offCpu: false }) },
  { name: 'sampleStacks 999 Hz, on CPU', start: (pid) => usdtrace(pid, { stream: 'samples', hz: 999, offCpu: false }) },
  { name: 'sampleStacks 99 Hz, on and off CPU', start: (pid) => usdtrace(pid, { stream: 'samples', hz: 99, offCpu: true }) },
  { name: 'sampleStacks 999 Hz, on and off CPU', start: (pid) => usdtrace(pid, { stream: 'samples', hz: 999, offCpu: true }) },
  { name: 'stackProfile 999 Hz, on and off CPU', start: (pid) => usdtrace(pid, { stream: 'profile', hz: 999, offCpu: true }) },
  { name: 'perf record -F 999 -g', start: perfRecord },
]

/** Interleaved rounds: in each, every sampler's time over the same round's time with none. */
async function slowdowns(kind) {
  const target = await startTarget(kind)
  const ratios = new Map(SAMPLERS.map((sampler) => [sampler.name, []]))
  try {
    await target.run()
    for (let round = 0; round < ROUNDS; round++) {
      progress(`${kind} round ${round + 1}/${ROUNDS}`)
      const times = new Map()
      for (const sampler of SAMPLERS) {
        const running = sampler.start && (await sampler.start(target.pid))
        times.set(sampler.name, await target.run())
        await running?.stop()
      }
      for (const sampler of SAMPLERS) ratios.get(sampler.name).push(times.get(sampler.name) / times.get('none'))
    }
  } finally {
    await target.stop()
  }
  return new Map([...ratios].map(([name, values]) => [name, median(values)]))
}

/** The ids of the BPF programs a process holds, from its fds' fdinfo (bpftool's `pids` needs a build option Debian's lacks). */
function programsHeldBy(pid) {
  const ids = new Set()
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const id = /^prog_id:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))?.[1]
      if (id) ids.add(Number(id))
    } catch {} // closed since the listing
  }
  return ids
}

/** The kernel's run time and run count of each of usdtrace's sampling programs while `stream` runs the work. */
async function bpfCost(kind, options) {
  const target = await startTarget(kind)
  const enabled = readFileSync(STATS, 'utf8').trim()
  writeFileSync(STATS, '1')
  try {
    const sampler = await usdtrace(target.pid, options)
    for (let i = 0; i < 3; i++) await target.run()
    const shown = JSON.parse(spawnSync('bpftool', ['-j', 'prog', 'show'], { encoding: 'utf8' }).stdout)
    const owned = programsHeldBy(sampler.pid)
    const { items } = await sampler.stop()
    const cost = {}
    for (const name of ['sample_on_cpu', 'on_switch']) {
      const ours = (program) => owned.has(program.id)
      const programs = shown.filter((program) => program.name === name && program.run_cnt > 0 && ours(program))
      if (programs.length === 0) continue
      const runs = programs.reduce((sum, program) => sum + program.run_cnt, 0)
      const ns = programs.reduce((sum, program) => sum + program.run_time_ns, 0)
      cost[`${kind}: ${name}`] = { runs, nsPerRun: ns / runs, samples: items, nsPerSample: ns / items }
    }
    return cost
  } finally {
    writeFileSync(STATS, enabled)
    await target.stop()
  }
}

const percent = (ratio) => `${ratio.toFixed(3)}x`
progress(`${PYTHON}, ${ROUNDS} rounds`)
const cpu = await slowdowns('cpu')
const switching = await slowdowns('switch')
const onCost = await bpfCost('cpu', { stream: 'samples', hz: 999, offCpu: false })
const offCost = await bpfCost('switch', { stream: 'samples', hz: 999, offCpu: true })
rmSync(dir, { recursive: true, force: true })

const machine = `${process.arch}, ${(await import('node:os')).cpus().length} CPUs, Linux ${(await import('node:os')).release()}`
const lines = [
  '# Stack sampling: what it costs the sampled program',
  '',
  `\`make bench\` (bench/sampling.js), ${new Date().toISOString().slice(0, 10)}, ${machine}, target ${PYTHON} (no USDT probes).`,
  `Each figure is the work's time under the sampler divided by its time with none, in the same round (best of ${RUNS_PER_SAMPLE} runs each), the median over ${ROUNDS} interleaved rounds.`,
  `\`cpu\`: fib(${WORK.cpu[1]}), pure Python on one thread. \`switch\`: ${WORK.switch[1]} round trips between two threads, four context switches each, so every switch runs the off-CPU program.`,
  '',
  '| sampler | cpu | switch |',
  '|---|---:|---:|',
  ...SAMPLERS.filter((sampler) => sampler.start).map((sampler) => `| ${sampler.name} | ${percent(cpu.get(sampler.name))} | ${percent(switching.get(sampler.name))} |`),
  '',
  'The BPF programs\' own cost, from the kernel\'s BPF statistics (kernel.bpf_stats_enabled), sampling at 999 Hz: per run, and in all per sample delivered (on CPU: `cpu`; on and off: `switch`):',
  '',
  '| program | runs | ns per run | samples delivered | ns per sample |',
  '|---|---:|---:|---:|---:|',
  ...Object.entries({ ...onCost, ...offCost }).map(([name, cost]) => `| ${name} | ${cost.runs} | ${cost.nsPerRun.toFixed(0)} | ${cost.samples} | ${cost.nsPerSample.toFixed(0)} |`),
  '',
  'sample_on_cpu runs on every CPU at each tick, whatever runs there: a tick in another process costs a map lookup; one in the target walks its stack. on_switch runs at every context switch on the machine and walks a stack when a thread of the target blocks.',
  '',
]
const report = lines.join('\n')
writeFileSync(new URL('SAMPLING.md', import.meta.url), report)
process.stdout.write(report)
