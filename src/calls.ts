import { binding, isNativeError, type NativeSession } from './binding.js'
import { TraceError, noSuchProcess, permissionDenied } from './errors.js'
import { findLineSemaphore, inspect, requireProbes, type Inspection } from './inspect.js'
import {
  CALL_ENTRY,
  CALL_EVENT,
  CALL_FILE_TRUNCATED,
  CALL_FUNC_TRUNCATED,
  CALL_HAS_DURATION,
} from './layout.js'
import { Trace, type OpenedSession, type StreamOptions } from './trace.js'

/** A Python function entry or return. */
export interface CallEvent {
  kind: 'entry' | 'return'
  pid: number
  tid: number
  /** CLOCK_MONOTONIC, comparable with process.hrtime.bigint() */
  timestampNs: bigint
  file: string
  func: string
  line: number
  /** Per-thread nesting depth of traced frames, 0 = outermost (always 0 with `entries: false`). */
  depth: number
  /** On a return whose entry was traced. */
  durationNs: bigint | undefined
  /** The file or function name was longer than 512 bytes and arrives cut to that. */
  truncated: boolean
}

export interface TraceCallsOptions extends StreamOptions {
  pid?: number
  /**
   * Trace entries too (default). On CPython 3.11 entries only fire while the line probe's
   * semaphore is raised, which makes call-heavy code several times slower while tracing;
   * `entries: false` traces returns only, at native speed, without durations or depth.
   */
  entries?: boolean
  /** Size of the kernel ring buffer: a power of two, at least one page (default 8 MiB). */
  ringBufferBytes?: number
}

const DEFAULT_RING_BUFFER_BYTES = 8 << 20
const PAGE_SIZE = 4096

export type CallTrace = Trace<CallEvent>

/**
 * Streams the function entries and returns of a running CPython process through its USDT
 * probes. The returned trace attaches at once (`await trace.ready` to know when) and ends when
 * the process exits.
 */
export function traceCalls(pid: number, options?: TraceCallsOptions): CallTrace
export function traceCalls(options: TraceCallsOptions & { pid: number }): CallTrace
export function traceCalls(pidOrOptions: number | TraceCallsOptions, maybeOptions: TraceCallsOptions = {}): CallTrace {
  const options = typeof pidOrOptions === 'number' ? { ...maybeOptions, pid: pidOrOptions } : pidOrOptions
  return new Trace(() => openCallSession(options), decodeCall, options)
}

async function openCallSession(options: TraceCallsOptions): Promise<OpenedSession> {
  const pid = options.pid
  if (!Number.isInteger(pid) || pid! <= 0) {
    throw new TraceError('INVALID_ARGUMENT', `traceCalls needs a pid (a positive integer), got ${String(pid)}`)
  }
  const ringBufferBytes = options.ringBufferBytes ?? DEFAULT_RING_BUFFER_BYTES
  if (!isPowerOfTwo(ringBufferBytes) || ringBufferBytes < PAGE_SIZE) {
    throw new TraceError(
      'INVALID_ARGUMENT',
      `ringBufferBytes must be a power of two of at least ${PAGE_SIZE}, got ${ringBufferBytes}`,
    )
  }
  const target = await inspect(pid!)
  requireProbes(target, 'calls')
  const session = openSession(pid!, () => new binding.Session({
    object: 'calls',
    ringBufferBytes,
    // Wake the reader early enough that a burst cannot fill the ring before the timer drains it.
    constants: { wakeup_bytes: ringBufferBytes / 8 },
  }))
  try {
    attach(session, target, 'on_call_return', 'function__return')
    if (options.entries !== false) {
      attach(session, target, 'on_call_entry', 'function__entry')
      if (target.capabilities.calls.mode === 'line-semaphore') raiseLineSemaphore(session, target)
    }
  } catch (error) {
    await session.close()
    throw error
  }
  return { session, exitPid: pid! }
}

