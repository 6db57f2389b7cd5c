// A tool built on usdtrace, written the way a user writes one: strict TypeScript against the
// published types only. test/package.test.ts compiles it (tsc --strict) against the packed
// package, as an ES module and as CommonJS. Usage: node consumer.js PID [MIN_MS]
import {
  CallSummary,
  TraceError,
  doctor,
  formatDoctor,
  formatDuration,
  inspect,
  traceCalls,
  type CallEvent,
  type Capability,
  type TraceErrorCode,
} from 'usdtrace'

/** What to tell the user for the failures a tool like this one expects. */
const ADVICE: Partial<Record<TraceErrorCode, string>> = {
  PERMISSION_DENIED: formatDoctor(doctor().filter((check) => !check.ok)),
  NO_PROBES: 'this python was built without USDT probes',
}

function describe(capability: Capability): string {
  if (capability.available) return capability.mode === 'line-semaphore' ? `yes, at a cost: ${capability.cost}` : 'yes'
  return `no: ${capability.reason}`
}

function isSlow(event: CallEvent, minNs: bigint): boolean {
  return event.kind === 'return' && event.durationNs !== undefined && event.durationNs >= minNs
}

async function main(pid: number, minMs: number): Promise<void> {
  const python = await inspect(pid)
  console.log(`python ${python.version?.major}.${python.version?.minor}, calls: ${describe(python.capabilities.calls)}`)

  const controller = new AbortController()
  process.once('SIGINT', () => controller.abort())
  const summary = new CallSummary()
  const trace = traceCalls(pid, { signal: controller.signal })
  try {
    for await (const event of trace) {
      summary.add(event)
      if (isSlow(event, BigInt(minMs) * 1_000_000n)) {
        console.log(`${event.func} took ${formatDuration(event.durationNs!)}`)
      }
    }
  } catch (error) {
    if (!(error instanceof Error) || error.name !== 'AbortError') throw error
  }
  console.log(summary.format(10))
  if (trace.lost > 0) console.log(`${trace.lost} events lost`)
}

main(Number(process.argv[2]), Number(process.argv[3] ?? 1)).catch((error: unknown) => {
  if (error instanceof TraceError) {
    console.error(`${error.code}: ${error.message}`)
    const advice = ADVICE[error.code]
    if (advice) console.error(advice)
  } else {
    console.error(error)
  }
  process.exitCode = 1
})
