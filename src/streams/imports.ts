import { attachPythonProbe, attachThreadExit, openAttached } from '../kernel/attach.js'
import { IMPORT_EVENT, IMPORT_FOUND, IMPORT_HAS_START, IMPORT_NAME_TRUNCATED } from '../kernel/abi.js'
import { STREAM_OPTIONS, TARGET_OPTIONS, checkOptions, withPid } from '../options.js'
import { resolveTargets, type TargetOptions } from '../process/targets.js'
import { Trace, ringBufferSettings, type OpenedSession, type StreamOptions } from './trace.js'
import { columnsOf, computed, eachSideRecord, type BatchReader, type Columns, type SideRecords } from './batch.js'
import { NameTable } from './name-table.js'
import { maxIdsOf, type IdTableOptions } from './id-table.js'

/** One module load, reported when it ends: a module's own imports end (and arrive) before it. */
export interface ImportEvent {
  /** The traced process. */
  pid: number
  /** The kernel thread id; the main thread's is the pid. */
  tid: number
  /** The absolute module name, e.g. `json.decoder`. */
  module: string
  /** False when the load failed (e.g. ModuleNotFoundError). */
  found: boolean
  /** Loads of this thread still under way around this one: 0 for an import made by running code. */
  depth: number
  /** CLOCK_MONOTONIC; undefined for a load that began before the trace attached (or found no room in the kernel: counted in `lost`). */
  startNs: bigint | undefined
  /** How long the load took; undefined when `startNs` is. */
  durationNs: bigint | undefined
  /** The module name was longer than 512 bytes and arrives cut to that. */
  truncated: boolean
}

/** The options of `traceImports`: which processes, those every stream takes, and the batches' module ids. */
export type TraceImportsOptions = StreamOptions & TargetOptions & IdTableOptions

const OPTIONS = [...TARGET_OPTIONS, ...STREAM_OPTIONS, 'maxIds']

const load = columnsOf(IMPORT_EVENT)
const timedLoad = load.test('flags', IMPORT_HAS_START)

/** The columns of an `ImportBatch`, from an import_event's fields; `completeImports` fills in the module ids. */
const IMPORT_COLUMNS = {
  pid: load.copy('u32', 'pid'),
  tid: load.copy('u32', 'tid'),
  moduleId: computed('u32'),
  found: load.flag(load.test('flags', IMPORT_FOUND)),
  depth: load.copy('u16', 'depth'),
  startNs: load.copy('i64', 'start_ns', { when: timedLoad }),
  durationNs: load.copy('f64', 'duration_ns', { when: timedLoad }),
  truncated: load.flag(load.test('flags', IMPORT_NAME_TRUNCATED)),
}

/**
 * Module loads in columns, from `trace.batches()`: row `i` of every column is one load, the
 * fields of an `ImportEvent`, for `i` below `length` (each column's own length). The next batch
 * of the trace overwrites the columns: copy what you keep. Module ids and `module(id)` hold for
 * the life of the trace. See docs/batches.md.
 */
export class ImportBatch {
  /** Rows in this batch. */
  readonly length: number
  /** The traced process. */
  readonly pid: Uint32Array
  /** The kernel thread id; the main thread's is the pid. */
  readonly tid: Uint32Array
  /** Which module: `module(id)` names it; one id per module name for the life of the trace, `UNNAMED_ID` past `maxIds`. */
  readonly moduleId: Uint32Array
  /** 1 when the module loaded; 0 when the load failed (e.g. ModuleNotFoundError). */
  readonly found: Uint8Array
  /** Loads of this thread still under way around this one: 0 for an import made by running code. */
  readonly depth: Uint16Array
  /** When the load began: CLOCK_MONOTONIC, exact; 0 where `ImportEvent.startNs` is undefined. */
  readonly startNs: BigInt64Array
  /** How long the load took, as a double (exact below 2^53 ns); NaN where `ImportEvent.durationNs` is undefined. */
  readonly durationNs: Float64Array
  /** 1 when the module name was longer than 512 bytes and its id is that of the name cut to 512. */
  readonly truncated: Uint8Array
  readonly #modules: NameTable

