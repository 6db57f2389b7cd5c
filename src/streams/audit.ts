import { attachPythonProbe, openAttached } from '../kernel/attach.js'
import { CPYTHON_AUDIT_EVENTS } from './audit-events.js'
import { TraceError } from '../errors.js'
import { objectLayout, type ObjectLayout } from '../cpython/layout.js'
import type { Inspection } from '../process/inspect.js'
import {
  AUDIT_ARGS_DECODED,
  AUDIT_ARGS_TRUNCATED,
  AUDIT_EVENT,
  AUDIT_NAME_MAX,
  AUDIT_NAME_TRUNCATED,
  AUDIT_VALUE,
  AUDIT_VALUE_BOOL,
  AUDIT_VALUE_BYTES,
  AUDIT_VALUE_CUT,
  AUDIT_VALUE_INT,
  AUDIT_VALUE_LIST,
  AUDIT_VALUE_STR,
  AUDIT_VALUE_TUPLE,
} from '../kernel/abi.js'
import { STREAM_OPTIONS, TARGET_OPTIONS, checkOptions, withPid } from '../options.js'
import { resolveTargets, type TargetOptions } from '../process/targets.js'
import { Trace, ringBufferSettings, type OpenedSession, type StreamOptions } from './trace.js'
import { eventStacks, noBatchesWithStacks, stackSessionSettings, withEventStacks, type PythonStacks, type StackOption } from './python-stacks.js'
import type { StackFrame } from './stacks.js'
import { columnsOf, computed, eachSideRecord, type BatchReader, type Columns, type SideRecords } from './batch.js'
import { NameTable } from './name-table.js'
import { maxIdsOf, type IdTableOptions } from './id-table.js'

/**
 * One argument of an audit event, as far as the kernel side could read it from the target's
 * memory: ASCII str, bytes, int (up to 60 bits), bool, None, and one level of tuple or list;
 * anything else (a str with non-ASCII text too) is named by its type.
 */
export type AuditValue =
  | { kind: 'str'; value: string; cut: boolean }
  | { kind: 'bytes'; value: Buffer; cut: boolean }
  | { kind: 'int'; value: number | bigint }
  | { kind: 'bool'; value: boolean }
  | { kind: 'none' }
  | { kind: 'tuple' | 'list'; items: AuditValue[]; cut: boolean }
  | { kind: 'object'; type: string }

/** One PEP 578 audit event (sys.audit, or CPython's own PySys_Audit). */
export interface AuditEvent {
  /** The traced process. */
  pid: number
  /** The kernel thread id; the main thread's is the pid. */
  tid: number
  /** CLOCK_MONOTONIC, comparable with process.hrtime.bigint() */
  timestampNs: bigint
  /** The event name, e.g. `open`, `socket.connect`, `subprocess.Popen`. */
  name: string
  /** The argument tuple's items; undefined where this CPython version's object layout is unknown. */
  args: AuditValue[] | undefined
  /** The arguments as Python would print them, e.g. `'/etc/hosts', 'r', 524288`; undefined with `args`. */
  summary: string | undefined
  /** The name, a text, or the list of arguments was cut (see the limits of `traceAudit` in docs/api.md). */
  truncated: boolean
  /** With `stack: true`: the Python stack of the thread at the event, innermost first (none when it ran no Python). */
  stack?: StackFrame[]
}

export interface TraceAuditOptions extends StreamOptions, TargetOptions, StackOption, IdTableOptions {
  /** Only these events (checked against CPython 3.11's audit events table); default: all. */
  events?: string[]
  /** Only these events too, unchecked: names of newer CPythons, libraries, or the application's own. */
  customEvents?: string[]
}

const OPTIONS = [...TARGET_OPTIONS, ...STREAM_OPTIONS, 'events', 'customEvents', 'stack', 'maxIds']

const audit = columnsOf(AUDIT_EVENT)

/** The columns of an `AuditBatch`, from an audit_event's fields; `completeAudit` fills in the name ids. */
const AUDIT_COLUMNS = {
  pid: audit.copy('u32', 'pid'),
  tid: audit.copy('u32', 'tid'),
  timestampNs: audit.copy('i64', 'timestamp_ns'),
  nameId: computed('u32'),
  nameTruncated: audit.flag(audit.test('flags', AUDIT_NAME_TRUNCATED)),
}

