/**
 * Reading CPython objects in another process's memory, as it runs: exact strs and ints, dicts,
 * and the attributes of instances of Python classes, laid out as src/cpython/layout.ts says.
 * Every read can fail or find something else than it expects (the process changes what it
 * holds while it is read): each answer is then undefined, and every walk is bounded.
 */
import type { ProcessMemory } from '../process/memory.js'
import {
  DICT_ENTRY,
  DICT_KEYS_GENERAL,
  DICT_UNICODE_ENTRY,
  LONG_DIGIT_BITS,
  LONG_TAG_SIGN,
  UNICODE_STATE,
  sizedIndexBytes,
  type FrameLayout,
  type ThreadNamesLayout,
} from './layout.js'
import type { ObjectTypes } from './runtime.js'

/** The entries of a dict read at most (more than any process has threads): 24 MiB of entries, read 24 KiB at a time. */
const MAX_DICT_ENTRIES = 1 << 20
/** Entries (and their values) read at once. */
const ENTRIES_PER_READ = 1024
/** The longest key compared with a wanted name: longer ones are not read. */
const MAX_KEY_CHARS = 256
/** 3.10's dk_size is a Py_ssize_t, read as a power of two no larger than this. */
const MAX_LOG2_SIZE = 32
/** Where names are in shared keys: keys address → name → entry index. */
type SharedIndexes = Map<bigint, Map<string, number>>

/** What an instance's type says about where its attributes are. */
interface TypeFacts {
  flags: bigint
  basicSize: bigint
  dictOffset: bigint
  cachedKeys: bigint
}

/** A str's text in its own storage: 1 byte a character (Latin-1), 2 (UCS-2) or 4 (UCS-4). */
export function strText(bytes: Buffer, at: number, length: number, kind: number): string {
  if (kind === 1) return bytes.toString('latin1', at, at + length)
  if (kind === 2) return bytes.toString('utf16le', at, at + length)
  if (kind === 4) {
    let decoded = ''
    for (let i = at; i + 4 <= at + length; i += 4) decoded += String.fromCodePoint(bytes.readUInt32LE(i))
    return decoded
  }
  return '<unreadable>'
}

/** Reads one process's objects: one per read of its names, since it caches what it has read. */
export class ObjectReader {
  readonly #memory: ProcessMemory
  readonly #layout: ThreadNamesLayout
  readonly #frame: FrameLayout
  readonly #types: ObjectTypes
  readonly #keyTexts = new Map<bigint, string | undefined>()
  readonly #typeFacts = new Map<bigint, TypeFacts | undefined>()
  readonly #shared: SharedIndexes = new Map()

  /** `types` at their link-time addresses, which the process loaded `bias` further. */
  constructor(memory: ProcessMemory, layout: ThreadNamesLayout, frame: FrameLayout, types: ObjectTypes, bias: bigint) {
    this.#memory = memory
    this.#layout = layout
    this.#frame = frame
    this.#types = { str: types.str + bias, int: types.int + bias, dict: types.dict + bias, module: types.module + bias }
  }

  pointer(address: bigint): bigint | undefined {
    return this.#memory.pointer(address)
  }

  /** The object's type (ob_type), or undefined. */
  typeOf(object: bigint): bigint | undefined {
    return object ? this.#memory.pointer(object + BigInt(this.#frame.object_type)) : undefined
  }

