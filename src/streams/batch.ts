// What `trace.batches()` is made of: columns of typed arrays, one row per event, filled straight
// from a batch of ring records. A stream declares its columns and how one record fills a row;
// everything else (allocation, the walk over the records, the async iteration in trace.ts) is
// shared, so no stream makes an object per event.

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
 * Allocates `capacity` rows of every column in one ArrayBuffer, widest columns first so each is
 * aligned for its element type.
 */
export function allocateRows<S extends ColumnSpec>(spec: S, capacity: number): RowStore<S> {
  const names = Object.keys(spec).sort((a, b) => COLUMN_ARRAYS[spec[b]!].BYTES_PER_ELEMENT - COLUMN_ARRAYS[spec[a]!].BYTES_PER_ELEMENT)
  let bytes = 0
  const starts: Record<string, number> = {}
  for (const name of names) {
    starts[name] = bytes
    bytes += Math.ceil((COLUMN_ARRAYS[spec[name]!].BYTES_PER_ELEMENT * capacity) / 8) * 8
  }
  const buffer = new ArrayBuffer(bytes)
  const columns: Record<string, ArrayBufferView> = {}
  const wordOffset: Record<string, number> = {}
  for (const name of Object.keys(spec)) {
    columns[name] = new COLUMN_ARRAYS[spec[name]!](buffer, starts[name], capacity)
    wordOffset[name] = starts[name]! / 4
  }
  return { columns: columns as Columns<S>, words: new Uint32Array(buffer), wordOffset: wordOffset as RowStore<S>['wordOffset'] }
}

/** 2^32, to join a u64's halves into a double. */
export const TWO_TO_32 = 4294967296

/**
 * How one stream turns records into rows: `fill` decodes the record at `offset` into row `row`
 * of `rows` and says whether it made a row (records such as the names calls refer to only
 * inform the decoder); `batch` wraps the rows made for the consumer. Both keep the
 * stream's own state (e.g. its function table) across batches for the life of the trace.
 */
export interface RowDecoder<S extends ColumnSpec, B> {
  readonly columns: S
  fill(rows: RowStore<S>, row: number, view: DataView, bytes: Buffer, offset: number, length: number): boolean
  batch(columns: Columns<S>, length: number): B
}

/**
 * Decodes every record of a delivery ([u32 length][record], `records` times, from `start` to
 * `end`) into one batch of rows. Its columns are the consumer's to keep: a new store per batch.
 */
export function decodeRows<S extends ColumnSpec, B>(
  decoder: RowDecoder<S, B>,
  view: DataView,
  bytes: Buffer,
  start: number,
  records: number,
  end: number,
): { batch: B; length: number } {
  const rows = allocateRows(decoder.columns, records)
  let length = 0
  let at = start
  for (let i = 0; i < records; i++) {
    const size = view.getUint32(at, true)
    if (decoder.fill(rows, length, view, bytes, at + 4, size)) length++
    at += 4 + size
  }
  if (at !== end) throw new Error(`usdtrace: batch of ${end} bytes decoded as ${at}`)
  return { batch: decoder.batch(length === records ? rows.columns : trimmed(rows.columns, length), length), length }
}

/** Columns cut to the rows made, so that each column's own length is the batch's. */
function trimmed<S extends ColumnSpec>(columns: Columns<S>, length: number): Columns<S> {
  const cut: Record<string, unknown> = {}
  for (const [name, column] of Object.entries(columns)) cut[name] = (column as Uint8Array).subarray(0, length)
  return cut as Columns<S>
}
