import type { MapDump, NativeSession, SessionWith } from '../kernel/binding.js'
import { TraceError } from '../errors.js'

// A writer runs for microseconds; one still registered after this is a bug, not a slow CPU.
const QUIESCE_LIMIT_MS = 10_000

/** A session whose object keeps sums `Sums` in halves: a `generation` and `<sum>_even` / `<sum>_odd` maps. */
type HalvesSession<Sums extends string> = NativeSession & SessionWith<never, 'generation' | `${Sums}_even` | `${Sums}_odd`>

/**
 * The two halves of a session's kernel sums (bpf/aggregate.bpf.h): taking one switches the BPF
 * side to the other half, waits until no program still writes into the finished one, then reads
 * and empties it, so no update falls between the read and the removal.
 */
export class AggregateHalves<Sums extends string> {
  #session: HalvesSession<Sums>
  #what: string
  #generation = 0n

  /** `what` names the stream in the error a stuck half would raise. */
  constructor(session: HalvesSession<Sums>, what: string) {
    this.#session = session
    this.#what = what
  }

  /** Takes the half written so far: every map named `<name>_even` or `<name>_odd`, in order. */
  async take(names: Sums[]): Promise<MapDump[]> {
    const half = this.#generation & 1n ? 'odd' : 'even'
    this.#generation++
    const generation = new Uint8Array(8)
    new DataView(generation.buffer).setBigUint64(0, this.#generation, true)
    this.#session.updateMap('generation', new Uint8Array(4), generation)
    const deadline = performance.now() + QUIESCE_LIMIT_MS
    while (this.#session.counters()[`writers_${half}`] !== 0n) {
      if (performance.now() > deadline) {
        throw new TraceError('ATTACH_FAILED', `the kernel side of ${this.#what} never released writers_${half}; please report this bug`)
      }
      await new Promise((resolve) => setImmediate(resolve))
    }
    return names.map((name) => this.#session.dumpMap(`${name}_${half}` as const, true))
  }
}

/**
 * What `batches()` of a summary stream does: refuse, saying why. Batches spare a consumer a step
 * per event; a summary is already summed in the kernel and takes one step per interval, so rows
 * of it would save nothing, and `rows` names the stream whose batches have one row per event.
 */
export function summaryWithoutBatches(stream: string, rows: string): () => never {
  return () => {
    throw new TraceError(
      'INVALID_ARGUMENT',
      `${stream} yields one snapshot per interval, already aggregated in the kernel: it has no batches(); iterate it with for await (or use ${rows})`,
    )
  }
}
