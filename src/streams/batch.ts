// What `trace.batches()` is made of: columns of typed arrays, one row per event. A stream
// declares a layout: which record fields each column is copied from and which records become
// rows. The addon fills the columns straight from the ring (native/columns.cc), so the hot loop
// runs no JavaScript; what needs JavaScript (names, strings, stacks) is a stream's `complete`
// step, over the raw "side" records the layout routes to it. A consumer may choose the columns
// it reads (`batches({ columns })`): the others are neither filled nor handed out.

import { TraceError } from '../errors.js'

/** The typed array a column is, by its element type. */
const COLUMN_ARRAYS = {
  u8: Uint8Array,
  u16: Uint16Array,
  i32: Int32Array,
  u32: Uint32Array,
  f64: Float64Array,
  i64: BigInt64Array,
  u64: BigUint64Array,
} as const

export type ColumnType = keyof typeof COLUMN_ARRAYS

/**
 * Where a column's values come from: `bits` copies a field (as wide or narrower than the
 * column; `signed` sign-extends), `double` converts one to a float, `flag` is 1 where a bit of
 * `mask` is set in a byte; `computed` columns are left to the stream's `complete` step. With
 * `when`, a copied value is present only where that flag test passes (else 0, or NaN for
 * `double`).
 */
export type ColumnSource =
  | { type: ColumnType; code: 'bits' | 'double'; from: number; fromSize: number; signed?: boolean; when?: FlagTest }
  | { type: 'u8'; code: 'flag'; when: FlagTest }
  | { type: ColumnType; code: 'computed' }

/** A test of a flag byte: some bit of `mask` set at `offset` (none set, with `clear`). */
export interface FlagTest {
  offset: number
  mask: number
  clear?: boolean
}

/** A struct as src/kernel/abi.ts describes it. */
export interface RecordStruct<F extends string> {
  size: number
  fields: Readonly<Record<F, number>>
  sizes: Readonly<Record<F, number>>
}

/** Column sources over the fields of one struct, named as in bpf/usdtrace.h. */
export function columnsOf<F extends string>(struct: RecordStruct<F>) {
  const at = (field: F) => ({ from: struct.fields[field], fromSize: struct.sizes[field] })
  return {
    /** The field's value, as wide as the column or narrower. */
    copy: <T extends ColumnType>(type: T, field: F, options: { signed?: boolean; when?: FlagTest } = {}) =>
      ({ type, code: type === 'f64' ? 'double' : 'bits', ...at(field), ...options }) as const,
    /** A flag test of the field's byte: `mask` any set (or, `clear`, none set). */
    test: (field: F, mask: number, clear?: boolean): FlagTest => ({ offset: struct.fields[field], mask, clear }),
    /** 1 where the test passes. */
    flag: (when: FlagTest) => ({ type: 'u8', code: 'flag', when }) as const,
  }
}

/** A column left to the stream's `complete` step. */
export const computed = <T extends ColumnType>(type: T) => ({ type, code: 'computed' }) as const

/** What a record becomes: a row, a side record for `complete`, both, or nothing. */
export type Route = 'row' | 'side' | 'row+side' | 'none'
const ROUTE_BITS: Record<Route, number> = { none: 0, row: 1, side: 2, 'row+side': 3 }

/** Which records become rows and which go to `complete`, and what each column holds. */
export interface BatchLayout<S extends Record<string, ColumnSource>> {
  /**
   * The smallest record a row is read from: every record routed to rows is at least this; one
   * routed only to the side (by its `kind`) need only reach its kind byte.
   */
  minSize: number
  columns: S
  /** The byte that tells record kinds apart, and the route of each kind (others: `route`). */
  kind?: { offset: number; routes: Partial<Record<number, Route>> }
  /** Every record's route where there is no `kind`, and other kinds' (default: row). */
  route?: Route
  /** Rows whose field here is 0 go to `complete` too (e.g. a call that carries its own names). */
  sideWhenZero?: { offset: number; size: number }
  /**
   * The columns rows go to `complete` for (`row+side`, `sideWhenZero`): with none of them
   * chosen, no row is copied to the side. Records routed to the side alone still go there:
   * they keep the stream's tables (names, processes) current.
   */
  rowSideFor?: readonly (keyof S & string)[]
}

