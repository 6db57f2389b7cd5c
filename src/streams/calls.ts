import { attachCodeDeallocHooks, attachPythonProbe, attachThreadExit, fixedPythonSpecs, openAttached, raiseLineSemaphore } from '../kernel/attach.js'
import {
  CALL_ENTRY,
  CALL_EVENT,
  CALL_FILE_TRUNCATED,
  CALL_FORGET,
  CALL_FUNC_TRUNCATED,
  CALL_HAS_DURATION,
  CALL_NAMES,
  CALL_RETURN,
  USDTRACE_PREFIX_MAX,
} from '../kernel/abi.js'
import { TraceError } from '../errors.js'
import type { Inspection } from '../process/inspect.js'
import { codeDeallocHooks } from '../cpython/layout.js'
import { resolveTargets, type TargetOptions } from '../process/targets.js'
import { STREAM_OPTIONS, TARGET_OPTIONS, checkOptions, withPid } from '../options.js'
import { Trace, ringBufferSettings, type OpenedSession, type StreamOptions } from './trace.js'
import { columnsOf, eachSideRecord, type BatchReader, type Columns, type SideRecords } from './batch.js'
import { FunctionTable, unknownNames, type FunctionName } from './function-table.js'

/** A Python function entry or return. */
export interface CallEvent {
  /** A function starting (`entry`) or returning (`return`). */
  kind: 'entry' | 'return'
  /** The traced process. */
  pid: number
  /** The kernel thread id; the main thread's is the pid. */
  tid: number
  /** CLOCK_MONOTONIC, comparable with process.hrtime.bigint() */
  timestampNs: bigint
  /** The function's source file, as the code object names it. */
  file: string
  /** The function's name. */
  func: string
  /** The line the probe reports; an entry's is the function's first line. */
  line: number
  /** Per-thread nesting depth of traced frames, 0 = outermost (always 0 with `entries: false`). */
  depth: number
  /** On a return whose entry was traced. */
  durationNs: bigint | undefined
  /** The file or function name was longer than 512 bytes and arrives cut to that. */
  truncated: boolean
  /** The CPU the probe fired on. */
  cpu: number
}

export interface TraceCallsOptions extends StreamOptions, TargetOptions {
  /**
   * Trace entries too (default). On CPython 3.11 entries only fire while the line probe's
   * semaphore is raised, which makes call-heavy code several times slower while tracing;
   * `entries: false` traces returns only, without it, and without durations or depth.
   */
  entries?: boolean
  /**
   * Only calls of functions whose name starts with this (e.g. `handle_`), filtered in the
   * kernel: other calls cost no ring-buffer space and no JavaScript. Depth still counts them.
   */
  functionPrefix?: string
  /** Only calls of functions whose file's full path starts with this, filtered in the kernel. */
  filePrefix?: string
}

/** The values of `CallBatch.kind`: what `CallEvent.kind` says in words. */
export const CallKind = {
  /** A function starting: `CallEvent.kind` 'entry'. */
  entry: CALL_ENTRY,
  /** A function returning: `CallEvent.kind` 'return'. */
  return: CALL_RETURN,
} as const

const call = columnsOf(CALL_EVENT)

/**
 * The columns of a `CallBatch`, from a call_event's fields. `functionId` arrives as the kernel's
 * name id; `completeCalls` turns it into the trace's function id.
 */
const CALL_COLUMNS = {
  kind: call.copy('u8', 'kind'),
  pid: call.copy('u32', 'pid'),
  tid: call.copy('u32', 'tid'),
  timestampNs: call.copy('i64', 'timestamp_ns'),
  durationNs: call.copy('f64', 'duration_ns', { when: call.test('flags', CALL_HAS_DURATION) }),
  line: call.copy('i32', 'line'),
  depth: call.copy('u16', 'depth'),
  functionId: call.copy('u32', 'name_id'),
  cpu: call.copy('u32', 'cpu'),
}

/**
 * Call events in columns, from `trace.batches()`: row `i` of every column is one event, the
 * fields of a `CallEvent`, for `i` below `length` (each column's own length). The next batch
 * of the trace overwrites the columns: copy what you keep (`batch.durationNs.slice()`).
 * Function ids and `function(id)` hold for the life of the trace. See docs/batches.md.
 */
export class CallBatch {
  /** Rows in this batch. */
  readonly length: number
  /** `CallKind.entry` (0) or `CallKind.return` (1). */
  readonly kind: Uint8Array
  /** The traced process. */
  readonly pid: Uint32Array
  /** The kernel thread id; the main thread's is the pid. */
  readonly tid: Uint32Array
  /** CLOCK_MONOTONIC, exact, as `CallEvent.timestampNs` (reading an element makes a bigint). */
  readonly timestampNs: BigInt64Array
  /**
   * On a return whose entry was traced, its duration: a double, exact below 2^53 ns (104 days),
   * so sums need no bigints. NaN where `CallEvent.durationNs` is undefined (entries, returns
   * of frames older than the trace, `entries: false`).
   */
  readonly durationNs: Float64Array
  /** The line the probe reports; an entry's is the function's first line. */
  readonly line: Int32Array
  /** Per-thread nesting depth of traced frames, 0 = outermost (always 0 with `entries: false`). */
  readonly depth: Uint16Array
  /** Which function: `function(id)` names it; ids are dense from 0, see `functionCount`. */
  readonly functionId: Uint32Array
  /** The CPU the probe fired on. */
  readonly cpu: Uint32Array
  readonly #functions: FunctionTable