/**
 * Audit events in columns, from `trace.batches()`: row `i` of every column is one event, for
 * `i` below `length` (each column's own length). The next batch of the trace overwrites the
 * columns: copy what you keep. The arguments of `AuditEvent` are not in batches: read events for
 * those. Name ids and `name(id)` hold for the life of the trace. See docs/batches.md.
 */
export class AuditBatch {
  /** Rows in this batch. */
  readonly length: number
  /** The traced process. */
  readonly pid: Uint32Array
  /** The kernel thread id; the main thread's is the pid. */
  readonly tid: Uint32Array
  /** CLOCK_MONOTONIC, exact, as `AuditEvent.timestampNs`. */
  readonly timestampNs: BigInt64Array
  /** Which event: `name(id)` names it (`open`, `socket.connect`); one id per name for the life of the trace, `UNNAMED_ID` past `maxIds`. */
  readonly nameId: Uint32Array
  /** 1 when the event's name was longer than 62 bytes and its id is that of the name cut to 62. */
  readonly nameTruncated: Uint8Array
  readonly #names: NameTable

  /** @internal Batches come from `trace.batches()`. */
  constructor(columns: Columns<typeof AUDIT_COLUMNS>, length: number, names: NameTable) {
    this.length = length
    this.pid = columns.pid
    this.tid = columns.tid
    this.timestampNs = columns.timestampNs
    this.nameId = columns.nameId
    this.nameTruncated = columns.nameTruncated
    this.#names = names
  }

  /** The event name behind an id of this batch or an earlier one of the same trace, e.g. `open`. */
  name(id: number): string {
    return this.#names.value(id)
  }

  /** One past the highest name id handed out so far: the ids are dense from 0 (`UNNAMED_ID` aside). */
  get nameCount(): number {
    return this.#names.size
  }
}

/** What `traceAudit` returns: an async iterator of audit events, or of `AuditBatch`es through `batches()`. */
export type AuditTrace = Trace<AuditEvent, AuditBatch>

/** The layout every target shares, if there is one: a session has one set of constants. */
function sharedLayout(targets: Inspection[]): ObjectLayout | undefined {
  const layouts = new Set(targets.map((target) => objectLayout(target.version)))
  return layouts.size === 1 ? [...layouts][0] : undefined
}

/**
 * Streams the PEP 578 audit events of running CPython processes (python:audit, 3.8+): which
 * files a process opens, whom it connects to, what it runs. The name filter runs in the kernel.
 */
export function traceAudit(pid: number, options?: TraceAuditOptions): AuditTrace
export function traceAudit(options: TraceAuditOptions): AuditTrace
export function traceAudit(pidOrOptions: number | TraceAuditOptions, maybeOptions?: TraceAuditOptions): AuditTrace {
  const options = withPid(pidOrOptions, maybeOptions)
  let stacks: PythonStacks | undefined
  return new Trace(
    async () => {
      checkOptions('traceAudit', options, OPTIONS)
      maxIdsOf('traceAudit', options)
      stacks = await eventStacks('traceAudit', options)
      return openAuditSession(options, stacks)
    },
    withEventStacks(decodeAudit, () => stacks, (event) => event.timestampNs),
    options,
    () => {
      if (options.stack) {
        throw noBatchesWithStacks('traceAudit')
      }
      return auditBatchReader(maxIdsOf('traceAudit', options))
    },
  )
}

async function openAuditSession(options: TraceAuditOptions, stacks: PythonStacks | undefined): Promise<OpenedSession<AuditEvent>> {
  const wanted = wantedNames(options)
  const ring = ringBufferSettings(options)
  const { targets, exitPids } = await resolveTargets(options, 'audit')
  const layout = sharedLayout(targets)
  const python = stackSessionSettings(stacks)
  const session = await openAttached(
    {
      object: 'audit',
      maxEntries: { ...ring.maxEntries, ...python.maxEntries, wanted: Math.max(wanted.length, 1) },
      constants: { ...ring.constants, ...python.constants, ...layout, decode_args: layout ? 1 : 0, filter_events: wanted.length > 0 ? 1 : 0 },
    },
    targets,
    (session) => {
      stacks?.install(session)
      for (const target of targets) attachPythonProbe(session, target, 'on_audit', 'audit')
    },
  )
  const present = new Uint8Array([1])
  for (const name of wanted) session.updateMap('wanted', nameKey(name), present)
  return { session, exitPids }
}

