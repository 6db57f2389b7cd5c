import { statSync } from 'node:fs'
import { attachThreadExit, explainNativeError, openAttached } from '../kernel/attach.js'
import type { SessionWith } from '../kernel/binding.js'
import { errnoName } from './errno.js'
import type { TraceSubject } from '../process/inspect.js'
import {
  SYSCALL_DETAIL_TRUNCATED,
  SYSCALL_EVENT,
  SYSCALL_NEVER_RETURNS,
  SYSCALL_PATH_ARG_SHIFT,
  SYSCALL_RETURNED,
  USDTRACE_SYSCALL_TABLE_SIZE,
  SYSCALL_WANTED,
} from '../kernel/abi.js'
import { NEVER_RETURN, PATH_ARGUMENTS, syscallNumbers, syscallTable, type SyscallTable } from './syscall-table.js'
import { resolveProcesses, type TargetOptions } from '../process/targets.js'
import { Trace, ringBufferSettings, type OpenedSession, type StreamOptions } from './trace.js'
import { eventStacks, noBatchesWithStacks, stackSessionSettings, withEventStacks, type PythonStacks, type StackOption } from './python-stacks.js'
import type { StackFrame } from './stacks.js'
import { columnsOf, type BatchReader, type Columns } from './batch.js'

/** One system call of a traced process, as it returned (exit and exit_group: as it began). */
export interface SyscallEvent {
  /** The traced process. */
  pid: number
  /** The kernel thread id; the main thread's is the pid. */
  tid: number
  /** When the call began: CLOCK_MONOTONIC, comparable with process.hrtime.bigint() */
  timestampNs: bigint
  /** e.g. 'openat'; `syscall_N` for a number the table does not know */
  name: string
  /** The syscall number on this architecture. */
  nr: number
  /** The six raw argument registers, unsigned; a syscall taking fewer leaves the rest meaningless. */
  args: bigint[]
  /** The raw return value; undefined for exit and exit_group, which never return. */
  ret: bigint | undefined
  /** The error's name when the call failed (ret in [-4095, -1]), e.g. 'ENOENT'. */
  errno: string | undefined
  /** From entry to return; undefined when it never returned (exit, exit_group). */
  durationNs: bigint | undefined
  /** The path argument of file syscalls (openat, execve, the stat family, ...), read as the call began. */
  path: string | undefined
  /** The path was longer than 512 bytes and arrives cut to that. */
  truncated: boolean
  /** With `stack: true`: the Python stack of the thread as it made the call, innermost first (none when it ran no Python). */
  stack?: StackFrame[]
}

export interface TraceSyscallsOptions extends StreamOptions, TargetOptions, StackOption {
  /** Only these syscalls (filtered in the kernel); every syscall when left out. */
  names?: string[]
}

const syscall = columnsOf(SYSCALL_EVENT)
const returned = syscall.test('flags', SYSCALL_RETURNED)

/** The columns of a `SyscallBatch`, from a syscall_event's fields. */
const SYSCALL_COLUMNS = {
  pid: syscall.copy('u32', 'pid'),
  tid: syscall.copy('u32', 'tid'),
  timestampNs: syscall.copy('i64', 'timestamp_ns'),
  nr: syscall.copy('u32', 'nr'),
  returned: syscall.flag(returned),
  ret: syscall.copy('i64', 'ret', { when: returned }),
  durationNs: syscall.copy('f64', 'duration_ns', { when: returned }),
}

/**
 * System calls in columns, from `trace.batches()`: row `i` of every column is one call, for `i`
 * below `length` (each column's own length). The next batch of the trace overwrites the
 * columns: copy what you keep. The arguments and paths of `SyscallEvent` are not in batches:
 * read events for those. See docs/batches.md.
 */
