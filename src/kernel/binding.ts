import nativeAddon from './addon.cjs'

/** The raw addon (native/): a generic BPF session and the C layouts of the event structs. */
export interface NativeSession {
  /**
   * Uprobes on `sites` of `path` in process `pid` (-1: every process): one uprobe multi link on
   * Linux 6.6 and later, else one perf uprobe per site (also with USDTRACE_UPROBE_MULTI=0).
   * Each site's `cookie` reaches the program through bpf_get_attach_cookie().
   */
  attachUprobes(program: string, pid: number, path: string, sites: UprobeSite[], retprobe: boolean): void
  attachRawTracepoint(program: string, tracepoint: string): void
  /** Every entry of a map; with `remove`, each is taken out as it is read. */
  dumpMap(name: string, remove: boolean): MapDump
  updateMap(name: string, key: Uint8Array, value: Uint8Array): void
  /**
   * Drains the ring into `batch`: each filled batch goes to onBatch, which returns the buffer to
   * fill next, or none to pause the drain until resume() brings one.
   */
  start(options: {
    batch: Uint8Array
    onBatch(bytes: number, count: number): Uint8Array | undefined
    onEnd(): void
    /** The stream ends once all of these have exited; never when empty. */
    exitPids: number[]
    flushIntervalMs: number
  }): void
  resume(batch: Uint8Array): void
  counters(): Record<string, bigint>
  close(): Promise<void>
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

export interface SessionOptions {
  /** The embedded BPF object (one per bpf/*.bpf.c). */
  object: string
  /** max_entries per map, set before load (the `events` ring buffer's size in bytes). */
  maxEntries?: Record<string, number>
  /** Values for the object's `const volatile` globals, set before load (bytes for char arrays). */
  constants?: Record<string, number | bigint | Uint8Array>
}

export interface StructLayout {
  size: number
  fields: Record<string, number>
}

interface Binding {
  Session: new (options: SessionOptions) => NativeSession
  layouts: Record<string, StructLayout> & { constants: Record<string, number> }
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