  /** @internal Batches come from `trace.batches()`. */
  constructor(columns: Columns<typeof CALL_COLUMNS>, length: number, functions: FunctionTable) {
    this.length = length
    this.kind = columns.kind
    this.pid = columns.pid
    this.tid = columns.tid
    this.timestampNs = columns.timestampNs
    this.durationNs = columns.durationNs
    this.line = columns.line
    this.depth = columns.depth
    this.functionId = columns.functionId
    this.cpu = columns.cpu
    this.#functions = functions
  }

  /**
   * The names behind a function id of this batch or an earlier one of the same trace. An id
   * stands for one (file, function name) for the life of the trace, also after CPython freed
   * the code object and reused its memory for another function's.
   */
  function(id: number): FunctionName {
    return this.#functions.value(id)
  }

  /** Function ids handed out so far in this trace: every id is below this (size arrays by it). */
  get functionCount(): number {
    return this.#functions.size
  }
}

/** What `traceCalls` returns: an async iterator of call events, or of `CallBatch`es through `batches()`. */
export type CallTrace = Trace<CallEvent, CallBatch>

/**
 * Streams the function entries and returns of running CPython processes through their USDT
 * probes. The returned trace attaches at once (`await trace.ready` to know when) and ends when
 * every traced process has exited.
 */
export function traceCalls(pid: number, options?: TraceCallsOptions): CallTrace
export function traceCalls(options: TraceCallsOptions): CallTrace
export function traceCalls(pidOrOptions: number | TraceCallsOptions, maybeOptions?: TraceCallsOptions): CallTrace {
  const options = withPid(pidOrOptions, maybeOptions)
  return new Trace(() => openCallSession(options), callDecoder(), options, () => callBatchReader())
}

const OPTIONS = [...TARGET_OPTIONS, ...STREAM_OPTIONS, 'entries', 'functionPrefix', 'filePrefix']

/** A prefix filter as the BPF side's constants: its bytes and their count. */
function prefixConstants(option: 'functionPrefix' | 'filePrefix', prefix: string | undefined): [Uint8Array, number] {
  if (prefix === undefined) return [new Uint8Array(0), 0]
  const bytes = Buffer.from(String(prefix))
  if (typeof prefix !== 'string' || bytes.length > USDTRACE_PREFIX_MAX) {
    throw new TraceError('INVALID_ARGUMENT', `${option} must be a string of at most ${USDTRACE_PREFIX_MAX} bytes, got ${String(prefix).slice(0, 40)}`)
  }
  return [bytes, bytes.length]
}

/**
 * What the `calls` BPF object is loaded with for these options and targets: its ring and its
 * constants. Also what bench/ loads its C reference of the same object with.
 */
export function callSessionOptions(options: TraceCallsOptions, targets: Inspection[]) {
  const [funcPrefix, funcPrefixLen] = prefixConstants('functionPrefix', options.functionPrefix)
  const [filePrefix, filePrefixLen] = prefixConstants('filePrefix', options.filePrefix)
  const ring = ringBufferSettings(options)
  return {
    object: 'calls' as const,
    maxEntries: ring.maxEntries,
    constants: {
      ...ring.constants,
      track_threads: options.entries !== false ? 1 : 0,
      func_prefix: funcPrefix,
      func_prefix_len: funcPrefixLen,
      file_prefix: filePrefix,
      file_prefix_len: filePrefixLen,
      ...fixedPythonSpecs(targets, { on_call_return: 'function__return', on_call_entry: 'function__entry' }),
      ...codeDeallocHooks(targets)?.constants,
    },
  }
}

async function openCallSession(options: TraceCallsOptions): Promise<OpenedSession<CallEvent>> {
  checkOptions('traceCalls', options, OPTIONS)
  const { targets, exitPids } = await resolveTargets(options, 'calls')
  const entries = options.entries !== false
  const hooks = codeDeallocHooks(targets)
  const session = await openAttached(callSessionOptions(options, targets), targets, (session) => {
    if (hooks) attachCodeDeallocHooks(session, hooks, 'forget_code')
    if (entries) attachThreadExit(session, targets[0]!)
    for (const target of targets) {
      attachPythonProbe(session, target, 'on_call_return', 'function__return')
      if (!entries) continue
      attachPythonProbe(session, target, 'on_call_entry', 'function__entry')
      if (target.capabilities.calls.mode === 'line-semaphore') raiseLineSemaphore(session, target, 'hold_semaphore')
    }
  })
  return { session, exitPids }
}

