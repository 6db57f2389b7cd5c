import { statSync } from 'node:fs'
import { basename } from 'node:path'
import { attachThreadExit, explainNativeError, openAttached } from '../kernel/attach.js'
import { type FunctionSymbol, readFunctionSymbols } from '../process/elf.js'
import { TraceError } from '../errors.js'
import type { TraceSubject } from '../process/inspect.js'
import { LIBRARY_CALL_ARGS, LIBRARY_CALL_EVENT } from '../kernel/abi.js'
import { mappedObjects } from '../process/probes.js'
import { binaryTarget, resolveProcesses, type TargetOptions } from '../process/targets.js'
import { Trace, ringBufferSettings, type OpenedSession, type StreamOptions } from './trace.js'
import { eventStacks, noBatchesWithStacks, stackSessionSettings, withEventStacks, type PythonStacks, type StackOption } from './python-stacks.js'
import type { StackFrame } from './stacks.js'
import { columnsOf, type BatchReader, type Columns } from './batch.js'

/** One completed call into a shared-library function. */
export interface LibraryCallEvent {
  /** The calling process. */
  pid: number
  /** The calling thread (kernel thread id). */
  tid: number
  /** When the call began: CLOCK_MONOTONIC, comparable with process.hrtime.bigint() */
  timestampNs: bigint
  /** From the call to its return. */
  durationNs: bigint
  /** The file the function is in, as traced (e.g. /usr/lib/x86_64-linux-gnu/libc.so.6) */
  library: string
  /** The function's name; of several names for one address, the one asked for, else the plainest */
  symbol: string
  /**
   * The six integer argument registers at entry, unsigned. A function with fewer parameters
   * leaves whatever those registers held in the rest.
   */
  args: bigint[]
  /** The integer return register, signed (e.g. -1n from a failed write) */
  returnValue: bigint
  /** Traced calls of this thread that were running around this one; 0 = outermost */
  depth: number
  /** With `stack: true`: the Python stack of the thread at the event, innermost first (none when it ran no Python). */
  stack?: StackFrame[]
}

export interface TraceLibraryCallsOptions extends StreamOptions, TargetOptions, StackOption {
  /**
   * With `pid` or `pids`: the library, as a name ('libc', 'libc.so.6') matched against the
   * files each process has mapped, or a path. With `binary`, leave it out: the binary is the
   * library, traced in every process that maps it, now and later.
   */
  library?: string
  /** Function names of the library's dynamic symbol table; `*` and `?` glob, e.g. 'pthread_mutex_*' */
  symbols: string | string[]
}

const libraryCall = columnsOf(LIBRARY_CALL_EVENT)

/** The columns of a `LibraryCallBatch`, from a library_call_event's fields; a function id is the traced symbol's index. */
const LIBRARY_CALL_COLUMNS = {
  pid: libraryCall.copy('u32', 'pid'),
  tid: libraryCall.copy('u32', 'tid'),
  timestampNs: libraryCall.copy('i64', 'timestamp_ns'),
  durationNs: libraryCall.copy('f64', 'duration_ns'),
  functionId: libraryCall.copy('u32', 'symbol'),
  returnValue: libraryCall.copy('i64', 'return_value'),
  depth: libraryCall.copy('u32', 'depth'),
}

/** A traced library function, as `LibraryCallBatch.function(id)` names it. */
export interface LibraryFunction {
  /** The file the function is in, as traced. */
  readonly library: string
  /** The function's name, as `LibraryCallEvent.symbol`. */
  readonly symbol: string
}

/**
 * Completed library calls in columns, from `trace.batches()`: row `i` of every column is one
 * call, for `i` below `length` (each column's own length). The next batch of the trace
 * overwrites the columns: copy what you keep. The argument registers of `LibraryCallEvent`
 * are not in batches: read events for those. See docs/batches.md.
 */
export class LibraryCallBatch {
  /** Rows in this batch. */
  readonly length: number
  /** The calling process. */
  readonly pid: Uint32Array
  /** The calling thread (kernel thread id). */
  readonly tid: Uint32Array
  /** When the call began: CLOCK_MONOTONIC, exact, as `LibraryCallEvent.timestampNs`. */
  readonly timestampNs: BigInt64Array
  /** From the call to its return, as a double (exact below 2^53 ns). */
  readonly durationNs: Float64Array
  /** Which function: `function(id)` names it; one id per traced function for the life of the trace. */
  readonly functionId: Uint32Array
  /** The integer return register, signed. */
  readonly returnValue: BigInt64Array
  /** Traced calls of this thread that were running around this one; 0 = outermost. */
  readonly depth: Uint32Array
  readonly #traced: readonly LibraryFunction[]

