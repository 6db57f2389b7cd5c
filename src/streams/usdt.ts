import { statSync } from 'node:fs'
import { explainProbeAttachError, openAttached, raiseLineSemaphore } from '../kernel/attach.js'
import { type UsdtProbe, readUsdtProbes } from '../process/elf.js'
import { TraceError } from '../errors.js'
import { inspectBinary, type Inspection, type TraceSubject } from '../process/inspect.js'
import {
  USDT_COOKIE_STR_SHIFT,
  USDT_EVENT,
  USDT_MAX_ARGS,
  USDT_STR_TRUNCATED,
} from '../kernel/abi.js'
import { listProbes } from '../process/probes.js'
import { attachUsdtSites, usdtArguments } from '../kernel/usdt-args.js'
import { binaryTarget, resolveProcesses, type TargetOptions } from '../process/targets.js'
import { Trace, ringBufferSettings, type OpenedSession, type RecordDecoder, type StreamOptions } from './trace.js'
import { columnsOf, computed, eachSideRecord, type BatchReader, type ColumnName, type ColumnSource, type Columns, type SideRecords } from './batch.js'
import { NameTable } from './name-table.js'
import { maxIdsOf, type IdTableOptions } from './id-table.js'

/** How to read one probe argument: an integer of that width and sign, a pointer, or a C string. */
export type UsdtArgType = 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'u64' | 'i64' | 'str' | 'ptr'

const ARG_TYPES: readonly UsdtArgType[] = ['u8', 'i8', 'u16', 'i16', 'u32', 'i32', 'u64', 'i64', 'str', 'ptr']

/** One hit of a USDT probe. */
export interface UsdtEvent {
  /** The process that hit the probe. */
  pid: number
  /** The kernel thread id; the main thread's is the pid. */
  tid: number
  /** CLOCK_MONOTONIC, comparable with process.hrtime.bigint() */
  timestampNs: bigint
  /** The probe's provider, e.g. `python`. */
  provider: string
  /** The probe's name, e.g. `gc__start`. */
  name: string
  /**
   * The declared arguments, in order: a number for 8- to 32-bit integers, a bigint for u64, i64
   * and ptr, a string for str (empty when the pointer could not be read).
   */
  args: (number | bigint | string)[]
  /** A string argument was longer than 512 bytes and arrives cut to that. */
  truncated: boolean
}

export interface TraceUsdtOptions extends StreamOptions, TargetOptions, IdTableOptions {
  /**
   * The ELF file holding the probe. Alone, it is the target, as `binary` is: every process
   * running it or mapping it (a library), now and later. With `pid` or `pids`, it picks which
   * of their mapped objects to trace when several carry the probe; by default all of them are.
   */
  path?: string
  /** The probe's provider, as `listProbes` shows it, e.g. 'postgresql' */
  provider: string
  /** The probe's name, e.g. 'query__start' */
  name: string
  /** How to decode the probe's first arguments, in order; none by default. */
  args?: UsdtArgType[]
}

/**
 * The column of one declared argument in a `UsdtBatch`, by its type: a `Float64Array` of the
 * values for the 8- to 32-bit integers (numbers in `UsdtEvent.args`, exact in a double), a
 * `BigInt64Array` for i64 and a `BigUint64Array` for u64 and ptr (bigints there), and a
 * `Uint32Array` of string ids for str (`batch.string(id)`; `UNNAMED_ID` for a string first seen past `maxIds`).
 */
export type UsdtColumn = Float64Array | BigInt64Array | BigUint64Array | Uint32Array

/** Where a record's argument values begin, 8 bytes each: the argument sign-extended to 64 bits, low bytes first. Its strings follow them. */
const VALUES = USDT_EVENT.size