  /** A module's dict (md_dict), if `object` is a module. */
  moduleDict(object: bigint): bigint | undefined {
    if (this.typeOf(object) !== this.#types.module) return undefined
    return this.#memory.pointer(object + BigInt(this.#layout.module_dict))
  }

  /** The text of an exact, compact str of at most `maxChars` characters. */
  str(object: bigint, maxChars: number): string | undefined {
    const frame = this.#frame
    if (this.typeOf(object) !== this.#types.str) return undefined
    const header = this.#memory.read(object, frame.unicode_ascii_data)
    if (!header) return undefined
    const state = header.readUInt32LE(frame.unicode_state)
    const length = header.readBigInt64LE(frame.unicode_length)
    const kind = (state >> UNICODE_STATE.kindShift) & UNICODE_STATE.kindMask
    if (!(state & UNICODE_STATE.compact) || (kind !== 1 && kind !== 2 && kind !== 4) || length < 0n || length > BigInt(maxChars)) return undefined
    const data = state & UNICODE_STATE.ascii ? frame.unicode_ascii_data : frame.unicode_compact_data
    const bytes = Number(length) * kind
    const text = bytes === 0 ? Buffer.alloc(0) : this.#memory.read(object + BigInt(data), bytes)
    return text && strText(text, 0, bytes, kind)
  }

  /** The value of an exact int from 0 to Number.MAX_SAFE_INTEGER. */
  int(object: bigint): number | undefined {
    const layout = this.#layout
    if (this.typeOf(object) !== this.#types.int) return undefined
    const words = this.#memory.read(object + BigInt(layout.long_size), layout.long_digits - layout.long_size + 8)
    if (!words) return undefined
    let digits: bigint
    if (layout.long_tag_bits) {
      const tag = words.readBigUInt64LE(0)
      const sign = Number(tag & BigInt(LONG_TAG_SIGN.mask))
      if (sign === LONG_TAG_SIGN.zero) return 0
      if (sign !== 0) return undefined
      digits = tag >> BigInt(layout.long_tag_bits)
    } else {
      digits = words.readBigInt64LE(0)
      if (digits < 0n) return undefined
    }
    if (digits > 2n) return undefined
    let value = 0
    for (let i = 0; i < Number(digits); i++) {
      const digit = words.readUInt32LE(layout.long_digits - layout.long_size + 4 * i)
      if (digit >= 2 ** LONG_DIGIT_BITS) return undefined
      value += digit * 2 ** (LONG_DIGIT_BITS * i)
    }
    return Number.isSafeInteger(value) ? value : undefined
  }

  /** The (key, value) pointers of an exact dict, at most MAX_DICT_ENTRIES of them. */
  *items(dict: bigint): Generator<[key: bigint, value: bigint]> {
    if (this.typeOf(dict) !== this.#types.dict) return
    const keys = this.#memory.pointer(dict + BigInt(this.#layout.dict_keys))
    const values = this.#memory.pointer(dict + BigInt(this.#layout.dict_values))
    if (!keys || values === undefined) return
    for (const [key, value] of this.#entries(keys, values ? values + BigInt(this.#layout.values_items) : 0n)) if (value) yield [key, value]
  }

  /** The value under a str key of an exact dict. */
  get(dict: bigint, name: string): bigint | undefined {
    return this.#find(this.items(dict), [name]).get(name)
  }

  /** The values of an instance's attributes named, those it has. */
  attributes(object: bigint, names: string[]): Map<string, bigint> {
    const type = this.typeOf(object)
    const facts = type && this.#typeFactsOf(type)
    const where = facts && this.#attributesOf(object, facts)
    if (!where) return new Map()
    if ('dict' in where) return this.#find(this.items(where.dict), names)
    return this.#sharedValues(facts.cachedKeys, where.values, where.capacity, names)
  }

  /** Where an instance keeps its attributes: a values array of its type's shared keys (with room for `capacity`), or a dict. */
  #attributesOf(object: bigint, facts: TypeFacts): { values: bigint; capacity: number } | { dict: bigint } | undefined {
    const how = this.#layout.attributes
    const items = BigInt(this.#layout.values_items)
    const has = (flag: number) => (facts.flags & BigInt(flag)) !== 0n
    const word = (offset: number) => this.#memory.pointer(object + BigInt(offset))
    if (how.kind === 'managed' && has(how.flag)) {
      const values = word(how.values)
      return values ? { values: values + items, capacity: Infinity } : { dict: word(how.dict) ?? 0n }
    }
    if (how.kind === 'dict-or-values' && has(how.flag)) {
      const slot = word(how.dict_or_values) ?? 0n
      return slot & 1n ? { values: slot + BigInt(how.values_tag) + items, capacity: Infinity } : { dict: slot }
    }
    if (how.kind === 'inline') {
      const values = object + facts.basicSize
      const header = has(how.inline_flag) ? this.#memory.read(values, this.#layout.values_items) : undefined
      if (header?.[how.values_valid]) return { values: values + items, capacity: header[how.values_capacity]! }
      if (has(how.flag)) return { dict: word(how.dict) ?? 0n }
    }
    return facts.dictOffset > 0n ? { dict: this.#memory.pointer(object + facts.dictOffset) ?? 0n } : undefined
  }

  /** Attributes in a values array of the type's shared keys, no further than `capacity` values. */
  #sharedValues(keys: bigint, values: bigint, capacity: number, names: string[]): Map<string, bigint> {
    let indexes = this.#shared.get(keys)
    if (!indexes) {
      indexes = new Map()
      for (const [key, , index] of this.#entries(keys, 0n)) {
        const text = this.#keyText(key)
        if (text !== undefined && !indexes.has(text)) indexes.set(text, index)
      }
      this.#shared.set(keys, indexes)
    }
    const found = new Map<string, bigint>()
    for (const name of names) {
      const index = indexes.get(name)
      const value = index !== undefined && index < capacity ? this.#memory.pointer(values + 8n * BigInt(index)) : undefined
      if (value) found.set(name, value)
    }
    return found
  }

  #find(items: Iterable<[bigint, bigint]>, names: string[]): Map<string, bigint> {
    const found = new Map<string, bigint>()
    for (const [key, value] of items) {
      const text = this.#keyText(key)
      if (text !== undefined && names.includes(text) && !found.has(text)) found.set(text, value)
      if (found.size === names.length) break
    }
    return found
  }

  #keyText(key: bigint): string | undefined {
    if (!this.#keyTexts.has(key)) this.#keyTexts.set(key, this.str(key, MAX_KEY_CHARS))
    return this.#keyTexts.get(key)
  }

  #typeFactsOf(type: bigint): TypeFacts | undefined {
    if (!this.#typeFacts.has(type)) {
      const layout = this.#layout
      const word = (offset: number) => this.#memory.pointer(type + BigInt(offset))
      const [flags, basicSize, dictOffset, cachedKeys] = [word(layout.type_flags), word(layout.type_basicsize), word(layout.type_dictoffset), word(layout.type_cached_keys)]
      const facts =
        flags === undefined || basicSize === undefined || dictOffset === undefined || cachedKeys === undefined
          ? undefined
          : { flags, basicSize, dictOffset: BigInt.asIntN(64, dictOffset), cachedKeys }
      this.#typeFacts.set(type, facts)
    }
    return this.#typeFacts.get(type)
  }

  /**
   * A keys object's entries that have a key, with their index: (key, value, index) where the
   * value is the entry's or, in a split table (`values` not 0), the values array's at its index.
   */
  *#entries(keys: bigint, values: bigint): Generator<[key: bigint, value: bigint, index: number]> {
    const shape = this.#shape(keys)
    if (!shape) return
    const count = Math.min(shape.count, MAX_DICT_ENTRIES)
    for (let first = 0; first < count; first += ENTRIES_PER_READ) {
      const n = Math.min(ENTRIES_PER_READ, count - first)
      const entries = this.#memory.read(shape.entries + BigInt(first * shape.entry.size), n * shape.entry.size)
      const split = values ? this.#memory.read(values + BigInt(8 * first), 8 * n) : undefined
      if (!entries || (values && !split)) return
      for (let i = 0; i < n; i++) {
        const key = entries.readBigUInt64LE(i * shape.entry.size + shape.entry.key)
        const value = split ? split.readBigUInt64LE(8 * i) : entries.readBigUInt64LE(i * shape.entry.size + shape.entry.value)
        // A deleted entry has no key.
        if (key) yield [key, value, first + i]
      }
    }
  }

  /** Where a keys object's entries are, how many are used, and what each looks like. */
  #shape(keys: bigint): { entries: bigint; count: number; entry: typeof DICT_ENTRY } | undefined {
    const layout = this.#layout.keys
    const header = this.#memory.read(keys, layout.indices)
    if (!header) return undefined
    const count = header.readBigInt64LE(layout.nentries)
    let log2Size: number
    let indexBytes: bigint
    let entry = DICT_ENTRY
    if (layout.form === 'size') {
      const size = header.readBigInt64LE(layout.size)
      log2Size = size.toString(2).length - 1
      if (size <= 0n || size !== 1n << BigInt(log2Size) || log2Size > MAX_LOG2_SIZE) return undefined
      indexBytes = sizedIndexBytes(size)
    } else {
      log2Size = header[layout.log2_size]!
      const log2IndexBytes = header[layout.log2_index_bytes]!
      if (log2Size > MAX_LOG2_SIZE || log2IndexBytes < log2Size || log2IndexBytes > log2Size + 3) return undefined
      indexBytes = 1n << BigInt(log2IndexBytes)
      if (header[layout.kind] !== DICT_KEYS_GENERAL) entry = DICT_UNICODE_ENTRY
    }
    if (count < 0n || count > 1n << BigInt(log2Size)) return undefined
    return { entries: keys + BigInt(layout.indices) + indexBytes, count: Number(count), entry }
  }
}
