/**
 * What every stream that reads Python stacks shares: each target's layout and runtime written
 * into the session's maps (bpf/python_stack.bpf.h), its code_dealloc hooked, the processes of a
 * binary described as they appear, and the decoding of stack records, which come through the
 * ring of another stream (a syscall's stack, the names it refers to) as well as a sampler's.
 */
import { readdirSync } from 'node:fs'
import { explainNativeError } from '../kernel/attach.js'
import { requireKernelVersion } from '../kernel/doctor.js'
import type { NativeSession, SessionWith } from '../kernel/binding.js'
import {
  CODE_FILE_TRUNCATED,
  CODE_FUNC_TRUNCATED,
  CODE_LINETABLE_TRUNCATED,
  CODE_RECORD,
  PYTHON_FRAME,
  PYTHON_LAYOUTS_MAX,
  PYTHON_OFFSETS,
  PYTHON_PROCESS,
  SAMPLE_ON_CPU,
  SAMPLE_TRUNCATED,
  SAMPLE_UNREADABLE,
  STACK_RECORD_CODE,
  STACK_RECORD_EXIT,
  STACK_RECORD_FORGET,
  STACK_RECORD_FRAMES,
  STACK_RECORD_PROCESS,
  STACK_RECORD_SAMPLE,
  STACK_RECORD_TAG,
  STACK_SAMPLE,
  USDTRACE_NAME_MAX,
} from '../kernel/abi.js'
import { encodeStruct } from '../kernel/struct.js'
import { TraceError } from '../errors.js'
import type { FrameLayout } from '../cpython/layout.js'
import { LineTable } from '../cpython/linetable.js'
import { strText } from '../cpython/objects.js'
import { checkRuntime, locateRuntime, stackReading, type LocatedRuntime, type StackReading } from '../cpython/runtime.js'
import type { Inspection } from '../process/inspect.js'
import { resolveTargets, type TargetOptions } from '../process/targets.js'
import type { StackFrame, StackSample } from './stacks.js'

/** A session of an object that includes python_stack.bpf.h. */
export type StackMapsSession = NativeSession & SessionWith<'forget_code', 'python_layouts' | 'python_processes'>

// Processes a { binary } trace follows at once.
const BINARY_PROCESSES = 4096

const UNKNOWN_FRAME: StackFrame = Object.freeze({ file: '<unknown>', func: '<unknown>', line: 0 })
const UNKNOWN_OFFSET = 0xffffffff

/** The Python stacks of a trace's targets, readied for one session. */
export class PythonStacks {
  readonly decoder: StackDecoder
  readonly targets: Inspection[]
  /** How each target is read, and where (none with { binary }: its processes are described as they appear). */
  readonly readings: StackReading[]
  readonly located: LocatedRuntime[]
  #layouts: Layouts
  #binary: string | undefined

  private constructor(targets: Inspection[], readings: StackReading[], located: LocatedRuntime[], binary: string | undefined, deferForget: boolean) {
    this.targets = targets
    this.readings = readings
    this.located = located
    this.#binary = binary
    this.#layouts = new Layouts(readings)
    this.decoder = new StackDecoder(deferForget)
  }

  /**
   * Finds how each target's stacks are read, and where each pid has its runtime, checked against
   * the live interpreter (UNSUPPORTED_PYTHON when it does not hold). A profile defers forgetting
   * code ids until its next read (`deferForget`), since its kernel sums may still hold them.
   */
  static async prepare(targets: Inspection[], binary: string | undefined, deferForget = false): Promise<PythonStacks> {
    const readings = targets.map((target) => stackReading(target))
    const located = binary ? [] : await Promise.all(targets.map((target, i) => locateChecked(readings[i]!, target.pid)))
    return new PythonStacks(targets, readings, located, binary, deferForget)
  }

