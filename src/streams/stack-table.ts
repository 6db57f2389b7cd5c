import { PYTHON_FRAME, STACK_SAMPLE } from '../kernel/abi.js'
import { IdTable, UNNAMED_ID } from './id-table.js'
import type { StackFrame } from './stacks.js'

/** Builds the frames behind `depth` python_frame values at `offset` of a record (StackDecoder.frames). */
export type FrameReader = (view: DataView, offset: number, depth: number) => StackFrame[]

const { fields } = STACK_SAMPLE
const DEPTH = fields.depth
const FRAMES = STACK_SAMPLE.size
const FRAME_WORDS = PYTHON_FRAME.size / 4
// Raw stacks remembered, in words of their frames, before the memo starts over: it only saves
// naming a stack again, and holds stacks of code ids that may be long forgotten.
const MEMO_MAX_WORDS = 1 << 22
const EMPTY = -1

/**
 * The ids `SampleBatch.stackId` holds, as `IdTable` gives them: one per distinct sequence of
 * frames (file, function, line). A sample carries its frames as (code id, offset) words; a memo
 * from those raw words to the stack id makes a stack seen before cost one pass over its words,
 * with no allocation. Distinct words can be the same frames (two offsets on one line, a
 * function's code made anew under another id): only a miss of the memo names the frames and
 * looks them up by their text. A stack the table had no room for is not remembered, so that
 * each of its samples is counted as unnamed.
 */
export class StackTable extends IdTable<readonly StackFrame[]> {
  readonly #readFrames: FrameReader

  // The memo: an open hash table of raw stacks, chained through `#next`, words in one arena.
  #buckets = new Int32Array(1024).fill(EMPTY)
  #next = new Int32Array(1024)
  #hash = new Uint32Array(1024)
  #start = new Uint32Array(1024)
  #words = new Uint32Array(1024)
  #stackOf = new Uint32Array(1024)
  #entries = 0
  #arena = new Uint32Array(1 << 14)
  #arenaUsed = 0

  constructor(readFrames: FrameReader, maxIds: number) {
    super('stack', 'batch.stackId', maxIds)
    this.#readFrames = readFrames
  }

  /** The stack id of the sample record (struct stack_sample, then its frames) at `record`. */
  intern(view: DataView, record: number): number {
    const depth = view.getUint16(record + DEPTH, true)
    const first = record + FRAMES
    const words = depth * FRAME_WORDS
    let hash = Math.imul(words, 0x9e3779b1)
    for (let i = 0; i < words; i++) hash = Math.imul(hash ^ view.getUint32(first + 4 * i, true), 0x85ebca6b) ^ (hash >>> 15)
    hash >>>= 0
    const arena = this.#arena
    for (let entry = this.#buckets[hash & (this.#buckets.length - 1)]!; entry !== EMPTY; entry = this.#next[entry]!) {
      if (this.#hash[entry] !== hash || this.#words[entry] !== words) continue
      const start = this.#start[entry]!
      let same = true
      for (let i = 0; i < words && same; i++) same = arena[start + i] === view.getUint32(first + 4 * i, true)
      if (same) return this.#stackOf[entry]!
    }
    const id = this.#idOf(this.#readFrames(view, first, depth))
    if (id !== UNNAMED_ID) this.#remember(view, first, words, hash, id)
    return id
  }

  /** The id of these frames, given on their first sighting (or `UNNAMED_ID`). */
  #idOf(frames: StackFrame[]): number {
    let text = ''
    for (const frame of frames) text += `${frame.file}\0${frame.func}\0${frame.line}\n`
    return this.find(text) ?? this.add(text, Object.freeze(frames))
  }

  #remember(view: DataView, first: number, words: number, hash: number, id: number): void {
    if (this.#arenaUsed + words > MEMO_MAX_WORDS) this.#forgetMemo()
    if (this.#entries === this.#next.length) this.#growEntries()
    if (this.#arenaUsed + words > this.#arena.length) {
      const arena = new Uint32Array(Math.max(this.#arena.length * 2, this.#arenaUsed + words))
      arena.set(this.#arena.subarray(0, this.#arenaUsed))
      this.#arena = arena
    }
    for (let i = 0; i < words; i++) this.#arena[this.#arenaUsed + i] = view.getUint32(first + 4 * i, true)
    const entry = this.#entries++
    this.#hash[entry] = hash
    this.#start[entry] = this.#arenaUsed
    this.#words[entry] = words
    this.#stackOf[entry] = id
    this.#arenaUsed += words
    this.#link(entry)
  }

  #link(entry: number): void {
    const bucket = this.#hash[entry]! & (this.#buckets.length - 1)
    this.#next[entry] = this.#buckets[bucket]!
    this.#buckets[bucket] = entry
  }

  /** Twice the entries, and twice the buckets, so chains stay about one long. */
  #growEntries(): void {
    const size = this.#next.length * 2
    const grow = <A extends Uint32Array | Int32Array>(from: A, to: A): A => (to.set(from), to)
    this.#next = grow(this.#next, new Int32Array(size))
    this.#hash = grow(this.#hash, new Uint32Array(size))
    this.#start = grow(this.#start, new Uint32Array(size))
    this.#words = grow(this.#words, new Uint32Array(size))
    this.#stackOf = grow(this.#stackOf, new Uint32Array(size))
    this.#buckets = new Int32Array(size).fill(EMPTY)
    for (let entry = 0; entry < this.#entries; entry++) this.#link(entry)
  }

  #forgetMemo(): void {
    this.#entries = 0
    this.#arenaUsed = 0
    this.#buckets.fill(EMPTY)
  }
}