  /** @internal Batches come from `trace.batches()`. */
  constructor(columns: Columns<typeof LIBRARY_CALL_COLUMNS>, length: number, traced: readonly LibraryFunction[]) {
    this.length = length
    this.pid = columns.pid
    this.tid = columns.tid
    this.timestampNs = columns.timestampNs
    this.durationNs = columns.durationNs
    this.functionId = columns.functionId
    this.returnValue = columns.returnValue
    this.depth = columns.depth
    this.#traced = traced
  }

  /** The library and symbol behind a function id of this trace. */
  function(id: number): LibraryFunction {
    const traced = this.#traced[id]
    if (!traced) throw new TraceError('INVALID_ARGUMENT', `no function has id ${id} in this trace; ids come from batch.functionId`)
    return { library: traced.library, symbol: traced.symbol }
  }
}

/** What `traceLibraryCalls` returns: an async iterator of completed calls, or of `LibraryCallBatch`es through `batches()`. */
export type LibraryCallTrace = Trace<LibraryCallEvent, LibraryCallBatch>

/**
 * Streams calls into shared-library functions, as ltrace shows them: arguments, return value,
 * duration and thread, one event when each call returns. A call that never returns (exit,
 * longjmp past it) and one still running when the trace ends are not reported, nor are calls
 * nested inside more than 32 traced calls of the same thread (counted in `lost`).
 */
export function traceLibraryCalls(pid: number, options: Omit<TraceLibraryCallsOptions, 'pid'>): LibraryCallTrace
export function traceLibraryCalls(options: TraceLibraryCallsOptions): LibraryCallTrace
export function traceLibraryCalls(
  pidOrOptions: number | TraceLibraryCallsOptions,
  maybeOptions?: Omit<TraceLibraryCallsOptions, 'pid'>,
): LibraryCallTrace {
  const options: TraceLibraryCallsOptions =
    typeof pidOrOptions === 'number'
      ? ({ ...maybeOptions, pid: pidOrOptions } as TraceLibraryCallsOptions)
      : (pidOrOptions ?? ({} as TraceLibraryCallsOptions))
  // Filled in while opening, before any record arrives: the cookie of each attachment indexes it.
  const traced: TracedFunction[] = []
  let stacks: PythonStacks | undefined
  return new Trace(
    async () => {
      stacks = await eventStacks('traceLibraryCalls', options)
      return openLibrarySession(options, traced, stacks)
    },
    withEventStacks(libraryCallDecoder(traced), () => stacks, (event) => event.timestampNs),
    options,
    () => {
      if (options.stack) {
        throw noBatchesWithStacks('traceLibraryCalls')
      }
      return libraryCallBatchReader(traced)
    },
  )
}

interface TracedFunction {
  library: string
  symbol: string
  fileOffset: bigint
}

/** A library file as one process (or every process: pid -1) maps it. */
interface LibraryTarget {
  pid: number
  path: string
}

async function openLibrarySession(options: TraceLibraryCallsOptions, traced: TracedFunction[], stacks: PythonStacks | undefined): Promise<OpenedSession> {
  const patterns = checkPatterns(options.symbols)
  const ring = ringBufferSettings(options)
  const { libraries, exitPids } = await findLibraries(options)
  const functionsOf = new Map<string, number[]>()
  for (const { path } of libraries) {
    if (functionsOf.has(path)) continue
    const first = traced.length
    for (const { symbol, fileOffset } of selectFunctions(path, patterns)) traced.push({ library: path, symbol, fileOffset })
    functionsOf.set(path, Array.from({ length: traced.length - first }, (_, i) => first + i))
  }

  const python = stackSessionSettings(stacks)
  const settings = { maxEntries: { ...ring.maxEntries, ...python.maxEntries }, constants: { ...ring.constants, ...python.constants } }
  const session = await openAttached({ object: 'libcalls', ...settings }, libraries.map(subjectOf), (session) => {
    stacks?.install(session)
    attachThreadExit(session, subjectOf(libraries[0]!))
    for (const library of libraries) {
      const indexes = functionsOf.get(library.path)!
      // The cookie of each function's probes is its index in `traced`.
      const sites = indexes.map((index) => ({ fileOffset: traced[index]!.fileOffset, refCtrOffset: 0n, cookie: BigInt(index) }))
      const symbols = indexes.map((index) => traced[index]!.symbol).join(', ')
      try {
        // The return probes first: a call that began before its entry was seen is then ignored
        // at its return, rather than leaving a frame that never returns.
        session.attachUprobes('on_library_return', library.pid, library.path, sites, true)
        session.attachUprobes('on_library_entry', library.pid, library.path, sites, false)
      } catch (error) {
        throw explainNativeError(error, subjectOf(library), `attaching to ${symbols} in ${library.path}`)
      }
    }
  })
  return { session, exitPids }
}