  /** max_entries of the process map python_stack.bpf.h keeps. */
  get maxEntries(): { python_processes: number } {
    return { python_processes: this.#binary ? BINARY_PROCESSES : this.targets.length }
  }

  /** python_stack.bpf.h's constants. */
  get constants(): { follow_binary: number } {
    return { follow_binary: this.#binary ? 1 : 0 }
  }

  /** Writes the layouts and the runtimes into the session's maps, and hooks code_dealloc unless `hooks` is false (a dump). */
  install(session: StackMapsSession, hooks = true): void {
    this.#layouts.write(session)
    this.located.forEach((runtime, i) => describe(session, this.decoder, this.#layouts, this.readings[i]!, runtime))
    if (hooks) {
      this.readings.forEach((reading, i) => {
        const site = { fileOffset: reading.codeDealloc, refCtrOffset: 0n, cookie: 0n }
        try {
          session.attachUprobes('forget_code', this.targets[i]!.pid, reading.object, [site], false)
        } catch (error) {
          throw explainNativeError(error, this.targets[i]!, 'attaching to code_dealloc')
        }
      })
    }
    if (this.#binary) this.decoder.followBinary(session, this.#layouts, this.readings[0]!, this.#binary)
  }
}

/**
 * A stream's decoder with the Python stack of each event attached as `stack`: the stream's own
 * records decode as before, and stack records inform the stacks' decoder.
 */
export function withEventStacks<T extends { tid: number }>(
  decode: (view: DataView, bytes: Buffer, offset: number, length: number) => T | undefined,
  stacks: () => PythonStacks | undefined,
  timestampOf: (event: T) => bigint,
): (view: DataView, bytes: Buffer, offset: number, length: number) => (T & { stack?: StackFrame[] }) | undefined {
  return (view, bytes, offset, length) => {
    const reader = stacks()
    if (!reader) return decode(view, bytes, offset, length)
    if (StackDecoder.isStackRecord(view, offset)) {
      reader.decoder.decode(view, bytes, offset)
      return undefined
    }
    const event = decode(view, bytes, offset, length)
    if (event === undefined) return undefined
    const stack = reader.decoder.eventStack(event.tid, timestampOf(event))
    return stack ? Object.assign(event, { stack }) : event
  }
}

/**
 * What `batches()` of a trace with `stack: true` throws: stacks are variable-length and come
 * with events only. Streams call it where they make their batch reader.
 */
export function noBatchesWithStacks(stream: string): TraceError {
  return new TraceError('INVALID_ARGUMENT', `${stream} with stack: true has no batches(): the stacks come with events only; trace without stack for batches`)
}

/** Locates a pid's runtime and checks it against the live interpreter; UNSUPPORTED_PYTHON when it does not hold. */
async function locateChecked(reading: StackReading, pid: number): Promise<LocatedRuntime> {
  const located = await locateRuntime(reading, pid)
  const problem = located ? checkRuntime(reading, located, threadIds(pid)) : `it has not mapped ${reading.object}`
  if (problem) {
    throw new TraceError(
      'UNSUPPORTED_PYTHON',
      `cannot read the Python stacks of process ${pid}: usdtrace's layout for CPython ${reading.version.major}.${reading.version.minor} ` +
        `(${reading.source}) does not hold in it: ${problem}. Please report it with the output of \`${reading.object} -VV\``,
    )
  }
  return located!
}

function threadIds(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).map(Number)
  } catch {
    return []
  }
}

/** The distinct layouts a session reads with, by interpreter file: python_layouts' slots. */
class Layouts {
  #slots = new Map<string, number>()
  #layouts: FrameLayout[] = []

  constructor(readings: StackReading[]) {
    for (const reading of readings) {
      if (this.#slots.has(reading.object)) continue
      if (this.#layouts.length === PYTHON_LAYOUTS_MAX) {
        throw new TraceError('INVALID_ARGUMENT', `one stack trace reads at most ${PYTHON_LAYOUTS_MAX} distinct interpreters; split the targets over several traces`)
      }
      this.#slots.set(reading.object, this.#layouts.length)
      this.#layouts.push(reading.layout)
    }
  }

  slot(reading: StackReading): number {
    return this.#slots.get(reading.object)!
  }

  write(session: StackMapsSession): void {
    this.#layouts.forEach((layout, slot) => session.updateMap('python_layouts', u32(slot), encodeStruct(PYTHON_OFFSETS, layout)))
  }
}

function u32(value: number): Uint8Array {
  const bytes = new Uint8Array(4)
  new DataView(bytes.buffer).setUint32(0, value, true)
  return bytes
}

/** Tells the BPF side where a process's runtime is and which layout reads it. */
function describe(session: StackMapsSession, decoder: StackDecoder, layouts: Layouts, reading: StackReading, runtime: LocatedRuntime): void {
  const value = encodeStruct(PYTHON_PROCESS, { runtime: runtime.runtime, code_type: runtime.codeType, layout: layouts.slot(reading) })
  decoder.addProcess(runtime.pid, reading.version.minor)
  session.updateMap('python_processes', u32(runtime.pid), value)
}

interface Code {
  file: string
  func: string
  lines: LineTable
}

/**
 * Reads a stack session's records: names code ids as their CODE records arrive (and forgets them
 * on FORGET), turns samples' frames into names and lines, and with { binary } describes the
 * processes the BPF side asks about. A profile keeps forgotten ids until its next read, since
 * its kernel sums may still hold them.
 */
export class StackDecoder {
  #codes = new Map<number, Code>()
  /** Each thread's stack sent ahead of its next event of another stream (STACK_RECORD_FRAMES). */
  #eventStacks = new Map<number, { timestampNs: bigint; frames: StackFrame[] }>()
  #codesOf = new Map<number, number[]>()
  #minorOf = new Map<number, number>()
  #frames = new Map<string, StackFrame>()
  #deferForget: boolean
  #forgotten: number[] = []
  #follow: ((pid: number) => void) | undefined

  constructor(deferForget: boolean) {
    this.#deferForget = deferForget
  }

  addProcess(pid: number, minor: number): void {
    this.#minorOf.set(pid, minor)
  }

  /** With { binary }: processes the kernel asks about are described if they map it. */
  followBinary(session: StackMapsSession, layouts: Layouts, reading: StackReading, binary: string): void {
    this.#follow = (pid) => {
      void locateRuntime(reading, pid, binary).then(
        (located) => {
          // Found after the trace was closed: its maps are gone, and there is nothing to sample.
          if (session.closed) return
          if (located && !checkRuntime(reading, located, threadIds(pid))) describe(session, this, layouts, reading, located)
        },
        // Gone already, or not ours to read: nothing to describe.
        () => {},
      )
    }
  }

  /** Whether a record of any stream's ring is a stack record (the others start with a timestamp). */
  static isStackRecord(view: DataView, offset: number): boolean {
    return view.getUint32(offset + STACK_SAMPLE.fields.tag, true) === STACK_RECORD_TAG
  }

  /**
   * The stack sent for thread `tid`'s event at `timestampNs`, once: undefined when none was (the
   * thread ran no Python, or the ring had no room for it, which is counted).
   */
  eventStack(tid: number, timestampNs: bigint): StackFrame[] | undefined {
    const sent = this.#eventStacks.get(tid)
    if (!sent) return undefined
    this.#eventStacks.delete(tid)
    return sent.timestampNs === timestampNs ? sent.frames : undefined
  }

  /** The sample a record is, or undefined for the records that only inform. */
  decode(view: DataView, bytes: Buffer, offset: number): StackSample | undefined {
    const kind = view.getUint8(offset)
    if (kind === STACK_RECORD_SAMPLE) return this.#sample(view, offset)
    if (kind === STACK_RECORD_FRAMES) {
      const sample = this.#sample(view, offset)
      this.#eventStacks.set(sample.tid, sample)
      return undefined
    }
    if (kind === STACK_RECORD_CODE) this.#learn(view, bytes, offset)
    else if (kind === STACK_RECORD_FORGET) this.#forget([view.getUint32(offset + CODE_RECORD.fields.id, true)])
    else if (kind === STACK_RECORD_PROCESS) this.#follow?.(view.getUint32(offset + STACK_SAMPLE.fields.pid, true))
    else if (kind === STACK_RECORD_EXIT) this.#exited(view.getUint32(offset + STACK_SAMPLE.fields.pid, true))
    return undefined
  }

  /** The frames `depth` python_frame values at `offset` stand for. */
  frames(view: DataView, offset: number, depth: number): StackFrame[] {
    const frames: StackFrame[] = new Array(depth)
    for (let i = 0; i < depth; i++) {
      const at = offset + i * PYTHON_FRAME.size
      frames[i] = this.#frame(view.getUint32(at + PYTHON_FRAME.fields.code_id, true), view.getUint32(at + PYTHON_FRAME.fields.offset, true))
    }
    return frames
  }

  /** After a profile's read: the ids forgotten before it go now. */
  sweep(): void {
    const forgotten = this.#forgotten
    this.#forgotten = []
    for (const id of forgotten) this.#drop(id)
  }

  #sample(view: DataView, offset: number): StackSample {
    const f = STACK_SAMPLE.fields
    const flags = view.getUint8(offset + f.flags)
    const sample: StackSample = {
      pid: view.getUint32(offset + f.pid, true),
      tid: view.getUint32(offset + f.tid, true),
      cpu: view.getUint32(offset + f.cpu, true),
      timestampNs: view.getBigUint64(offset + f.timestamp_ns, true),
      onCpu: (flags & SAMPLE_ON_CPU) !== 0,
      frames: this.frames(view, offset + STACK_SAMPLE.size, view.getUint16(offset + f.depth, true)),
      truncated: (flags & (SAMPLE_TRUNCATED | SAMPLE_UNREADABLE)) !== 0,
    }
    if (!sample.onCpu) sample.offCpuNs = view.getBigUint64(offset + f.off_cpu_ns, true)
    return sample
  }

  /** A frame is the same object for the same code and offset: samples share them. */
  #frame(id: number, offset: number): StackFrame {
    const code = this.#codes.get(id)
    if (!code) return UNKNOWN_FRAME
    const key = `${id}:${offset}`
    let frame = this.#frames.get(key)
    if (!frame) {
      const line = code.lines.lineAt(offset === UNKNOWN_OFFSET ? -1 : offset)
      frame = Object.freeze({ file: code.file, func: code.func, line: line === undefined || line < 0 ? 0 : line })
      this.#frames.set(key, frame)
    }
    return frame
  }

  #learn(view: DataView, bytes: Buffer, offset: number): void {
    const f = CODE_RECORD.fields
    const id = view.getUint32(offset + f.id, true)
    const pid = view.getUint32(offset + f.pid, true)
    const flags = view.getUint8(offset + f.flags)
    const names = offset + CODE_RECORD.size
    const linetable = names + 2 * USDTRACE_NAME_MAX
    const linetableLength = view.getUint32(offset + f.linetable_len, true)
    // A name cut at USDTRACE_NAME_MAX bytes says so with an ellipsis rather than passing for the whole.
    const cut = (flag: number) => (flags & flag ? '…' : '')
    this.#codes.set(id, {
      file: strText(bytes, names, view.getUint16(offset + f.file_len, true), view.getUint8(offset + f.file_kind)) + cut(CODE_FILE_TRUNCATED),
      func: strText(bytes, names + USDTRACE_NAME_MAX, view.getUint16(offset + f.func_len, true), view.getUint8(offset + f.func_kind)) + cut(CODE_FUNC_TRUNCATED),
      lines: new LineTable({
        minor: this.#minorOf.get(pid)!,
        bytes: Buffer.from(bytes.subarray(linetable, linetable + linetableLength)),
        firstLine: view.getInt32(offset + f.first_line, true),
        truncated: (flags & CODE_LINETABLE_TRUNCATED) !== 0,
      }),
    })
    const ids = this.#codesOf.get(pid)
    if (ids) ids.push(id)
    else this.#codesOf.set(pid, [id])
  }

  #forget(ids: number[]): void {
    if (this.#deferForget) this.#forgotten.push(...ids)
    else for (const id of ids) this.#drop(id)
  }

  #drop(id: number): void {
    this.#codes.delete(id)
    // Frames made from it are few (a code object's offsets sampled): a sweep of the cache is cheap next to a read.
    for (const key of this.#frames.keys()) if (key.startsWith(`${id}:`)) this.#frames.delete(key)
  }

  #exited(pid: number): void {
    this.#forget(this.#codesOf.get(pid) ?? [])
    this.#codesOf.delete(pid)
    this.#minorOf.delete(pid)
  }
}