export class SyscallBatch {
  /** Rows in this batch. */
  readonly length: number
  /** The traced process. */
  readonly pid: Uint32Array
  /** The kernel thread id; the main thread's is the pid. */
  readonly tid: Uint32Array
  /** When the call began: CLOCK_MONOTONIC, exact, as `SyscallEvent.timestampNs`. */
  readonly timestampNs: BigInt64Array
  /** The syscall number on this architecture: `name(nr)` names it. */
  readonly nr: Uint32Array
  /** 1 when the call returned; 0 for exit and exit_group, which never return. */
  readonly returned: Uint8Array
  /** The raw return value where `returned`, else 0; -4095 to -1 is an error, -errno. */
  readonly ret: BigInt64Array
  /** From entry to return, as a double (exact below 2^53 ns); NaN where the call never returned. */
  readonly durationNs: Float64Array
  readonly #table: () => SyscallTable

  /** @internal Batches come from `trace.batches()`. */
  constructor(columns: Columns<typeof SYSCALL_COLUMNS>, length: number, table: () => SyscallTable) {
    this.length = length
    this.pid = columns.pid
    this.tid = columns.tid
    this.timestampNs = columns.timestampNs
    this.nr = columns.nr
    this.returned = columns.returned
    this.ret = columns.ret
    this.durationNs = columns.durationNs
    this.#table = table
  }

  /** A syscall number's name, e.g. 'openat'; `syscall_N` for a number the table does not know. */
  name(nr: number): string {
    return this.#table().nameOf(nr)
  }
}

/** What `traceSyscalls` returns: an async iterator of syscall events, or of `SyscallBatch`es through `batches()`. */
export type SyscallTrace = Trace<SyscallEvent, SyscallBatch>

/**
 * Streams the system calls of running processes (any program, not only Python), the strace
 * view, through the raw sys_enter / sys_exit tracepoints. The processes are named by pid; the
 * trace ends when all of them have exited.
 */
export function traceSyscalls(pid: number, options?: TraceSyscallsOptions): SyscallTrace
export function traceSyscalls(options: TraceSyscallsOptions): SyscallTrace
export function traceSyscalls(
  pidOrOptions: number | TraceSyscallsOptions,
  maybeOptions: TraceSyscallsOptions = {},
): SyscallTrace {
  const options = typeof pidOrOptions === 'number' ? { ...maybeOptions, pid: pidOrOptions } : pidOrOptions
  let table: SyscallTable | undefined
  let stacks: PythonStacks | undefined
  return new Trace(
    async () => {
      table = syscallTable()
      stacks = await eventStacks('traceSyscalls', options)
      return openSyscallSession(options, table, stacks)
    },
    withEventStacks((view, bytes, offset) => decodeSyscall(table!, view, bytes, offset), () => stacks, (event) => event.timestampNs),
    options,
    () => {
      if (options.stack) {
        throw noBatchesWithStacks('traceSyscalls')
      }
      return syscallBatchReader(() => table!)
    },
  )
}

async function openSyscallSession(options: TraceSyscallsOptions, table: SyscallTable, stacks: PythonStacks | undefined): Promise<OpenedSession> {
  const ring = ringBufferSettings(options)
  const wanted = options.names === undefined ? undefined : syscallNumbers(table, options.names)
  const { targets, exitPids } = await resolveProcesses(options, 'traceSyscalls')
  const python = stackSessionSettings(stacks)
  const session = await openAttached(
    {
      object: 'syscalls',
      maxEntries: { ...ring.maxEntries, ...python.maxEntries, traced_tgids: targets.length },
      constants: { ...ring.constants, ...python.constants, ...syscallFilterConstants(targets, wanted) },
    },
    targets,
    (session) => {
      stacks?.install(session)
      attachSyscallTracepoints(session, targets, table, wanted)
      attachThreadExit(session, targets[0]!)
    },
  )
  return { session, exitPids }
}

/**
 * The syscall filter's constants. A `{ binary }` target (pid -1) is followed by the identity of
 * its file as the kernel holds it: the inode, and the kernel's internal dev_t (major << 20 |
 * minor), which stat's st_dev encodes differently.
 */
export function syscallFilterConstants(
  targets: TraceSubject[],
  wanted: number[] | undefined,
): { every_syscall: number; binary_ino?: bigint; binary_dev?: number } {
  const constants = { every_syscall: wanted === undefined ? 1 : 0 }
  const binary = targets.find((target) => target.pid < 0)
  if (!binary) return constants
  const { ino, dev } = statSync(binary.interpreterObject, { bigint: true })
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn)
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn)
  return { ...constants, binary_ino: ino, binary_dev: Number((major << 20n) | minor) }
}

