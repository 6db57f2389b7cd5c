/**
 * Finding what the frame walk needs in a CPython process: which layout reads its version (from
 * `_Py_DebugOffsets` or the version tables, src/cpython/layout.ts), where `_PyRuntime` and
 * `PyCode_Type` sit in its memory, and a check of that layout against the live interpreter, so a
 * build usdtrace does not understand is refused rather than misread.
 */
import { statSync } from 'node:fs'
import { basename } from 'node:path'
import { TraceError } from '../errors.js'
import { type DataSymbol, type PythonVersion, linkAddress, readDataSymbols } from '../process/elf.js'
import type { Inspection } from '../process/inspect.js'
import { ProcessMemory } from '../process/memory.js'
import { type Mapping, mappings } from '../process/probes.js'
import {
  DEBUG_OFFSETS_BYTES,
  FRAME_LAYOUTS,
  NO_OFFSET,
  codeDeallocOffset,
  debugOffsetsLayout,
  parseDebugOffsets,
  threadNamesLayout,
  type FrameLayout,
  type ThreadNamesLayout,
} from './layout.js'

/** The first CPython whose stacks usdtrace reads. */
const FIRST_MINOR = 10

/** How an interpreter file's stacks are read: the same for every process running it. */
export interface StackReading {
  /** The file holding `_PyRuntime`: libpython for shared builds, else the executable. */
  object: string
  version: PythonVersion
  layout: FrameLayout
  /** Where the layout comes from: the interpreter's own `_Py_DebugOffsets`, or usdtrace's table for its version. */
  source: 'debug-offsets' | 'version-table'
  /** Link-time addresses in `object`. */
  runtime: bigint
  codeType: bigint
  /** The file offset of code_dealloc, hooked so a freed code object's id is forgotten. */
  codeDealloc: bigint
  /** How the threads' `threading` names are read; undefined where usdtrace does not know how (the kernel's names stand). */
  threadNames: ThreadNamesReading | undefined
}

/** What reading `threading`'s names takes: the layout, and the types the objects read are checked against. */
export interface ThreadNamesReading {
  layout: ThreadNamesLayout
  /** Link-time addresses in the interpreter file of PyUnicode_Type, PyLong_Type, PyDict_Type, PyModule_Type. */
  types: ObjectTypes
}

/** Where the types of the objects read for names are. */
export interface ObjectTypes {
  str: bigint
  int: bigint
  dict: bigint
  module: bigint
}

/** The symbols of ObjectTypes' types. */
const TYPE_SYMBOLS: Readonly<Record<keyof ObjectTypes, string>> = { str: 'PyUnicode_Type', int: 'PyLong_Type', dict: 'PyDict_Type', module: 'PyModule_Type' }

/** Where a process has its runtime: the addresses the BPF side reads from. */
export interface LocatedRuntime {
  pid: number
  /** How far from its link-time addresses the process loaded the interpreter file. */
  bias: bigint
  runtime: bigint
  codeType: bigint
}

/** The same file unchanged since it was read: its path, device, inode and modification time. */
const readings = new Map<string, StackReading | string>()

/**
 * How the stacks of processes running this interpreter are read, or why they cannot be (what
 * was found, and what would work). Read once per interpreter file.
 */
export function stackReadingOrReason(target: Pick<Inspection, 'interpreterObject' | 'version'>): StackReading | string {
  const st = statSync(target.interpreterObject, { bigint: true, throwIfNoEntry: false })
  const key = `${target.interpreterObject}:${st?.dev}:${st?.ino}:${st?.mtimeNs}`
  let reading = readings.get(key)
  if (reading === undefined) {
    try {
      reading = readStackLayout(target)
    } catch (error) {
      if (!(error instanceof TraceError)) throw error
      reading = error.message
    }
    readings.set(key, reading)
  }
  return reading
}