/** How messages name what is traced: the process, or every process of the library. */
function subjectOf(library: LibraryTarget): TraceSubject {
  return { pid: library.pid, interpreterObject: library.path }
}

function checkPatterns(symbols: string | string[] | undefined): string[] {
  const patterns = typeof symbols === 'string' ? [symbols] : symbols
  if (!Array.isArray(patterns) || patterns.length === 0 || !patterns.every((p) => typeof p === 'string' && p !== '')) {
    throw new TraceError(
      'INVALID_ARGUMENT',
      `symbols must name functions of the library (a name, a glob such as 'pthread_*', or an array of them), got ${String(symbols)}`,
    )
  }
  return patterns
}

async function findLibraries(
  options: TraceLibraryCallsOptions,
): Promise<{ libraries: LibraryTarget[]; exitPids: number[] }> {
  const binary = binaryTarget(options)
  if (binary !== undefined) {
    if (options.library !== undefined) {
      throw new TraceError(
        'INVALID_ARGUMENT',
        'with { binary } the binary is the library whose functions are traced; leave out `library`',
      )
    }
    return { libraries: [{ pid: -1, path: binary }], exitPids: [] }
  }
  if (typeof options.library !== 'string' || options.library === '') {
    throw new TraceError(
      'INVALID_ARGUMENT',
      `library must name a shared library the process has mapped ('libc', 'libc.so.6' or a path), got ${String(options.library)}`,
    )
  }
  const { exitPids } = await resolveProcesses(options, 'traceLibraryCalls')
  const libraries: LibraryTarget[] = []
  for (const pid of exitPids) {
    for (const path of await mappedLibrary(pid, options.library)) libraries.push({ pid, path })
  }
  return { libraries, exitPids }
}

/** The files of a process that `library` names: a path (the same file), or a name such as 'libc'. */
async function mappedLibrary(pid: number, library: string): Promise<string[]> {
  const objects = await mappedObjects(pid)
  let found: string[]
  if (library.includes('/')) {
    const wanted = fileIdentity(library)
    if (!wanted) throw new TraceError('INVALID_ARGUMENT', `${library}: no such file; name a library process ${pid} has mapped`)
    found = objects.filter((object) => fileIdentity(object) === wanted)
  } else {
    found = objects.filter((object) => namesLibrary(basename(object), library))
  }
  if (found.length > 0) return found
  throw new TraceError(
    'UNKNOWN_PROBE',
    `process ${pid} has no library ${library} mapped; the files it has mapped are: ${objects.map((o) => basename(o)).join(', ')}`,
  )
}

/** 'libc' names libc.so.6 (and an old libc-2.31.so), 'libc.so.6' itself; never libcap.so.2. */
function namesLibrary(file: string, library: string): boolean {
  if (file === library || file.startsWith(`${library}.so`)) return true
  return file.startsWith(`${library}-`) && /^[0-9.]+\.so/.test(file.slice(library.length + 1))
}

function fileIdentity(path: string): string | undefined {
  const st = statSync(path, { bigint: true, throwIfNoEntry: false })
  return st && `${st.dev}:${st.ino}`
}

const GLOB = /[*?]/

function globMatcher(pattern: string): (name: string) => boolean {
  if (!GLOB.test(pattern)) return (name) => name === pattern
  const source = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')
  const re = new RegExp(`^${source}$`)
  return (name) => re.test(name)
}

/**
 * The functions of `path` the patterns name, one per address: aliases (write and __write) are
 * one function, named as asked, else by the name with the fewest leading underscores.
 * Indirect functions (IFUNCs) are refused by name and skipped by globs: their symbol is the
 * resolver the loader runs once, not the implementation callers reach.
 */