/** How each integer type's column reads its value: its own low bytes of the 8, in a double up to 32 bits. */
const INTEGER_ARGS: Record<Exclude<UsdtArgType, 'str'>, { type: 'f64' | 'i64' | 'u64'; size: number; signed: boolean }> = {
  u8: { type: 'f64', size: 1, signed: false },
  i8: { type: 'f64', size: 1, signed: true },
  u16: { type: 'f64', size: 2, signed: false },
  i16: { type: 'f64', size: 2, signed: true },
  u32: { type: 'f64', size: 4, signed: false },
  i32: { type: 'f64', size: 4, signed: true },
  i64: { type: 'i64', size: 8, signed: true },
  u64: { type: 'u64', size: 8, signed: false },
  ptr: { type: 'u64', size: 8, signed: false },
}

/** The column of argument `i`: its value, or (str) a string id `completeUsdt` fills in. */
function argColumn(type: UsdtArgType, i: number): ColumnSource {
  if (type === 'str') return computed('u32')
  const { type: columnType, size, signed } = INTEGER_ARGS[type]
  return { type: columnType, code: columnType === 'f64' ? 'double' : 'bits', from: VALUES + 8 * i, fromSize: size, signed }
}

const hit = columnsOf(USDT_EVENT)

/** The columns every `UsdtBatch` has, from a usdt_event's fields; the arguments' follow, as `arg0`, `arg1`, ... */
const USDT_COLUMNS = {
  pid: hit.copy('u32', 'pid'),
  tid: hit.copy('u32', 'tid'),
  timestampNs: hit.copy('i64', 'timestamp_ns'),
  truncated: hit.flag(hit.test('flags', USDT_STR_TRUNCATED)),
}

type UsdtColumns = Record<string, ColumnSource>

/** A trace's columns: the fixed ones, then one per declared argument. */
function usdtColumns(types: readonly UsdtArgType[]): UsdtColumns {
  const columns: UsdtColumns = { ...USDT_COLUMNS }
  types.forEach((type, i) => (columns[`arg${i}`] = argColumn(type, i)))
  return columns
}

/**
 * Probe hits in columns, from `trace.batches()`: row `i` of every column is one hit, for `i`
 * below `length` (each column's own length), with one column per declared argument in `args`.
 * The next batch of the trace overwrites the columns: copy what you keep. String ids and
 * `string(id)` hold for the life of the trace. See docs/batches.md.
 */
export class UsdtBatch {
  /** Rows in this batch. */
  readonly length: number
  /** The probe's provider, the same for every row: a trace follows one probe. */
  readonly provider: string
  /** The probe's name, the same for every row. */
  readonly name: string
  /** The process that hit the probe. */
  readonly pid: Uint32Array
  /** The kernel thread id; the main thread's is the pid. */
  readonly tid: Uint32Array
  /** CLOCK_MONOTONIC, exact, as `UsdtEvent.timestampNs`. */
  readonly timestampNs: BigInt64Array
  /** 1 when a string argument of the hit was longer than 512 bytes and its id is that of the string cut to 512. */
  readonly truncated: Uint8Array
  /**
   * One column per declared argument, in order, typed by its declared type (see `UsdtColumn`);
   * undefined where `batches({ columns })` did not choose it (`arg0`, `arg1`, …).
   */
  readonly args: readonly UsdtColumn[]
  readonly #strings: NameTable

  /** @internal Batches come from `trace.batches()`. */
  constructor(columns: Columns<UsdtColumns>, length: number, probe: { provider: string; name: string; argCount: number }, strings: NameTable) {
    this.length = length
    this.provider = probe.provider
    this.name = probe.name
    this.pid = columns.pid as Uint32Array
    this.tid = columns.tid as Uint32Array
    this.timestampNs = columns.timestampNs as BigInt64Array
    this.truncated = columns.truncated as Uint8Array
    this.args = Array.from({ length: probe.argCount }, (_, i) => columns[`arg${i}`] as UsdtColumn)
    this.#strings = strings
  }

  /** The string behind an id of a str argument's column, of this batch or an earlier one of the same trace. */
  string(id: number): string {
    return this.#strings.value(id)
  }

  /** One past the highest string id handed out so far: the ids are dense from 0 (`UNNAMED_ID` aside). */
  get stringCount(): number {
    return this.#strings.size
  }
}

/** What `traceUsdt` returns: an async iterator of probe hits, or of `UsdtBatch`es through `batches()`. */
export type UsdtTrace = Trace<UsdtEvent, UsdtBatch, UsdtColumnName>