/** How the stacks of processes running this interpreter are read; UNSUPPORTED_PYTHON, naming what it found, when they cannot be. */
export function stackReading(target: Pick<Inspection, 'interpreterObject' | 'version' | 'pid'>): StackReading {
  const reading = stackReadingOrReason(target)
  if (typeof reading === 'string') {
    const subject = target.pid > 0 ? `process ${target.pid}` : `processes of ${target.interpreterObject}`
    throw new TraceError('UNSUPPORTED_PYTHON', `cannot read the Python stacks of ${subject}: ${reading}`)
  }
  return reading
}

function readStackLayout(target: Pick<Inspection, 'interpreterObject' | 'version'>): StackReading {
  const object = target.interpreterObject
  const version = target.version
  const unsupported = (why: string) => new TraceError('UNSUPPORTED_PYTHON', `${object}: ${why}`)
  if (!version || version.major !== 3) throw unsupported('its CPython version is unknown (no Py_Version symbol, no version in its name)')
  const named = `CPython ${version.major}.${version.minor}`
  if (version.minor < FIRST_MINOR) throw unsupported(`${named} predates 3.${FIRST_MINOR}, the first version usdtrace reads stacks of`)
  if (/^(?:lib)?python\d+\.\d+t\b/.test(basename(object))) {
    throw unsupported(`${named} is a free-threaded build (its name ends in t), whose thread states and frames usdtrace does not read`)
  }
  const symbols = readDataSymbols(object, ['_PyRuntime', 'PyCode_Type', ...Object.values(TYPE_SYMBOLS)], DEBUG_OFFSETS_BYTES)
  const runtime = symbols.get('_PyRuntime')
  const codeType = symbols.get('PyCode_Type')
  if (!runtime || !codeType) throw unsupported(`it has no ${runtime ? 'PyCode_Type' : '_PyRuntime'} symbol (a stripped or static embedding)`)
  let layout: FrameLayout | string | undefined
  let source: StackReading['source'] = 'version-table'
  const debug = parseDebugOffsets(runtime.bytes)
  if (debug) {
    if (debug.freeThreaded) throw unsupported(`${named} is a free-threaded build (_Py_DebugOffsets says so)`)
    layout = debugOffsetsLayout(debug, version.minor)
    source = 'debug-offsets'
  } else if (version.minor >= 13) {
    throw unsupported(`${named} should start _PyRuntime with _Py_DebugOffsets, and it does not`)
  } else {
    layout = FRAME_LAYOUTS[version.minor]
  }
  if (typeof layout === 'string') throw unsupported(layout)
  if (!layout) throw unsupported(`usdtrace has no layout for ${named}`)
  const codeDealloc = codeDeallocOffset({ interpreterObject: object })
  if (codeDealloc === undefined) throw unsupported('PyCode_Type has no tp_dealloc usdtrace can hook')
  const namesLayout = threadNamesLayout(version.minor, debug)
  const types = objectTypes(symbols)
  const threadNames = namesLayout && types ? { layout: namesLayout, types } : undefined
  return { object, version, layout, source, runtime: runtime.address, codeType: codeType.address, codeDealloc, threadNames }
}

/** The object types' link-time addresses, if the file has every one. */
function objectTypes(symbols: Map<string, DataSymbol>): ObjectTypes | undefined {
  const types: Partial<ObjectTypes> = {}
  for (const [type, symbol] of Object.entries(TYPE_SYMBOLS) as [keyof ObjectTypes, string][]) {
    types[type] = symbols.get(symbol)?.address
    if (!types[type]) return undefined
  }
  return types as ObjectTypes
}

/** The same file, however a process's maps name it (through /proc/PID/root, for one). */
function sameFile(a: string, b: string): boolean {
  const first = statSync(a, { bigint: true, throwIfNoEntry: false })
  const second = statSync(b, { bigint: true, throwIfNoEntry: false })
  return !!first && !!second && first.dev === second.dev && first.ino === second.ino
}

/**
 * Where the process loaded `reading.object`, from its maps; undefined when it has not mapped it,
 * or not `also` (the program a { binary } trace follows, when that is not the interpreter itself).
 */