function selectFunctions(path: string, patterns: string[]): { symbol: string; fileOffset: bigint }[] {
  const functions = readFunctionSymbols(path)
  const indirect = new Set(functions.filter((f) => f.indirect).map((f) => f.name))
  const spelled = new Set(patterns.filter((p) => !GLOB.test(p)))
  const byOffset = new Map<bigint, FunctionSymbol[]>()
  for (const pattern of patterns) {
    const matches = globMatcher(pattern)
    const named = functions.filter((f) => matches(f.name))
    const usable = named.filter((f) => !indirect.has(f.name))
    if (usable.length === 0) throw noFunction(path, pattern, named, functions)
    for (const f of usable) byOffset.set(f.fileOffset, [...(byOffset.get(f.fileOffset) ?? []), f])
  }
  return [...byOffset.entries()].map(([fileOffset, aliases]) => ({
    symbol: aliases.map((f) => f.name).sort((a, b) => preference(a, spelled) - preference(b, spelled) || a.localeCompare(b))[0]!,
    fileOffset,
  }))
}

/** Lower is preferred: a name asked for, then fewer leading underscores, then shorter. */
function preference(name: string, spelled: Set<string>): number {
  const underscores = /^_*/.exec(name)![0].length
  return (spelled.has(name) ? 0 : 1_000_000) + underscores * 1000 + name.length
}

function noFunction(path: string, pattern: string, named: FunctionSymbol[], all: FunctionSymbol[]): TraceError {
  if (named.length > 0) {
    const names = [...new Set(named.map((f) => f.name))]
    return new TraceError(
      'PROBE_UNAVAILABLE',
      `${names.join(', ')} in ${path} ${names.length === 1 ? 'is a GNU indirect function' : 'are GNU indirect functions'} ` +
        '(IFUNC): the loader runs that symbol once to pick the implementation callers reach, so a probe on it sees no ' +
        'calls, and the implementations are not exported; trace the functions that call it instead',
    )
  }
  // Names sharing the longest beginning with the pattern are likely what was meant.
  const start = pattern.split(GLOB)[0]!
  const shared = (name: string) => {
    let n = 0
    while (n < start.length && n < name.length && name[n] === start[n]) n++
    return n
  }
  const longest = Math.max(0, ...all.map((f) => shared(f.name)))
  const similar = longest < 3 ? [] : [...new Set(all.map((f) => f.name).filter((name) => shared(name) === longest))]
  return new TraceError(
    'UNKNOWN_PROBE',
    `no function exported by ${path} matches ${JSON.stringify(pattern)} (${all.length} functions in its .dynsym)` +
      (similar.length > 0 ? `; similar names: ${similar.slice(0, 20).join(', ')}` : '') +
      '; name functions as `readelf --dyn-syms` shows them, without the @version',
  )
}

const { fields } = LIBRARY_CALL_EVENT

function libraryCallDecoder(traced: TracedFunction[]) {
  return (view: DataView, _bytes: Buffer, offset: number): LibraryCallEvent => {
    const { library, symbol } = traced[view.getUint32(offset + fields.symbol, true)]!
    const args = new Array<bigint>(LIBRARY_CALL_ARGS)
    for (let i = 0; i < LIBRARY_CALL_ARGS; i++) args[i] = view.getBigUint64(offset + fields.args + i * 8, true)
    return {
      pid: view.getUint32(offset + fields.pid, true),
      tid: view.getUint32(offset + fields.tid, true),
      timestampNs: view.getBigUint64(offset + fields.timestamp_ns, true),
      durationNs: view.getBigUint64(offset + fields.duration_ns, true),
      library,
      symbol,
      args,
      returnValue: view.getBigInt64(offset + fields.return_value, true),
      depth: view.getUint32(offset + fields.depth, true),
    }
  }
}

/** Reads a trace's library calls as `LibraryCallBatch`es: one row per record, every record a completed call. */
function libraryCallBatchReader(traced: TracedFunction[]): BatchReader<typeof LIBRARY_CALL_COLUMNS, LibraryCallBatch> {
  return {
    layout: { minSize: LIBRARY_CALL_EVENT.size, columns: LIBRARY_CALL_COLUMNS },
    batch: (columns, length) => new LibraryCallBatch(columns, length, traced),
  }
}
