// What CPython 3.11's call tracing costs the traced program, as ratios to its untraced time,
// measured side by side in one run (median of interleaved rounds): the uprobe floor (an empty
// BPF program on function__return), returns only, entries too (the line semaphore raised), the
// raised semaphore alone with no probe attached, and after a tracer was SIGKILLed.
// Runs on a byte-identical copy of python3.11 (its own inode), so no other tracer disturbs it.
import { spawn } from 'node:child_process'
import { copyFileSync, chmodSync, mkdtempSync, rmSync } from 'node:fs'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { inspect, traceCalls } from '../dist/index.js'
import { binding } from '../dist/binding.js'
import { findLineSemaphore } from '../dist/inspect.js'

const ROUNDS = Number(process.env.ROUNDS ?? 5)
const FIB = Number(process.env.FIB ?? 24)

const dir = mkdtempSync(join(tmpdir(), 'usdtrace-bench-'))
const python = join(dir, 'python3.11')
copyFileSync('/usr/bin/python3.11', python)
chmodSync(python, 0o755)

async function startTarget() {
  const child = spawn(python, [new URL('workload.py', import.meta.url).pathname, String(FIB)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
  await lines.next()
  return {
    pid: child.pid,
    /** One fib(N) in the target: the seconds it measured. */
    async run() {
      child.stdin.write('\n')
      return Number((await lines.next()).value)
    },
    async stop() {
      child.kill('SIGKILL')
      await once(child, 'exit')
    },
  }
}

/** Runs the workload while `trace` (if any) is consumed by a for-await loop. */
async function timed(target, trace) {
  if (!trace) return target.run()
  await trace.ready
  const consumed = (async () => {
    for await (const event of trace) void event
  })()
  const seconds = await target.run()
  await trace.close()
  await consumed
  return seconds
}

/** Runs the workload with a bare session: `attach` decides what it holds in the kernel. */
async function withSession(target, attach) {
  const session = new binding.Session({ object: 'calls' })
  attach(session)
  const seconds = await target.run()
  await session.close()
  return seconds
}

async function killedTracer(target) {
  const script = `import { traceCalls } from ${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)}
    const trace = traceCalls(${target.pid}); await trace.ready; console.log('attached')
    for await (const event of trace) void event`
  const tracer = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  await once(tracer.stdout, 'data')
  tracer.kill('SIGKILL')
  await once(tracer, 'exit')
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

const target = await startTarget()
const line = findLineSemaphore(await inspect(target.pid))
const samples = { untraced: [], floor: [], semaphore: [], returns: [], entries: [], afterSigkill: [] }
await target.run() // warm-up
for (let round = 0; round < ROUNDS; round++) {
  samples.untraced.push(await timed(target))
  samples.floor.push(
    await withSession(target, (s) => s.attachUsdt('hold_semaphore', target.pid, python, 'python', 'function__return')),
  )
  samples.semaphore.push(
    await withSession(target, (s) =>
      s.attachUprobe('hold_semaphore', target.pid, python, line.coldCodeOffsets[0], line.semaphoreFileOffset),
    ),
  )
  samples.returns.push(await timed(target, traceCalls(target.pid, { entries: false })))
  samples.entries.push(await timed(target, traceCalls(target.pid)))
  await killedTracer(target)
  samples.afterSigkill.push(await timed(target))
}
await target.stop()
rmSync(dir, { recursive: true, force: true })

const base = median(samples.untraced)
const rows = [
  ['untraced', base],
  ['the floor: an empty BPF program on function__return', median(samples.floor)],
  ['the line semaphore raised, nothing attached to a probe', median(samples.semaphore)],
  ['traceCalls, returns only (entries: false)', median(samples.returns)],
  ['traceCalls with entries (3.11 line semaphore raised)', median(samples.entries)],
  ['untraced again, after a tracer was SIGKILLed', median(samples.afterSigkill)],
]
console.log(`python3.11 fib(${FIB}), median of ${ROUNDS} interleaved rounds, ${new Date().toISOString().slice(0, 10)}`)
console.log('| condition | seconds | vs untraced |\n|---|---:|---:|')
for (const [name, seconds] of rows) console.log(`| ${name} | ${seconds.toFixed(3)} | ${(seconds / base).toFixed(2)}x |`)
