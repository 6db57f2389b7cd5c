import { TraceError } from '../errors.js'

/**
 * The id a batch's id column holds for a value first seen once its table was full (`maxIds`):
 * the row is delivered, but its value has no name; `trace.unnamed` counts such values.
 */
export const UNNAMED_ID = 0xffffffff

// At most some 90 MiB of strings at their longest (512 bytes, about 1.3 KiB each in the table):
// a trace that runs for days over strings of unbounded variety stays bounded.
const DEFAULT_MAX_IDS = 1 << 16

/** What streams take whose batches give values ids (strings, names, stacks). */
export interface IdTableOptions {
  /**
   * Distinct values `batches()` gives ids to for the life of the trace (default 65536). A value
   * first seen after that gets `UNNAMED_ID` in its column, counted in `trace.unnamed`.
   */
  maxIds?: number
}

/**
 * The `maxIds` option, checked: ids stay below `UNNAMED_ID`. A stream calls it while opening, so
 * that a bad value rejects `ready` even when the trace is read as events, and again in its batch
 * reader for the value, so that `batches()` throws the same TraceError (as for its other options).
 */
export function maxIdsOf(fn: string, options: IdTableOptions): number {
  const { maxIds = DEFAULT_MAX_IDS } = options
  if (!Number.isInteger(maxIds) || maxIds < 1 || maxIds > UNNAMED_ID) {
    throw new TraceError('INVALID_ARGUMENT', `${fn}: maxIds must be an integer from 1 to ${UNNAMED_ID}, got ${String(options.maxIds)}`)
  }
  return maxIds
}

/**
 * Ids for values of one kind (strings, stacks, functions), found by a text key: one per distinct
 * key, dense from 0 and never reused for the life of the trace, so that a batch's column of ids
 * can index the consumer's arrays. At most `maxIds` of them: a new key past that gets
 * `UNNAMED_ID`, and is counted, rather than held.
 */
export class IdTable<V> {
  readonly #values: V[] = []
  readonly #byKey = new Map<string, number>()
  /** What the ids stand for and which column holds them, for error messages. */
  readonly #what: string
  readonly #column: string
  readonly #maxIds: number
  #unnamed = 0

  constructor(what: string, column: string, maxIds = Infinity) {
    this.#what = what
    this.#column = column
    this.#maxIds = maxIds
  }

  /** How many ids there are so far: every id but `UNNAMED_ID` is below this. */
  get size(): number {
    return this.#values.length
  }

  /** Values given `UNNAMED_ID` so far, each time one was. */
  get unnamed(): number {
    return this.#unnamed
  }

  /** The value behind an id handed out so far; `UNNAMED_ID` or an unknown id is a TraceError. */
  value(id: number): V {
    const value = this.#values[id]
    if (value !== undefined) return value
    if (id === UNNAMED_ID && Number.isFinite(this.#maxIds)) {
      throw new TraceError(
        'INVALID_ARGUMENT',
        `id ${id} is UNNAMED_ID: a ${this.#what} first seen after this trace's ${this.#maxIds} (its maxIds option), counted in trace.unnamed; ` +
          'skip it, or raise maxIds',
      )
    }
    throw new TraceError('INVALID_ARGUMENT', `no ${this.#what} has id ${id} in this trace; ids come from ${this.#column}`)
  }

  /** The id of the value keyed `key`, if it has one. */
  protected find(key: string): number | undefined {
    return this.#byKey.get(key)
  }

  /** A new id for `value`, keyed `key`; `UNNAMED_ID`, counted, once there are `maxIds`. */
  protected add(key: string, value: V): number {
    if (this.#values.length >= this.#maxIds) {
      this.#unnamed++
      return UNNAMED_ID
    }
    const id = this.#values.length
    this.#values.push(value)
    this.#byKey.set(key, id)
    return id
  }
}
