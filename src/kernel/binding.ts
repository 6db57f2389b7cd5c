import nativeAddon from './addon.cjs'
import type { BpfObjects } from './abi.js'

/** The BPF objects embedded in the addon, one per bpf/*.bpf.c. */
export type BpfObjectName = keyof BpfObjects
type ProgramName<O extends BpfObjectName> = BpfObjects[O]['programs']
type MapName<O extends BpfObjectName> = BpfObjects[O]['maps']
/** The `.bss` globals of the object (its counters), and the addon's own count of records too large to deliver. */
type CounterName<O extends BpfObjectName> = BpfObjects[O]['counters'] | 'dropped_oversized'
/** max_entries per map, set before load (the `events` ring buffer's size in bytes). */
type MaxEntries<O extends BpfObjectName> = { [M in MapName<O>]?: number }
/** Values for the object's `const volatile` globals, set before load (bytes for arrays and structs). */
type Constants<O extends BpfObjectName> = Partial<BpfObjects[O]['constants']>

/**
 * What any session does, whatever its object: the addon drains its ring buffer into batches
 * once started, and counts what the kernel side could not deliver.
 */
export interface NativeSession {
  /**
   * Drains the ring into the buffers lent to it, in turn, on the addon's fill thread: onBatch
   * takes each filled buffer and returns one to lend in its place, or none; with none lent, the
   * drain pauses until lend() brings one. onDelivered follows the onBatch calls of a loop turn,
   * once the next fills are under way: the time to wake a reader.
   */
  start(options: {
    batches: Uint8Array[]
    onBatch(buffer: Uint8Array, bytesOrRows: number, count: number, sideRecords?: number): Uint8Array | undefined
    onDelivered(): void
    onEnd(): void
    /** The stream ends once all of these have exited; never when empty. */
    exitPids: number[]
    flushIntervalMs: number
  }): void
  /** One more buffer to fill, after those lent before. */
  lend(batch: Uint8Array): void
  /**
   * Every buffer lent from now on (by onBatch's return or lend) is filled with the columns
   * `layout` places (src/streams/batch.ts builds it), and onBatch takes (rows, sideBytes,
   * sideRecords) for it; the buffers lent before still take records as they are. Once per session.
   */
  useColumns(layout: object): void
  /**
   * Fills records a drain delivered raw ([u32 length][record], from byte `from` to `end`) into
   * `batch`'s columns, after the rows and side records `filled` ([rows, sideBytes, sideRecords],
   * updated) says it holds; stops at the first that does not fit. Returns the offset it stopped at.
   */
  decodeColumns(records: Uint8Array, from: number, end: number, batch: Uint8Array, filled: Uint32Array): number
  counters(): Record<string, bigint>
  close(): Promise<void>
  /** True once close() was called: late work (a process found after the trace ended) checks it. */
  readonly closed: boolean
}

/**
 * A session of any object that has `Program` programs and `Map` maps. Its members are function
 * properties, which TypeScript checks strictly: a session is one of these only when its object
 * has every program and map named (what a function taking one relies on).
 */
export interface SessionWith<Program extends string, Map extends string = never> {
  /**
   * Uprobes on `sites` of `path` in process `pid` (-1: every process): one uprobe multi link on
   * Linux 6.6 and later, else one perf uprobe per site (also with USDTRACE_UPROBE_MULTI=0).
   * Each site's `cookie` reaches the program through bpf_get_attach_cookie().
   */
  attachUprobes: (program: Program, pid: number, path: string, sites: UprobeSite[], retprobe: boolean) => void
  attachRawTracepoint: (program: Program, tracepoint: string) => void
  /** A BTF tracepoint program (tp_btf/...), where its section names. */
  attachTracing: (program: Program) => void
  /** A CPU clock event on every online CPU at `frequency` Hz, running the program in whatever it interrupts. */
  attachPerfEvents: (program: Program, frequency: number) => void
  /** Runs an iterator program to its end, off the event loop: what it wrote, as [u32 length][record]... */
  runIterator: (program: Program) => Promise<Buffer>
  /** Every entry of a map; with `remove`, each is taken out as it is read. */
  dumpMap: (name: Map, remove: boolean) => MapDump
  updateMap: (name: Map, key: Uint8Array, value: Uint8Array) => void
}

/** A session of object `O`: only the programs, maps and counters `O` has can be named (src/kernel/abi.ts). */
export interface BpfSession<O extends BpfObjectName> extends NativeSession, SessionWith<ProgramName<O>, MapName<O>> {
  counters(): Record<CounterName<O>, bigint>
}

/** `T` as far as `Known` types its keys, and every key `Known` lacks typed never: a name the object lacks is an error, spread-in ones too. */
type Checked<T, Known> = T & Known & { [K in Exclude<keyof T, keyof Known>]: never }

/** What a session of `O` opens with; `M` and `C` are inferred from the values given, so that each of their names is checked. */
export interface SessionOptions<O extends BpfObjectName, M = MaxEntries<O>, C = Constants<O>> {
  /** The embedded BPF object. */
  object: O
  maxEntries?: Checked<M, MaxEntries<O>>
  constants?: Checked<C, Constants<O>>
  /** Only these programs are loaded (the others cannot be attached); all of them by default. */
  programs?: ProgramName<O>[]
}

export interface UprobeSite {
  fileOffset: bigint
  /** The semaphore the kernel raises while the uprobe is attached (ref_ctr_offset), 0n for none. */
  refCtrOffset: bigint
  cookie: bigint
}

/** Keys and values packed back to back; a per-CPU value holds one 8-byte-aligned slot per CPU. */
export interface MapDump {
  count: number
  keySize: number
  valueSize: number
  keys: Buffer
  values: Buffer
}

interface Binding {
  Session: new <O extends BpfObjectName, M extends object, C extends object>(options: SessionOptions<O, M, C>) => BpfSession<O>
  /** The errno of a perf_event_open on the uprobe PMU naming no probe: EACCES/EPERM when uprobes are refused, EINVAL when allowed. */
  uprobeAccess(pmuType: number): number
  /**
   * Calls onGone once nobody reads `fd` any more (a pipe's last reader closed it, a socket's peer
   * hung up); false when `fd` is neither (see native/reader_gone.h).
   */
  watchReaderGone(fd: number, onGone: () => void): boolean
  /** Whether this process attaches through uprobe multi links (see native/uprobe_multi.h). */
  uprobeMultiLinks(): boolean
}

/** Errors thrown by the addon carry the errno of the failed call. */
export interface NativeError extends Error {
  errno: number
  code: string
}

export function isNativeError(error: unknown): error is NativeError {
  return error instanceof Error && typeof (error as NativeError).errno === 'number'
}

export const binding = nativeAddon.addon as Binding