/**
 * Fills the syscall filter of a session whose object includes syscall_filter.bpf.h (the traced
 * processes; `wanted` numbers, or every syscall when undefined) and attaches its sys_enter and
 * sys_exit programs.
 */
export function attachSyscallTracepoints(
  session: SessionWith<'on_sys_enter' | 'on_sys_exit', 'traced_tgids' | 'syscall_flags'>,
  targets: TraceSubject[],
  table: SyscallTable,
  wanted: number[] | undefined,
): void {
  const what = 'attaching to the sys_enter and sys_exit tracepoints'
  try {
    const present = new Uint8Array([1])
    for (const { pid } of targets) if (pid > 0) session.updateMap('traced_tgids', u32(pid), present)
    for (const [nr, flags] of syscallFlags(table, wanted)) session.updateMap('syscall_flags', u32(nr), new Uint8Array([flags]))
    session.attachRawTracepoint('on_sys_enter', 'sys_enter')
    session.attachRawTracepoint('on_sys_exit', 'sys_exit')
  } catch (error) {
    throw explainNativeError(error, targets[0]!, what)
  }
}

/** The non-zero enum syscall_flags of each number in the table. */
function syscallFlags(table: SyscallTable, wanted: number[] | undefined): Map<number, number> {
  const flags = new Map<number, number>()
  const add = (nr: number | undefined, bits: number) => {
    if (nr !== undefined && nr < USDTRACE_SYSCALL_TABLE_SIZE) flags.set(nr, (flags.get(nr) ?? 0) | bits)
  }
  for (const nr of wanted ?? []) add(nr, SYSCALL_WANTED)
  for (const name of NEVER_RETURN) add(table.numberOf(name), SYSCALL_NEVER_RETURNS)
  for (const [name, index] of Object.entries(PATH_ARGUMENTS)) add(table.numberOf(name), (index + 1) << SYSCALL_PATH_ARG_SHIFT)
  return flags
}

function u32(value: number): Uint8Array {
  const bytes = new Uint8Array(4)
  new DataView(bytes.buffer).setUint32(0, value, true)
  return bytes
}

const { fields } = SYSCALL_EVENT

/** Reads a trace's system calls as `SyscallBatch`es: one row per record, every record a call. */
function syscallBatchReader(table: () => SyscallTable): BatchReader<typeof SYSCALL_COLUMNS, SyscallBatch> {
  return {
    layout: { minSize: SYSCALL_EVENT.size, columns: SYSCALL_COLUMNS },
    batch: (columns, length) => new SyscallBatch(columns, length, table),
  }
}

function decodeSyscall(table: SyscallTable, view: DataView, bytes: Buffer, offset: number): SyscallEvent {
  const flags = view.getUint8(offset + fields.flags)
  const nr = view.getUint32(offset + fields.nr, true)
  const detailLen = view.getUint16(offset + fields.detail_len, true)
  const detail = offset + SYSCALL_EVENT.size
  const args = new Array<bigint>(6)
  for (let i = 0; i < 6; i++) args[i] = view.getBigUint64(offset + fields.args + 8 * i, true)
  const returned = (flags & SYSCALL_RETURNED) !== 0
  const ret = returned ? view.getBigInt64(offset + fields.ret, true) : undefined
  return {
    pid: view.getUint32(offset + fields.pid, true),
    tid: view.getUint32(offset + fields.tid, true),
    timestampNs: view.getBigUint64(offset + fields.timestamp_ns, true),
    name: table.nameOf(nr),
    nr,
    args,
    ret,
    errno: ret === undefined ? undefined : errnoName(ret),
    durationNs: returned ? view.getBigUint64(offset + fields.duration_ns, true) : undefined,
    path: detailLen > 0 ? bytes.toString('utf8', detail, detail + detailLen) : undefined,
    truncated: (flags & SYSCALL_DETAIL_TRUNCATED) !== 0,
  }
}