/** What a stream whose events can carry their Python stack takes. */
export interface StackOption {
  /**
   * Attach to each event the Python stack of the thread at that moment (`stack`), read in the
   * kernel as the stack samplers read it, on any CPython from 3.10 on. The targets must be
   * CPython processes; costs a stack walk (a few µs) per event.
   */
  stack?: boolean
}

/** The stacks of a stream's targets when its `stack` option asks for them; undefined when it does not. */
export async function eventStacks(fn: string, options: TargetOptions & StackOption): Promise<PythonStacks | undefined> {
  if (options.stack === undefined || options.stack === false) return undefined
  if (options.stack !== true) throw new TraceError('INVALID_ARGUMENT', `${fn}: stack must be true or false, got ${String(options.stack)}`)
  requireKernelVersion(5, 18, 'reading Python stacks')
  const { targets } = await resolveTargets(options, 'stacks')
  return PythonStacks.prepare(targets, options.binary)
}

/**
 * The max_entries and constants python_stack.bpf.h takes in a stream's object: with stacks, its
 * targets'; without, its maps as small as they go (the walk is never verified: with_stacks is 0).
 */
export function stackSessionSettings(stacks: PythonStacks | undefined) {
  if (!stacks) return { maxEntries: { python_processes: 1, thread_states: 1, asked_processes: 1 }, constants: { with_stacks: 0 } }
  return { maxEntries: stacks.maxEntries, constants: { ...stacks.constants, with_stacks: 1 } }
}