function openSession(pid: number, open: () => NativeSession): NativeSession {
  try {
    return open()
  } catch (error) {
    throw explainNativeError(error, pid, 'loading the BPF programs')
  }
}

function attach(session: NativeSession, target: Inspection, program: string, probe: string): void {
  try {
    session.attachUsdt(program, target.pid, target.probeObject!, 'python', probe)
  } catch (error) {
    if (isNativeError(error) && error.code === 'EINVAL') throw probeConflict(target, `python:${probe}`, error)
    throw explainNativeError(error, target.pid, `attaching to python:${probe}`)
  }
}

/**
 * Parks a uprobe on code the interpreter never runs again (DT_FINI, else DT_INIT) with the line
 * probe's semaphore as its ref_ctr_offset: the kernel raises the semaphore for as long as the
 * link lives and lowers it when the link goes, even when the tracer is killed. Nothing fires per
 * line. Another tracer may already hold that address with another ref_ctr_offset (the kernel
 * keeps one per location and answers EINVAL), so the next cold address is tried.
 */
function raiseLineSemaphore(session: NativeSession, target: Inspection): void {
  const line = findLineSemaphore(target)
  let conflict: unknown
  for (const offset of line.coldCodeOffsets) {
    try {
      session.attachUprobe('hold_semaphore', target.pid, line.object, offset, line.semaphoreFileOffset)
      return
    } catch (error) {
      if (!isNativeError(error) || error.code !== 'EINVAL') {
        throw explainNativeError(error, target.pid, 'raising the line semaphore')
      }
      conflict = error
    }
  }
  throw probeConflict(target, 'the line semaphore holder (its _fini and _init code)', conflict)
}

function probeConflict(target: Inspection, what: string, cause: unknown): TraceError {
  return new TraceError(
    'PROBE_CONFLICT',
    `cannot attach to ${what} in ${target.probeObject} (process ${target.pid}): another tracer holds ` +
      'that location with a different semaphore offset (the kernel keeps one per probe and logs ' +
      '`ref_ctr_offset mismatch`; bcc\'s python tools register a wrong one). Stop the other tracer ' +
      '(e.g. pythoncalls, pythonflow, ucalls) and try again.',
    { cause },
  )
}

function explainNativeError(error: unknown, pid: number, what: string): unknown {
  if (!isNativeError(error)) return error
  if (error.code === 'EPERM' || error.code === 'EACCES') return permissionDenied(what, error)
  if (error.code === 'ESRCH') return noSuchProcess(pid)
  return new TraceError('ATTACH_FAILED', `${what} for process ${pid} failed: ${error.message}`, { cause: error })
}

function isPowerOfTwo(value: number): boolean {
  return Number.isInteger(value) && value > 0 && (value & (value - 1)) === 0
}

const { fields } = CALL_EVENT

function decodeCall(view: DataView, bytes: Buffer, offset: number): CallEvent {
  const flags = view.getUint8(offset + fields.flags)
  const fileLen = view.getUint16(offset + fields.file_len, true)
  const funcLen = view.getUint16(offset + fields.func_len, true)
  const names = offset + CALL_EVENT.size
  return {
    kind: view.getUint8(offset + fields.kind) === CALL_ENTRY ? 'entry' : 'return',
    pid: view.getUint32(offset + fields.pid, true),
    tid: view.getUint32(offset + fields.tid, true),
    timestampNs: view.getBigUint64(offset + fields.timestamp_ns, true),
    file: bytes.toString('utf8', names, names + fileLen),
    func: bytes.toString('utf8', names + fileLen, names + fileLen + funcLen),
    line: view.getInt32(offset + fields.line, true),
    depth: view.getUint16(offset + fields.depth, true),
    durationNs: flags & CALL_HAS_DURATION ? view.getBigUint64(offset + fields.duration_ns, true) : undefined,
    truncated: (flags & (CALL_FILE_TRUNCATED | CALL_FUNC_TRUNCATED)) !== 0,
  }
}
