/**
 * From an offset into a code object's instructions to its source line, as CPython itself answers
 * (PyCode_Addr2Line, which frame.f_lineno uses): by walking the code's line table. 3.10 keeps
 * (offset delta, line delta) byte pairs (Objects/lnotab_notes.txt); 3.11 on keep the location
 * table of Objects/locations.md. Each table is decoded once, into ranges searched by offset.
 */

/** A line table as CPython stores it, for one code object. */
export interface LineTableSource {
  /** 10 for the 3.10 format; anything later reads the location table. */
  minor: number
  bytes: Buffer
  firstLine: number
  /** The table was cut short: offsets past its end have no known line. */
  truncated: boolean
}

/** Ranges of instruction offsets (bytes) and their lines; -1 where CPython has none. */
export class LineTable {
  #ends: number[] = []
  #lines: number[] = []
  #firstLine: number
  #decoded = false
  #source: LineTableSource

  constructor(source: LineTableSource) {
    this.#source = source
    this.#firstLine = source.firstLine
  }

  /**
   * The line at `offset` bytes into the instructions: -1 when CPython has no line for it (its
   * f_lineno is then None), undefined when the table was cut before that offset. A negative
   * offset is a frame that has not run yet, whose line is the function's first.
   */
  lineAt(offset: number): number | undefined {
    if (offset < 0) return this.#firstLine
    if (!this.#decoded) this.#decode()
    let low = 0
    let high = this.#ends.length
    while (low < high) {
      const middle = (low + high) >>> 1
      if (this.#ends[middle]! <= offset) low = middle + 1
      else high = middle
    }
    if (low < this.#ends.length) return this.#lines[low]
    return this.#source.truncated ? undefined : -1
  }

  #decode(): void {
    this.#decoded = true
    if (this.#source.minor === 10) this.#decodePairs()
    else this.#decodeLocations()
  }

  #add(end: number, line: number): void {
    this.#ends.push(end)
    this.#lines.push(line)
  }

  /** 3.10: each entry is an unsigned offset delta and a signed line delta, -128 for no line. */
  #decodePairs(): void {
    const bytes = this.#source.bytes
    let end = 0
    let line = this.#firstLine
    for (let at = 0; at + 1 < bytes.length; at += 2) {
      const start = end
      end += bytes[at]!
      const delta = bytes.readInt8(at + 1)
      if (delta !== -128) line += delta
      if (end > start) this.#add(end, delta === -128 ? -1 : line)
    }
  }

  /**
   * 3.11 on: an entry starts with a byte whose top bit is set; bits 3-6 say its kind, bits 0-2
   * how many 2-byte code units it covers, less one. Only the line is wanted, so columns are skipped.
   */
  #decodeLocations(): void {
    const bytes = this.#source.bytes
    let end = 0
    let line = this.#firstLine
    let at = 0
    while (at < bytes.length) {
      const first = bytes[at]!
      const kind = (first >> 3) & 15
      end += ((first & 7) + 1) * 2
      let delta = 0
      if (kind === 13 || kind === 14) delta = signedVarint(bytes, at + 1)
      else if (kind >= 10 && kind <= 12) delta = kind - 10
      line += delta
      this.#add(end, kind === 15 ? -1 : line)
      at++
      while (at < bytes.length && (bytes[at]! & 0x80) === 0) at++
    }
  }
}

/** Objects/locations.md: 6-bit chunks, low first, bit 6 set when another follows; the sign in bit 0. */
function signedVarint(bytes: Buffer, at: number): number {
  let value = 0
  let shift = 0
  for (; at < bytes.length; at++) {
    const chunk = bytes[at]!
    value |= (chunk & 63) << shift
    shift += 6
    if (!(chunk & 64)) break
  }
  return value & 1 ? -(value >>> 1) : value >>> 1
}