const { fields } = CALL_EVENT
// The offsets the name step reads, as constants.
const KIND = fields.kind
const NAME_ID = fields.name_id
const FLAGS = fields.flags

/**
 * Decodes a trace's records; the names of most calls come from an earlier CALL_NAMES record
 * (bpf/python_names.bpf.h), so each trace keeps its own table of them, forgetting each name
 * as CPython frees its code object.
 */
function callDecoder(): (view: DataView, bytes: Buffer, offset: number) => CallEvent | undefined {
  const known = new Map<number, FunctionName>()
  return (view, bytes, offset) => {
    const kind = view.getUint8(offset + fields.kind)
    const nameId = view.getUint32(offset + fields.name_id, true)
    if (kind === CALL_FORGET) {
      known.delete(nameId)
      return undefined
    }
    const flags = view.getUint8(offset + fields.flags)
    const names = nameId === 0 || kind === CALL_NAMES ? readNames(view, bytes, offset, flags) : known.get(nameId)
    if (kind === CALL_NAMES) {
      known.set(nameId, names!)
      return undefined
    }
    if (!names) throw new Error(`usdtrace: a call refers to names ${nameId} that never arrived`)
    return {
      kind: kind === CALL_ENTRY ? 'entry' : 'return',
      pid: view.getUint32(offset + fields.pid, true),
      tid: view.getUint32(offset + fields.tid, true),
      timestampNs: view.getBigUint64(offset + fields.timestamp_ns, true),
      file: names.file,
      func: names.func,
      line: view.getInt32(offset + fields.line, true),
      depth: view.getUint16(offset + fields.depth, true),
      durationNs: flags & CALL_HAS_DURATION ? view.getBigUint64(offset + fields.duration_ns, true) : undefined,
      truncated: names.truncated,
      cpu: view.getUint32(offset + fields.cpu, true),
    }
  }
}

/** @internal Reads a trace's calls as `CallBatch`es, with a table of function ids of its own. */
export function callBatchReader(): BatchReader<typeof CALL_COLUMNS, CallBatch> {
  const functions = new FunctionTable()
  return {
    layout: {
      minSize: CALL_EVENT.size,
      columns: CALL_COLUMNS,
      // Names and their end only inform the table; a call that carries its own names (name id 0) is read there too.
      kind: { offset: fields.kind, routes: { [CALL_NAMES]: 'side', [CALL_FORGET]: 'side' } },
      sideWhenZero: { offset: fields.name_id, size: CALL_EVENT.sizes.name_id },
      rowSideFor: ['functionId'],
    },
    complete: (columns, length, side) => completeCalls(functions, columns, length, side),
    batch: (columns, length) => new CallBatch(columns, length, functions),
  }
}

/**
 * Turns the kernel's name ids into function ids. A kernel name id is never reused, so every
 * name a delivery brings can be learned before its rows are mapped, and forgotten after. The
 * names are learned and forgotten whether or not `functionId` is chosen: they are one record
 * per code object, and the table stays the one the events' decoder would keep.
 */
function completeCalls(functions: FunctionTable, columns: Partial<Columns<typeof CALL_COLUMNS>>, length: number, side: SideRecords): void {
  const { view, bytes } = side
  const forgotten: number[] = []
  const carryNames: number[] = []
  eachSideRecord(side, (offset, _length, row) => {
    const kind = view.getUint8(offset + KIND)
    const nameId = view.getUint32(offset + NAME_ID, true)
    if (kind === CALL_FORGET) forgotten.push(nameId)
    else if (kind === CALL_NAMES) {
      const names = readNames(view, bytes, offset, view.getUint8(offset + FLAGS))
      functions.learn(nameId, names.file, names.func, names.truncated)
    } else carryNames.push(offset, row)
  })
  const functionId = columns.functionId
  if (functionId) {
    const byNameId = functions.byNameId
    for (let row = 0; row < length; row++) {
      const nameId = functionId[row]!
      const id = byNameId[nameId]! - 1
      if (!(id >= 0) && nameId !== 0) throw unknownNames(nameId)
      functionId[row] = id
    }
    // Rows come to the side, carrying their names, only for their function id (`rowSideFor`).
    for (let i = 0; i < carryNames.length; i += 2) {
      const offset = carryNames[i]!
      const names = readNames(view, bytes, offset, view.getUint8(offset + FLAGS))
      functionId[carryNames[i + 1]!] = functions.idOf(names.file, names.func, names.truncated)
    }
  }
  for (const nameId of forgotten) functions.forget(nameId)
}

function readNames(view: DataView, bytes: Buffer, offset: number, flags: number): FunctionName {
  const fileLen = view.getUint16(offset + fields.file_len, true)
  const funcLen = view.getUint16(offset + fields.func_len, true)
  const names = offset + CALL_EVENT.size
  return {
    file: bytes.toString('utf8', names, names + fileLen),
    func: bytes.toString('utf8', names + fileLen, names + fileLen + funcLen),
    truncated: (flags & (CALL_FILE_TRUNCATED | CALL_FUNC_TRUNCATED)) !== 0,
  }
}