/** The typed arrays of a batch, one per declared column. */
export type Columns<S extends Record<string, ColumnSource>> = {
  readonly [K in keyof S]: InstanceType<(typeof COLUMN_ARRAYS)[S[K]['type']]>
}

/** Options of `trace.batches()`. */
export interface BatchOptions<K extends string = string> {
  /**
   * Only these columns, by their names in the batch (e.g. `['kind', 'functionId', 'durationNs']`);
   * every column when left out. The others are not filled (fewer bytes copied per row) and are
   * undefined in each batch. A trace's columns are chosen by its first `batches()` call.
   */
  columns?: readonly K[]
}

/** The names of a batch's typed-array columns, e.g. `'kind' | 'pid' | …` of a `CallBatch`. */
export type ColumnName<B> = { [P in keyof B]-?: B[P] extends ArrayBufferView ? P : never }[keyof B] & string

/**
 * A batch with only the columns `K` (`batches({ columns })`): the others are left out of its
 * type, as they are left unfilled; `length` and its methods (`function(id)`, …) are as in `B`.
 */
export type Selected<B, K extends string> = Omit<B, Exclude<ColumnName<B>, K>>

/**
 * The columns `options.columns` chooses of `names`, in the order of `names`; undefined when it
 * chooses none (every column). A name given twice is chosen once. Anything else is a TraceError
 * that names the cause and the columns there are.
 */
export function chosenColumns(options: unknown, names: readonly string[]): string[] | undefined {
  const there = `this stream's batches have the columns ${names.join(', ')}`
  if (options === undefined) return undefined
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TraceError('INVALID_ARGUMENT', `batches() takes { columns: [names] } or nothing, got ${describe(options)}; ${there}`)
  }
  const { columns } = options as BatchOptions
  if (columns === undefined) return undefined
  if (!Array.isArray(columns)) {
    throw new TraceError('INVALID_ARGUMENT', `batches({ columns }) takes an array of column names, got ${describe(columns)}; ${there}`)
  }
  const unknown = columns.filter((name) => !names.includes(name))
  if (unknown.length > 0) {
    throw new TraceError('INVALID_ARGUMENT', `batches({ columns }): ${unknown.map(describe).join(', ')} ${unknown.length === 1 ? 'is not a column' : 'are not columns'}; ${there}`)
  }
  return names.filter((name) => columns.includes(name))
}

function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : Array.isArray(value) ? 'an array' : String(value)
}

/** The records a delivery routed to `complete`, in ring order: [u32 length][u32 row][record]... */
export interface SideRecords {
  view: DataView
  bytes: Buffer
  start: number
  end: number
  count: number
}

/** Calls `visit` with each side record's offset, length and row (the row it is, or the next row made after it). */
export function eachSideRecord(side: SideRecords, visit: (offset: number, length: number, row: number) => void): void {
  let at = side.start
  for (let i = 0; i < side.count; i++) {
    const length = side.view.getUint32(at, true)
    visit(at + 8, length, side.view.getUint32(at + 4, true))
    at += 8 + length
  }
  if (at !== side.end) throw new Error(`usdtrace: side records of ${side.end - side.start} bytes walked as ${at - side.start}`)
}

/**
 * How one trace reads its batches: the layout, the step that fills computed columns and learns
 * names from side records, and the batch object made of the columns. The last two keep the
 * stream's state (e.g. its function table) across batches for the life of the trace.
 */
export interface BatchReader<S extends Record<string, ColumnSource>, B> {
  readonly layout: BatchLayout<S>
  /** Given only the chosen columns: it fills those of them it computes, and learns from every side record. */
  complete?(columns: Partial<Columns<S>>, length: number, side: SideRecords): void
  /** Given only the chosen columns, the others undefined: the batch's type (`Selected`) omits them. */
  batch(columns: Columns<S>, length: number): B
  /** Values `complete` gave `UNNAMED_ID` so far: its id table was full (id-table.ts). */
  unnamed?(): number
}

/** Rows per delivery: whatever the ring held, up to this many events (~1 MiB of call records). */
const ROWS_PER_DELIVERY = 1 << 14
/**
 * Side records per delivery, in bytes: a delivery ends early once they fill it. Four raw batches
 * of events (64 KiB each) fit, so those made before `batches()` was called fill a few to a buffer.
 */
const SIDE_BYTES = 1 << 18

