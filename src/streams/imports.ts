import { attachPythonProbe, attachThreadExit, openAttached } from '../kernel/attach.js'
import { IMPORT_EVENT, IMPORT_FOUND, IMPORT_HAS_START, IMPORT_NAME_TRUNCATED } from '../kernel/abi.js'
import { STREAM_OPTIONS, TARGET_OPTIONS, checkOptions, withPid } from '../options.js'
import { resolveTargets, type TargetOptions } from '../process/targets.js'
import { Trace, ringBufferSettings, type OpenedSession, type StreamOptions } from './trace.js'

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

/** The options of `traceImports`: which processes, and those every stream takes. */
export type TraceImportsOptions = StreamOptions & TargetOptions

const OPTIONS = [...TARGET_OPTIONS, ...STREAM_OPTIONS]

/**
 * Streams the module loads of running CPython processes (python:import__find__load__start/done):
 * imports of modules not yet in sys.modules, with their nesting and duration.
 */
export function traceImports(pid: number, options?: TraceImportsOptions): Trace<ImportEvent>
export function traceImports(options: TraceImportsOptions): Trace<ImportEvent>
export function traceImports(
  pidOrOptions: number | TraceImportsOptions,
  maybeOptions?: TraceImportsOptions,
): Trace<ImportEvent> {
  const options = withPid(pidOrOptions, maybeOptions)
  return new Trace(() => openImportSession(options), decodeImport, options)
}

async function openImportSession(options: TraceImportsOptions): Promise<OpenedSession<ImportEvent>> {
  checkOptions('traceImports', options, OPTIONS)
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
