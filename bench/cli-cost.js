// What each `usdtrace` command costs the program it traces, as a user meets it: a Flask route
// (Debian's python3-flask, many small calls per request) and fib (a call every few tens of ns,
// the worst case), each round timed inside the target, untraced and traced interleaved, in one
// run. Prints a Markdown table (bench/RESULTS.md quotes it; src/cli/costs.ts words it).
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'

const CLI = new URL('../dist/cli/main.js', import.meta.url).pathname
const SERVICE = new URL('service.py', import.meta.url).pathname
const ROUNDS = Number(process.env.ROUNDS ?? 5)
const WORKLOADS = [
  { name: 'Flask route, 50 requests', line: 'route 50' },
  { name: 'fib(22)', line: 'fib 22' },
]
const COMMANDS = [
  { name: 'usdtrace stat', args: ['stat'] },
  { name: 'usdtrace gc', args: ['gc'] },
  { name: 'usdtrace calls (counts returns)', args: ['calls'] },
  { name: 'usdtrace calls -L (times calls)', args: ['calls', '-L'] },
  { name: 'usdtrace flow -M nothing_matches_ (prints nothing)', args: ['flow', '-M', 'nothing_matches_'] },
  { name: 'usdtrace flow > /dev/null (every call printed)', args: ['flow'] },
]

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

function startService() {
  const child = spawn('/usr/bin/python3.11', [SERVICE], { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
  return {
    pid: child.pid,
    ready: lines.next(),
    async ask(line) {
      child.stdin.write(`${line}\n`)
      return Number((await lines.next()).value)
    },
    stop: () => child.kill('SIGKILL'),
  }
}

async function traced(args, pid) {
  const cli = spawn(process.execPath, [CLI, ...args, String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  await new Promise((resolve, reject) => {
    cli.stderr.on('data', (d) => {
      stderr += d
      if (/tracing /.test(stderr)) resolve()
    })
    cli.on('exit', () => reject(new Error(`usdtrace ${args.join(' ')} exited: ${stderr}`)))
  })
  return async () => {
    cli.kill('SIGINT')
    await once(cli, 'exit')
  }
}

const service = startService()
await service.ready
const rows = []
for (const workload of WORKLOADS) {
  const calls = await service.ask(`count ${workload.line}`)
  const untraced = []
  const byCommand = new Map(COMMANDS.map((command) => [command.name, []]))
  for (let round = 0; round < ROUNDS; round++) {
    for (const command of COMMANDS) {
      untraced.push(await service.ask(workload.line))
      const stop = await traced(command.args, service.pid)
      byCommand.get(command.name).push(await service.ask(workload.line))
      await stop()
    }
  }
  const base = median(untraced)
  for (const command of COMMANDS) {
    const time = median(byCommand.get(command.name))
    rows.push({ workload: workload.name, calls, command: command.name, untracedMs: base * 1e3, tracedMs: time * 1e3, ratio: time / base, perCallUs: ((time - base) / calls) * 1e6 })
  }
}
service.stop()

console.log('| workload | Python calls | command | untraced | traced | slowdown | added per Python call |')
console.log('|---|---:|---|---:|---:|---:|---:|')
for (const row of rows) {
  console.log(`| ${row.workload} | ${row.calls.toLocaleString('en')} | ${row.command} | ${row.untracedMs.toFixed(1)} ms | ${row.tracedMs.toFixed(1)} ms | ${row.ratio.toFixed(1)}x | ${row.perCallUs.toFixed(2)} µs |`)
}