/** A buffer the addon fills: the columns, `ROWS_PER_DELIVERY` rows each, then the side region. */
export interface ColumnBuffer<S extends Record<string, ColumnSource>> {
  buffer: Uint8Array
  view: DataView
  bytes: Buffer
  columns: Columns<S>
}

/**
 * A layout placed in memory, for the columns chosen of it: each column's offset (widest first,
 * so that each is aligned for its element type), the side region after them, and the form the
 * addon reads. A column not chosen has no place and is not filled.
 */
export class ColumnStore<S extends Record<string, ColumnSource>, B> {
  readonly reader: BatchReader<S, B>
  /** The chosen columns, in the layout's order. */
  readonly columns: readonly string[]
  /** What `session.useColumns` takes. */
  readonly native: object
  readonly #at: Record<string, number> = {}
  readonly #sideOffset: number

  /** `options` are those of `batches()`, checked here. */
  constructor(reader: BatchReader<S, B>, options?: BatchOptions) {
    this.reader = reader
    const { layout } = reader
    this.columns = chosenColumns(options, Object.keys(layout.columns)) ?? Object.keys(layout.columns)
    const names = [...this.columns].sort(
      (a, b) => COLUMN_ARRAYS[layout.columns[b]!.type].BYTES_PER_ELEMENT - COLUMN_ARRAYS[layout.columns[a]!.type].BYTES_PER_ELEMENT,
    )
    let at = 0
    for (const name of names) {
      this.#at[name] = at
      at += Math.ceil((COLUMN_ARRAYS[layout.columns[name]!.type].BYTES_PER_ELEMENT * ROWS_PER_DELIVERY) / 8) * 8
    }
    this.#sideOffset = at
    const rowsToSide = !layout.rowSideFor || layout.rowSideFor.some((name) => this.columns.includes(name))
    const routeBits = (route: Route) => (route === 'row+side' && !rowsToSide ? ROUTE_BITS.row : ROUTE_BITS[route])
    const routes = new Uint8Array(256).fill(routeBits(layout.route ?? 'row'))
    for (const [kind, route] of Object.entries(layout.kind?.routes ?? {})) routes[Number(kind)] = routeBits(route!)
    this.native = {
      kindOffset: layout.kind?.offset,
      routes,
      sideWhenZero: rowsToSide ? layout.sideWhenZero : undefined,
      minSize: layout.minSize,
      capacity: ROWS_PER_DELIVERY,
      sideOffset: this.#sideOffset,
      sideBytes: SIDE_BYTES,
      columns: names.flatMap((name) => {
        const source = layout.columns[name]!
        if (source.code === 'computed') return []
        const width = COLUMN_ARRAYS[source.type].BYTES_PER_ELEMENT
        const when = source.when && { whenOffset: source.when.offset, whenMask: source.when.mask, whenClear: source.when.clear === true }
        if (source.code === 'flag') return [{ code: 'flag', from: source.when.offset, fromSize: 1, at: this.#at[name], width, ...when }]
        return [{ code: source.code, from: source.from, fromSize: source.fromSize, signed: source.signed === true, at: this.#at[name], width, ...when }]
      }),
    }
  }

  /** A new buffer for the addon to fill, with its full-length column views. */
  newBuffer(): ColumnBuffer<S> {
    const buffer = new Uint8Array(this.#sideOffset + SIDE_BYTES)
    const columns: Record<string, ArrayBufferView> = {}
    for (const name of this.columns) {
      columns[name] = new COLUMN_ARRAYS[this.reader.layout.columns[name]!.type](buffer.buffer, this.#at[name], ROWS_PER_DELIVERY)
    }
    return { buffer, view: new DataView(buffer.buffer), bytes: Buffer.from(buffer.buffer), columns: columns as Columns<S> }
  }

  /** The batch a filled buffer holds: `rows` rows, and `sideRecords` side records in `sideBytes` bytes. */
  batch(filled: ColumnBuffer<S>, rows: number, sideBytes: number, sideRecords: number): B {
    const columns: Record<string, ArrayBufferView> = {}
    for (const name in filled.columns) columns[name] = (filled.columns[name] as Uint8Array).subarray(0, rows)
    const side = { view: filled.view, bytes: filled.bytes, start: this.#sideOffset, end: this.#sideOffset + sideBytes, count: sideRecords }
    this.reader.complete?.(columns as Partial<Columns<S>>, rows, side)
    return this.reader.batch(columns as Columns<S>, rows)
  }
}