/**
 * The names `batches({ columns })` chooses a `UsdtBatch`'s columns by: the fixed ones, and
 * `arg0`, `arg1`, … for the declared arguments (`args[0]`, `args[1]`, …).
 */
export type UsdtColumnName = ColumnName<UsdtBatch> | `arg${number}`

/**
 * Streams the hits of any USDT probe of any program, its arguments decoded by the declared types.
 * The trace attaches at once (`await trace.ready` to know when) and ends when every traced
 * process has exited; one that follows a binary runs until closed. CPython 3.11 fires
 * `python:function__entry` only while its line probe's semaphore is raised, so tracing that
 * probe raises it too, which makes every call of the traced processes slower (docs/api.md).
 */
export function traceUsdt(options: TraceUsdtOptions): UsdtTrace {
  const given: TraceUsdtOptions = typeof options === 'object' && options !== null ? options : ({} as TraceUsdtOptions)
  // Checked while opening, so that bad input rejects `ready` like any other failure; the
  // decoder only runs after that, on the types it filled in.
  const types: UsdtArgType[] = []
  return new Trace(() => openUsdtSession(given, types), usdtDecoder(given.provider, given.name, types), given, () =>
    usdtBatchReader(given.provider, given.name, checkProbeOptions(given), maxIdsOf('traceUsdt', given)),
  )
}

/** Where the probe is attached: one process (or -1 for all) and the object carrying it there. */
interface ProbeSite {
  pid: number
  object: string
  probes: UsdtProbe[]
}

async function openUsdtSession(options: TraceUsdtOptions, types: UsdtArgType[]): Promise<OpenedSession> {
  types.push(...checkProbeOptions(options))
  maxIdsOf('traceUsdt', options)
  const ring = ringBufferSettings(options)
  const { sites, exitPids } = await findProbeSites(options)
  checkArgCount(options, types, sites)
  const cookie = usdtCookie(types)
  const session = await openAttached({ object: 'usdt', ...ring }, sites.map(subjectOf), (session) => {
    for (const site of sites) {
      try {
        attachUsdtSites(session, 'on_usdt', site.pid, site.probes, { cookie, argCount: types.length })
      } catch (error) {
        throw explainProbeAttachError(error, subjectOf(site), `${options.provider}:${options.name} in ${site.object}`, site.probes)
      }
      const interpreter = entryNeedingLineSemaphore(options, site)
      if (interpreter) raiseLineSemaphore(session, interpreter, 'hold_semaphore')
    }
  })
  return { session, exitPids }
}

/**
 * The interpreter of a site of CPython 3.11's python:function__entry, as the object alone
 * describes it for the site's process(es): that probe fires only while the line probe's
 * semaphore is raised, as traceCalls raises it. Undefined for any other probe or version.
 */
function entryNeedingLineSemaphore(options: TraceUsdtOptions, site: ProbeSite): Inspection | undefined {
  if (options.provider !== 'python' || options.name !== 'function__entry') return undefined
  const interpreter = { ...inspectBinary(site.object), pid: site.pid }
  return interpreter.capabilities.calls.mode === 'line-semaphore' ? interpreter : undefined
}

function checkProbeOptions(options: TraceUsdtOptions): UsdtArgType[] {
  for (const field of ['provider', 'name'] as const) {
    if (typeof options[field] !== 'string' || options[field] === '') {
      throw new TraceError(
        'INVALID_ARGUMENT',
        `${field} must be the probe's ${field} as listProbes() shows it, got ${String(options[field])}`,
      )
    }
  }
  const types = options.args ?? []
  if (!Array.isArray(types)) {
    throw new TraceError('INVALID_ARGUMENT', `args must be an array of argument types (${ARG_TYPES.join(', ')})`)
  }
  types.forEach((type, i) => {
    if (!ARG_TYPES.includes(type)) {
      throw new TraceError(
        'INVALID_ARGUMENT',
        `args[${i}] is ${JSON.stringify(type)}, which is not an argument type; use one of ${ARG_TYPES.join(', ')}`,
      )
    }
  })
  if (types.length > USDT_MAX_ARGS) {
    throw new TraceError(
      'INVALID_ARGUMENT',
      `${types.length} argument types declared; a USDT probe has at most ${USDT_MAX_ARGS} arguments`,
    )
  }
  return types
}

