// What `trace.batches()` is made of: columns of typed arrays, one row per event, filled straight
// from a delivery of ring records into one reused store. A stream declares its columns and how
// its records fill rows; everything else (the store, the check of the walk, the async iteration
// in trace.ts) is shared, so no stream makes an object per event.

/** The typed array a column is, by its element type. */
const COLUMN_ARRAYS = {
  u8: Uint8Array,
  u16: Uint16Array,
  i32: Int32Array,
  u32: Uint32Array,
  f64: Float64Array,
  i64: BigInt64Array,
} as const

export type ColumnType = keyof typeof COLUMN_ARRAYS

/** A stream's columns: name to element type. */
export type ColumnSpec = Record<string, ColumnType>

/** The typed arrays of a batch, one per declared column. */
export type Columns<S extends ColumnSpec> = { readonly [K in keyof S]: InstanceType<(typeof COLUMN_ARRAYS)[S[K]]> }

/**
 * Rows being filled: the columns, and every column's words as a Uint32Array over the same
 * memory, so a 64-bit value copies from a record as two 32-bit halves without making a BigInt.
 */
export interface RowStore<S extends ColumnSpec> {
  columns: Columns<S>
  /** The whole store as 32-bit words; a column's row `i` starts at `wordOffset[name] + i * (bytes / 4)`. */
  words: Uint32Array
  wordOffset: { readonly [K in keyof S]: number }
}

/**
 * The one store a stream's batches are filled in, in turn: a batch's rows are overwritten when
 * the consumer asks for the next. Allocating per batch would cost more than decoding its rows
 * (a fresh ArrayBuffer's pages fault in one by one), and a consumer that aggregates is done with
 * a batch by then. Holds every column for `capacity` rows, widest columns first so that each is
 * aligned for its element type; it grows, once, for a delivery with more records.
 */
export class RowAllocator<S extends ColumnSpec> {
  readonly #spec: S
  /** Column names, widest first, with their element sizes. */
  readonly #layout: [name: string, bytes: number][]
  #rows: RowStore<S> | undefined
  #capacity = 0

  constructor(spec: S) {
    this.#spec = spec
    this.#layout = Object.keys(spec)
      .map((name): [string, number] => [name, COLUMN_ARRAYS[spec[name]!].BYTES_PER_ELEMENT])
      .sort((a, b) => b[1] - a[1])
  }

  /** The store, with room for at least `capacity` rows. */
  rows(capacity: number): RowStore<S> {
    if (this.#rows && capacity <= this.#capacity) return this.#rows
    let bytes = 0
    for (const [, size] of this.#layout) bytes += Math.ceil((size * capacity) / 8) * 8
    const buffer = new ArrayBuffer(bytes)
    const columns: Record<string, ArrayBufferView> = {}
    const wordOffset: Record<string, number> = {}
    let at = 0
    for (const name of Object.keys(this.#spec)) wordOffset[name] = 0
    for (const [name, size] of this.#layout) {
      columns[name] = new COLUMN_ARRAYS[this.#spec[name]!](buffer, at, capacity)
      wordOffset[name] = at / 4
      at += Math.ceil((size * capacity) / 8) * 8
    }
    this.#capacity = capacity
    this.#rows = { columns: columns as Columns<S>, words: new Uint32Array(buffer), wordOffset: wordOffset as RowStore<S>['wordOffset'] }
    return this.#rows
  }
}

/** 2^32, to join a u64's halves into a double. */
export const TWO_TO_32 = 4294967296

/**
 * How one stream turns records into rows: `fill` decodes `records` records of a delivery
 * ([u32 length][record], repeated, from `start`) into the rows of `rows` from 0, and says how
 * many rows it made and where the records ended (records such as the names calls refer to
 * only inform the decoder); `batch` wraps the rows for the consumer. The walk over the records
 * is the stream's, so its loop keeps the columns in locals. Both keep the stream's own state
 * (e.g. its function table) across batches for the life of the trace.
 */
export interface RowDecoder<S extends ColumnSpec, B> {
  readonly columns: S
  fill(rows: RowStore<S>, view: DataView, bytes: Buffer, start: number, records: number): { length: number; end: number }
  batch(columns: Columns<S>, length: number): B
}

/**
 * Decodes every record of a delivery ([u32 length][record], `records` times, from `start` to
 * `end`) into one batch of rows, in the allocator's store: valid until the next batch is decoded.
 */
export function decodeRows<S extends ColumnSpec, B>(
  decoder: RowDecoder<S, B>,
  allocator: RowAllocator<S>,
  view: DataView,
  bytes: Buffer,
  start: number,
  records: number,
  end: number,
): { batch: B; length: number } {
  const rows = allocator.rows(records)
  const made = decoder.fill(rows, view, bytes, start, records)
  if (made.end !== end) throw new Error(`usdtrace: batch of ${end} bytes decoded as ${made.end}`)
  return { batch: decoder.batch(trimmed(rows.columns, made.length), made.length), length: made.length }
}

/** Columns cut to the rows made, so that each column's own length is the batch's. */
function trimmed<S extends ColumnSpec>(columns: Columns<S>, length: number): Columns<S> {
  const cut: Record<string, unknown> = {}
  for (const name in columns) cut[name] = (columns[name] as Uint8Array).subarray(0, length)
  return cut as Columns<S>
}