  /** @internal Batches come from `trace.batches()`. */
  constructor(columns: Columns<typeof IMPORT_COLUMNS>, length: number, modules: NameTable) {
    this.length = length
    this.pid = columns.pid
    this.tid = columns.tid
    this.moduleId = columns.moduleId
    this.found = columns.found
    this.depth = columns.depth
    this.startNs = columns.startNs
    this.durationNs = columns.durationNs
    this.truncated = columns.truncated
    this.#modules = modules
  }

  /** The absolute module name behind an id of this batch or an earlier one of the same trace, e.g. `json.decoder`. */
  module(id: number): string {
    return this.#modules.value(id)
  }

  /** One past the highest module id handed out so far: the ids are dense from 0 (`UNNAMED_ID` aside). */
  get moduleCount(): number {
    return this.#modules.size
  }
}

/** What `traceImports` returns: an async iterator of module loads, or of `ImportBatch`es through `batches()`. */
export type ImportTrace = Trace<ImportEvent, ImportBatch>

/**
 * Streams the module loads of running CPython processes (python:import__find__load__start/done):
 * imports of modules not yet in sys.modules, with their nesting and duration.
 */
export function traceImports(pid: number, options?: TraceImportsOptions): ImportTrace
export function traceImports(options: TraceImportsOptions): ImportTrace
export function traceImports(
  pidOrOptions: number | TraceImportsOptions,
  maybeOptions?: TraceImportsOptions,
): ImportTrace {
  const options = withPid(pidOrOptions, maybeOptions)
  return new Trace(() => openImportSession(options), decodeImport, options, () => importBatchReader(maxIdsOf('traceImports', options)))
}

async function openImportSession(options: TraceImportsOptions): Promise<OpenedSession<ImportEvent>> {
  checkOptions('traceImports', options, OPTIONS)
  maxIdsOf('traceImports', options)
  const ring = ringBufferSettings(options)
  const { targets, exitPids } = await resolveTargets(options, 'imports')
  const session = await openAttached({ object: 'imports', ...ring }, targets, (session) => {
    attachThreadExit(session, targets[0]!)
    for (const target of targets) {
      attachPythonProbe(session, target, 'on_import_start', 'import__find__load__start')
      attachPythonProbe(session, target, 'on_import_done', 'import__find__load__done')
    }
  })
  return { session, exitPids }
}

const { fields } = IMPORT_EVENT

function decodeImport(view: DataView, bytes: Buffer, offset: number): ImportEvent {
  const flags = view.getUint8(offset + fields.flags)
  const timed = (flags & IMPORT_HAS_START) !== 0
  const name = offset + IMPORT_EVENT.size
  return {
    pid: view.getUint32(offset + fields.pid, true),
    tid: view.getUint32(offset + fields.tid, true),
    module: bytes.toString('utf8', name, name + view.getUint16(offset + fields.name_len, true)),
    found: (flags & IMPORT_FOUND) !== 0,
    depth: view.getUint16(offset + fields.depth, true),
    startNs: timed ? view.getBigUint64(offset + fields.start_ns, true) : undefined,
    durationNs: timed ? view.getBigUint64(offset + fields.duration_ns, true) : undefined,
    truncated: (flags & IMPORT_NAME_TRUNCATED) !== 0,
  }
}

/** Reads a trace's module loads as `ImportBatch`es, one row per record, with a table of module ids of its own. */
function importBatchReader(maxIds: number): BatchReader<typeof IMPORT_COLUMNS, ImportBatch> {
  const modules = new NameTable('module', 'batch.moduleId', maxIds)
  return {
    // Every record is a row, and goes to `complete` for its module name.
    layout: { minSize: IMPORT_EVENT.size, columns: IMPORT_COLUMNS, route: 'row+side', rowSideFor: ['moduleId'] },
    complete: (columns, _length, side) => completeImports(modules, columns, side),
    batch: (columns, length) => new ImportBatch(columns, length, modules),
    unnamed: () => modules.unnamed,
  }
}

/** Sets each row's module id from the name its record carries after the header. */
function completeImports(modules: NameTable, columns: Partial<Columns<typeof IMPORT_COLUMNS>>, side: SideRecords): void {
  const { view, bytes } = side
  const moduleId = columns.moduleId
  eachSideRecord(side, (offset, _length, row) => {
    const name = offset + IMPORT_EVENT.size
    // Records come here only when moduleId is chosen (`rowSideFor`).
    moduleId![row] = modules.idOf(bytes, name, name + view.getUint16(offset + fields.name_len, true))
  })
}