/** The names to let through, checked; none means every event. */
function wantedNames(options: TraceAuditOptions): string[] {
  const { events = [], customEvents = [] } = options
  for (const [option, names] of [
    ['events', events],
    ['customEvents', customEvents],
  ] as const) {
    if (!Array.isArray(names) || names.some((name) => typeof name !== 'string' || name === '')) {
      throw new TraceError('INVALID_ARGUMENT', `traceAudit: ${option} must be an array of event names`)
    }
  }
  for (const name of [...events, ...customEvents]) {
    if (Buffer.byteLength(name) > AUDIT_NAME_MAX) {
      throw new TraceError(
        'INVALID_ARGUMENT',
        `traceAudit: the event name ${JSON.stringify(name)} is longer than ${AUDIT_NAME_MAX} bytes, ` +
          'the longest the kernel-side filter compares; filter on a shorter name or trace all events',
      )
    }
  }
  const unknown = events.filter((name) => !CPYTHON_AUDIT_EVENTS.has(name))
  if (unknown.length > 0) {
    throw new TraceError(
      'INVALID_ARGUMENT',
      `traceAudit: ${unknown.map((name) => JSON.stringify(name)).join(', ')} ` +
        `${unknown.length === 1 ? 'is not a CPython audit event' : 'are not CPython audit events'}` +
        `${similarNames(unknown[0]!)}; CPython 3.11's events are ${[...CPYTHON_AUDIT_EVENTS].join(', ')}. ` +
        'For events of a newer CPython, a library or your own sys.audit() calls, use customEvents.',
    )
  }
  return [...new Set([...events, ...customEvents])]
}

/** " (did you mean ...?)" for known names sharing the unknown name's module or its last part. */
function similarNames(name: string): string {
  const [head] = name.split('.')
  const tail = name.split('.').at(-1)!
  const similar = [...CPYTHON_AUDIT_EVENTS].filter(
    (known) => known.split('.')[0] === head || known.split('.').at(-1) === tail,
  )
  return similar.length > 0 ? ` (did you mean ${similar.slice(0, 5).join(', ')}?)` : ''
}

/** A name as the kernel's `wanted` map keys it: zero-padded to AUDIT_NAME_MAX + 2 bytes. */
function nameKey(name: string): Uint8Array {
  const key = new Uint8Array(AUDIT_NAME_MAX + 2)
  key.set(Buffer.from(name))
  return key
}

const { fields } = AUDIT_EVENT

function decodeAudit(view: DataView, bytes: Buffer, offset: number): AuditEvent {
  const flags = view.getUint8(offset + fields.flags)
  const nameStart = offset + AUDIT_EVENT.size
  const nameEnd = nameStart + view.getUint16(offset + fields.name_len, true)
  let args: AuditValue[] | undefined
  let topCut = false
  if (flags & AUDIT_ARGS_DECODED) {
    const tuple = new ValueReader(view, bytes, nameEnd).read()
    if (tuple.kind === 'tuple') {
      args = tuple.items
      topCut = tuple.cut
    }
  }
  const truncated = topCut || (flags & (AUDIT_NAME_TRUNCATED | AUDIT_ARGS_TRUNCATED)) !== 0 || args?.some(isCut) === true
  return {
    pid: view.getUint32(offset + fields.pid, true),
    tid: view.getUint32(offset + fields.tid, true),
    timestampNs: view.getBigUint64(offset + fields.timestamp_ns, true),
    name: bytes.toString('utf8', nameStart, nameEnd),
    args,
    summary: args && [...args.map(formatValue), ...(topCut ? ['…'] : [])].join(', '),
    truncated,
  }
}