async function findProbeSites(options: TraceUsdtOptions): Promise<{ sites: ProbeSite[]; exitPids: number[] }> {
  const onlyPath = options.path !== undefined && options.pid === undefined && options.pids === undefined
  if (options.path !== undefined && options.binary !== undefined) {
    throw new TraceError('INVALID_ARGUMENT', 'name the file once: { path } and { binary } are the same target here')
  }
  const binary = binaryTarget(onlyPath ? { binary: options.path } : options)
  if (binary !== undefined) {
    const probes = readUsdtProbes(binary)
    return { sites: [{ pid: -1, object: binary, probes: matching(probes, options, binary) }], exitPids: [] }
  }
  const { exitPids } = await resolveProcesses(options, 'traceUsdt')
  const sites: ProbeSite[] = []
  for (const pid of exitPids) {
    let probes = await listProbes(pid)
    if (options.path !== undefined) probes = probesOfFile(probes, options.path, pid)
    const found = matching(probes, options, `process ${pid}`)
    for (const object of new Set(found.map((p) => p.object))) {
      sites.push({ pid, object, probes: found.filter((p) => p.object === object) })
    }
  }
  return { sites, exitPids }
}

/** The probes named by the options; throws the TraceError listing what exists instead. */
function matching(probes: UsdtProbe[], options: TraceUsdtOptions, where: string): UsdtProbe[] {
  const found = probes.filter((p) => p.provider === options.provider && p.name === options.name)
  if (found.length > 0) return found
  const wanted = `${options.provider}:${options.name}`
  if (probes.length === 0) {
    throw new TraceError(
      'NO_PROBES',
      `${where} has no USDT probes at all, so none named ${wanted}; trace a program built with USDT probes ` +
        '(sys/sdt.h, e.g. --enable-dtrace or --with-dtrace builds)',
    )
  }
  const names = [...new Set(probes.map((p) => `${p.provider}:${p.name}`))].sort()
  throw new TraceError(
    'UNKNOWN_PROBE',
    `${where} has no USDT probe ${wanted}; the probes it has are: ${names.join(', ')}`,
  )
}

/** The probes of the mapped objects that are `path` (the same file, by device and inode). */
function probesOfFile(probes: UsdtProbe[], path: string, pid: number): UsdtProbe[] {
  const wanted = fileIdentity(path)
  if (!wanted) throw new TraceError('INVALID_ARGUMENT', `${path}: no such file; name an ELF file process ${pid} has mapped`)
  const objects = [...new Set(probes.map((p) => p.object))]
  const same = objects.filter((object) => fileIdentity(object) === wanted)
  if (same.length === 0) {
    throw new TraceError(
      'INVALID_ARGUMENT',
      `process ${pid} has not mapped ${path} (or it has no USDT probes); the objects with probes it has mapped are: ` +
        (objects.join(', ') || 'none'),
    )
  }
  return probes.filter((p) => same.includes(p.object))
}

function fileIdentity(path: string): string | undefined {
  const st = statSync(path, { bigint: true, throwIfNoEntry: false })
  return st && `${st.dev}:${st.ino}`
}

function checkArgCount(options: TraceUsdtOptions, types: UsdtArgType[], sites: ProbeSite[]): void {
  for (const site of sites) {
    for (const probe of site.probes) {
      const has = usdtArguments(probe).length
      if (types.length > has) {
        throw new TraceError(
          'INVALID_ARGUMENT',
          `${options.provider}:${options.name} in ${probe.object} has ${has} argument${has === 1 ? '' : 's'} ` +
            `(${JSON.stringify(probe.args)}) but ${types.length} types were declared; declare at most ${has}`,
        )
      }
    }
  }
}

