import { IdTable, UNNAMED_ID } from './id-table.js'

/** FNV-1a's 32-bit offset basis and prime. */
const FNV_OFFSET = 0x811c9dc5
const FNV_PRIME = 0x01000193

/**
 * The ids of the strings records carry (module names, audit event names, USDT string
 * arguments), as `IdTable` gives them. A string already seen is found from its bytes in the
 * record, by a hash over them and a comparison with the bytes it was first seen as: a batch's
 * `complete` step makes no string for it.
 */
export class NameTable extends IdTable<string> {
  /** Hash of the bytes to the entry last added with that hash; entries are (bytes, id) pairs. */
  readonly #byHash = new Map<number, number>()
  /** Per entry: the entry added before it with the same hash, or -1. */
  readonly #sameHash: number[] = []
  readonly #entryId: number[] = []
  /** Per entry: where its bytes are in the arena. */
  readonly #entryStart: number[] = []
  readonly #entryEnd: number[] = []
  #arena = new Uint8Array(4096)
  #arenaLength = 0

  /** The id of the UTF-8 string in `bytes[start, end)`, given on its first sighting (or `UNNAMED_ID`). */
  idOf(bytes: Uint8Array, start: number, end: number): number {
    let hash = FNV_OFFSET
    for (let i = start; i < end; i++) hash = Math.imul(hash ^ bytes[i]!, FNV_PRIME)
    const arena = this.#arena
    for (let entry = this.#byHash.get(hash) ?? -1; entry >= 0; entry = this.#sameHash[entry]!) {
      const at = this.#entryStart[entry]!
      if (this.#entryEnd[entry]! - at !== end - start) continue
      let same = true
      for (let i = 0; i < end - start && same; i++) same = arena[at + i] === bytes[start + i]
      if (same) return this.#entryId[entry]!
    }
    return this.#newEntry(hash, bytes, start, end)
  }

  /**
   * A new entry for these bytes: the id of their string, new unless other bytes decoded to the
   * same string (invalid UTF-8 decodes to U+FFFD), so that there is one id per string. A string
   * the table had no room for gets no entry: its bytes are looked at again each time.
   */
  #newEntry(hash: number, bytes: Uint8Array, start: number, end: number): number {
    const name = Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start).toString('utf8')
    const id = this.find(name) ?? this.add(name, name)
    if (id === UNNAMED_ID) return id
    if (this.#arenaLength + end - start > this.#arena.length) {
      const grown = new Uint8Array(Math.max(this.#arena.length * 2, this.#arenaLength + end - start))
      grown.set(this.#arena.subarray(0, this.#arenaLength))
      this.#arena = grown
    }
    this.#arena.set(bytes.subarray(start, end), this.#arenaLength)
    const entry = this.#entryId.length
    this.#entryId.push(id)
    this.#entryStart.push(this.#arenaLength)
    this.#entryEnd.push(this.#arenaLength + end - start)
    this.#sameHash.push(this.#byHash.get(hash) ?? -1)
    this.#byHash.set(hash, entry)
    this.#arenaLength += end - start
    return id
  }
}