/** Reads a trace's audit events as `AuditBatch`es, one row per record, with a table of name ids of its own. */
function auditBatchReader(maxIds: number): BatchReader<typeof AUDIT_COLUMNS, AuditBatch> {
  const names = new NameTable('audit event name', 'batch.nameId', maxIds)
  return {
    // Every record is a row, and goes to `complete` for its event name.
    layout: { minSize: AUDIT_EVENT.size, columns: AUDIT_COLUMNS, route: 'row+side', rowSideFor: ['nameId'] },
    complete: (columns, _length, side) => completeAudit(names, columns, side),
    batch: (columns, length) => new AuditBatch(columns, length, names),
    unnamed: () => names.unnamed,
  }
}

/** Sets each row's name id from the event name its record carries after the header (the arguments follow the name). */
function completeAudit(names: NameTable, columns: Partial<Columns<typeof AUDIT_COLUMNS>>, side: SideRecords): void {
  const { view, bytes } = side
  const nameId = columns.nameId
  eachSideRecord(side, (offset, _length, row) => {
    const name = offset + AUDIT_EVENT.size
    // Records come here only when nameId is chosen (`rowSideFor`).
    nameId![row] = names.idOf(bytes, name, name + view.getUint16(offset + fields.name_len, true))
  })
}

/** Walks the encoded values of bpf/audit.bpf.c (struct audit_value, then its payload). */
class ValueReader {
  constructor(
    private readonly view: DataView,
    private readonly bytes: Buffer,
    private offset: number,
  ) {}

  read(): AuditValue {
    const kind = this.view.getUint8(this.offset + AUDIT_VALUE.fields.kind)
    const cut = (this.view.getUint8(this.offset + AUDIT_VALUE.fields.flags) & AUDIT_VALUE_CUT) !== 0
    const len = this.view.getUint16(this.offset + AUDIT_VALUE.fields.len, true)
    const at = this.offset + AUDIT_VALUE.size
    this.offset = at
    switch (kind) {
      case AUDIT_VALUE_TUPLE:
      case AUDIT_VALUE_LIST: {
        const items = Array.from({ length: len }, () => this.read())
        return { kind: kind === AUDIT_VALUE_TUPLE ? 'tuple' : 'list', items, cut }
      }
      case AUDIT_VALUE_INT:
      case AUDIT_VALUE_BOOL: {
        this.offset += len
        const value = this.view.getBigInt64(at, true)
        if (kind === AUDIT_VALUE_BOOL) return { kind: 'bool', value: value !== 0n }
        return { kind: 'int', value: Number.isSafeInteger(Number(value)) ? Number(value) : value }
      }
      default: {
        this.offset += len
        if (kind === AUDIT_VALUE_STR) return { kind: 'str', value: this.bytes.toString('latin1', at, at + len), cut }
        if (kind === AUDIT_VALUE_BYTES) return { kind: 'bytes', value: Buffer.from(this.bytes.subarray(at, at + len)), cut }
        const type = this.bytes.toString('utf8', at, at + len)
        return type === 'NoneType' ? { kind: 'none' } : { kind: 'object', type }
      }
    }
  }
}

function isCut(value: AuditValue): boolean {
  if (value.kind === 'tuple' || value.kind === 'list') return value.cut || value.items.some(isCut)
  return (value.kind === 'str' || value.kind === 'bytes') && value.cut
}

/** Roughly Python's repr(), with … where the kernel side cut a value. */
export function formatValue(value: AuditValue): string {
  switch (value.kind) {
    case 'str':
      return `'${value.value.replace(/[\\']/g, '\\$&').replace(/[\x00-\x1f\x7f]/g, escapeByte)}'${value.cut ? '…' : ''}`
    case 'bytes':
      return `b'${value.value.toString('latin1').replace(/[\\']/g, '\\$&').replace(/[^\x20-\x7e]/g, escapeByte)}'${value.cut ? '…' : ''}`
    case 'int':
      return String(value.value)
    case 'bool':
      return value.value ? 'True' : 'False'
    case 'none':
      return 'None'
    case 'tuple':
    case 'list': {
      const items = value.items.map(formatValue)
      if (value.cut) items.push('…')
      if (value.kind === 'list') return `[${items.join(', ')}]`
      return items.length === 1 ? `(${items[0]},)` : `(${items.join(', ')})`
    }
    case 'object':
      return `<${value.type}>`
  }
}

function escapeByte(char: string): string {
  return `\\x${char.charCodeAt(0).toString(16).padStart(2, '0')}`
}