/** The attachment's cookie: the argument count, and a bit per string argument (usdtrace.h). */
function usdtCookie(types: UsdtArgType[]): bigint {
  let cookie = BigInt(types.length)
  types.forEach((type, i) => {
    if (type === 'str') cookie |= 1n << BigInt(USDT_COOKIE_STR_SHIFT + i)
  })
  return cookie
}

/** How messages name what a site traces: the process, or every process of the file. */
function subjectOf(site: ProbeSite): TraceSubject {
  return { pid: site.pid, interpreterObject: site.object }
}

const { fields } = USDT_EVENT

function usdtDecoder(provider: string, name: string, types: UsdtArgType[]): RecordDecoder<UsdtEvent> {
  return (view, bytes, offset) => {
    const count = view.getUint8(offset + fields.arg_count)
    const valuesAt = offset + USDT_EVENT.size
    let stringAt = valuesAt + count * 8
    const args = new Array<number | bigint | string>(count)
    for (let i = 0; i < count; i++) {
      // Each value is the argument sign-extended to 64 bits; its low bytes come first.
      const at = valuesAt + i * 8
      switch (types[i]) {
        case 'str': {
          const length = view.getUint32(at, true)
          args[i] = bytes.toString('utf8', stringAt, stringAt + length)
          stringAt += length
          break
        }
        case 'u8': args[i] = view.getUint8(at); break
        case 'i8': args[i] = view.getInt8(at); break
        case 'u16': args[i] = view.getUint16(at, true); break
        case 'i16': args[i] = view.getInt16(at, true); break
        case 'u32': args[i] = view.getUint32(at, true); break
        case 'i32': args[i] = view.getInt32(at, true); break
        case 'i64': args[i] = view.getBigInt64(at, true); break
        default: args[i] = view.getBigUint64(at, true)
      }
    }
    return {
      pid: view.getUint32(offset + fields.pid, true),
      tid: view.getUint32(offset + fields.tid, true),
      timestampNs: view.getBigUint64(offset + fields.timestamp_ns, true),
      provider,
      name,
      args,
      truncated: (view.getUint8(offset + fields.flags) & USDT_STR_TRUNCATED) !== 0,
    }
  }
}

/**
 * Reads a trace's probe hits as `UsdtBatch`es, one row per record, with a table of string ids
 * of its own. The argument types are checked by then (batches() calls this): the layout follows
 * from them, and every record carries a value for each declared argument.
 */
function usdtBatchReader(provider: string, name: string, types: readonly UsdtArgType[], maxIds: number): BatchReader<UsdtColumns, UsdtBatch> {
  const strings = new NameTable('string argument', "the batch's str argument columns", maxIds)
  const probe = { provider, name, argCount: types.length }
  const hasStrings = types.includes('str')
  return {
    layout: {
      minSize: VALUES + 8 * types.length,
      columns: usdtColumns(types),
      // Records with strings go to `complete` too, for their string ids.
      route: hasStrings ? 'row+side' : 'row',
      rowSideFor: types.flatMap((type, i) => (type === 'str' ? [`arg${i}`] : [])),
    },
    complete: hasStrings ? (columns, _length, side) => completeUsdt(types, strings, columns, side) : undefined,
    batch: (columns, length) => new UsdtBatch(columns, length, probe, strings),
    unnamed: () => strings.unnamed,
  }
}

/**
 * Sets each chosen str argument's column to the id of its string: the strings follow the values,
 * in argument order, each as long as its value says (a string not chosen is stepped over).
 */
function completeUsdt(types: readonly UsdtArgType[], strings: NameTable, columns: Partial<Columns<UsdtColumns>>, side: SideRecords): void {
  const { view, bytes } = side
  const stringColumns = types.map((_type, i) => columns[`arg${i}`] as Uint32Array | undefined)
  eachSideRecord(side, (offset, _length, row) => {
    let stringAt = offset + VALUES + types.length * 8
    for (let i = 0; i < types.length; i++) {
      if (types[i] !== 'str') continue
      const length = view.getUint32(offset + VALUES + 8 * i, true)
      const ids = stringColumns[i]
      if (ids) ids[row] = strings.idOf(bytes, stringAt, stringAt + length)
      stringAt += length
    }
  })
}