export async function locateRuntime(reading: StackReading, pid: number, also?: string): Promise<LocatedRuntime | undefined> {
  const all = await mappings(pid)
  const mappingOf = (path: string) => all.find((m: Mapping) => basename(m.path) === basename(path) && sameFile(m.path, path))
  const mapping = mappingOf(reading.object)
  if (!mapping || (also !== undefined && !mappingOf(also))) return undefined
  const linked = linkAddress(reading.object, mapping.offset)
  if (linked === undefined) return undefined
  const bias = mapping.start - linked
  return { pid, bias, runtime: reading.runtime + bias, codeType: reading.codeType + bias }
}

/** Thread states a check visits at most. */
const CHECKED_THREADS = 1024
/** The largest pid Linux hands out (PID_MAX_LIMIT). */
const PID_MAX = 4194304n
/** Where x86-64 and aarch64 user space ends (47-bit and 48-bit address spaces). */
const USER_SPACE_END = 1n << 48n

/**
 * Checks the layout against the live interpreter; returns what disagrees, or undefined. Thread
 * states must name threads as the version does (3.11 on: a kernel tid, at least one of them a
 * thread of the process now; 3.10: a pthread, a user-space address), and each thread's current
 * frame must hold a code object. A runtime not yet started (no interpreter) passes: the walk
 * finds nothing there until it starts.
 */
export function checkRuntime(reading: StackReading, located: LocatedRuntime, tids: number[]): string | undefined {
  const { layout } = reading
  const memory = new ProcessMemory(located.pid)
  try {
    const interpreter = memory.pointer(located.runtime + BigInt(layout.runtime_interpreters))
    if (interpreter === undefined) return `_PyRuntime at 0x${located.runtime.toString(16)} is not readable`
    if (interpreter === 0n) return undefined
    let thread = memory.pointer(interpreter + BigInt(layout.interpreter_threads))
    const ids: bigint[] = []
    for (; thread && ids.length < CHECKED_THREADS; thread = memory.pointer(thread + BigInt(layout.thread_next))) {
      const id = memory.pointer(thread + BigInt(layout.thread_id))
      if (id === undefined) return `the thread state at 0x${thread.toString(16)} is not readable`
      // 0: a thread state made for a thread that has not started running yet.
      const plausible = id === 0n || (layout.thread_id_is_pthread ? id > 0xfffn && id < USER_SPACE_END : id <= PID_MAX)
      if (!plausible) return `a thread state names thread 0x${id.toString(16)}, which no thread of CPython ${versionOf(reading)} is`
      const problem = checkFrames(memory, reading, located, thread, id)
      if (problem) return problem
      ids.push(id)
    }
    if (thread === undefined) return 'a thread state is not readable'
    if (!layout.thread_id_is_pthread && ids.some((id) => id !== 0n) && !ids.some((id) => tids.includes(Number(id)))) {
      return `no thread state names a thread of process ${located.pid} (they name ${ids.join(', ')})`
    }
    return undefined
  } finally {
    memory.close()
  }
}

function versionOf(reading: StackReading): string {
  return `${reading.version.major}.${reading.version.minor}`
}

function checkFrames(memory: ProcessMemory, reading: StackReading, located: LocatedRuntime, thread: bigint, id: bigint): string | undefined {
  const { layout } = reading
  let frame = memory.pointer(thread + BigInt(layout.thread_frame))
  if (frame && layout.cframe_current_frame !== NO_OFFSET) frame = memory.pointer(frame + BigInt(layout.cframe_current_frame))
  // Shims (3.12 on) hold no code object: the first frame that does is checked.
  for (let hops = 0; frame && hops < 4; hops++) {
    const code = memory.pointer(frame + BigInt(layout.frame_code))
    const type = code ? memory.pointer(code + BigInt(layout.object_type)) : undefined
    if (type === located.codeType) return undefined
    frame = memory.pointer(frame + BigInt(layout.frame_previous))
  }
  if (frame) return `the frames of thread ${id} hold no code object where CPython ${versionOf(reading)} keeps it`
  return undefined
}
