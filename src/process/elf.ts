/**
 * A small, bounds-checked reader for 64-bit little-endian ELF files (x86_64, aarch64): just
 * enough to find USDT probes, exported functions, cold code to park uprobes on, and CPython's
 * version. It reads only
 * the headers and the sections it needs, and every offset and size taken from the file is
 * checked, so a corrupt file becomes a TraceError('MALFORMED_ELF') rather than a RangeError.
 */
import { closeSync, constants, existsSync, openSync, readSync, statSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { TraceError, permissionDenied } from '../errors.js'

/** A USDT probe as its ELF note (`.note.stapsdt`) describes it. */
export interface UsdtProbe {
  /** e.g. `python` */
  provider: string
  /** e.g. `function__entry` */
  name: string
  /** the path the probes were read from, as given */
  object: string
  /** virtual address of the probe site, after the .stapsdt.base prelink adjustment */
  address: bigint
  /** offset of the probe site in the file: what a uprobe attaches to */
  fileOffset: bigint
  /** virtual address of the probe's semaphore, or 0n if it has none */
  semaphore: bigint
  /** offset of the semaphore in the file (the kernel's ref_ctr_offset), or 0n if none */
  semaphoreFileOffset: bigint
  /** raw argument spec, e.g. "8@%rbp 8@%r12 -4@%eax" (x86-64), "8@x19 -4@[sp, 60]" (AArch64) */
  args: string
  /** the file's e_machine (62: x86-64, 183: AArch64), whose registers the argument spec names */
  machine: number
}

/** A function an ELF file exports through .dynsym. */
export interface FunctionSymbol {
  name: string
  /** virtual address of its first instruction (for an indirect function, of its resolver) */
  address: bigint
  /** offset of that instruction in the file: what a uprobe attaches to */
  fileOffset: bigint
  /** a GNU indirect function (IFUNC): the loader calls it to pick the implementation callers get */
  indirect: boolean
}

/** A CPython version; `micro` only when the interpreter states it (`Py_Version`), not from a file name. */
export interface PythonVersion {
  /** 3 */
  major: number
  /** e.g. 11 */
  minor: number
  /** e.g. 2 */
  micro?: number
}

const ELF_FIX =
  'point at an ELF executable or shared library (for CPython: the python executable or the libpython shared library)'

const ELFCLASS64 = 2
const ELFDATA2LSB = 1
const EHDR_SIZE = 64
const PHDR_SIZE = 56
const SHDR_SIZE = 64
const SYM_SIZE = 24
const DYN_SIZE = 16
const RELA_SIZE = 24

const PT_LOAD = 1
const PT_DYNAMIC = 2
const PT_INTERP = 3
const PF_X = 1
const SHT_SYMTAB = 2
const SHT_RELA = 4
const SHT_NOBITS = 8
const SHT_DYNSYM = 11
const SHF_ALLOC = 2n
const SHN_UNDEF = 0
const STT_FUNC = 2
const STT_GNU_IFUNC = 10
const DT_NULL = 0n
const DT_INIT = 12n
const DT_FINI = 13n
const DT_NEEDED = 1n
const DT_STRTAB = 5n
const DT_STRSZ = 10n
const DT_RPATH = 15n
const DT_RUNPATH = 29n
const NT_STAPSDT = 3
// R_X86_64_RELATIVE and R_AARCH64_RELATIVE: the load base plus the addend.
const RELATIVE_RELOCATIONS = new Set([8, 1027])

interface Segment {
  type: number
  flags: number
  offset: bigint
  vaddr: bigint
  filesz: bigint
}

interface Section {
  name: string
  type: number
  flags: bigint
  addr: bigint
  offset: bigint
  size: bigint
  link: number
  addralign: bigint
}

interface ElfSymbol {
  value: bigint
  size: bigint
}

function malformed(path: string, problem: string): TraceError {
  return new TraceError('MALFORMED_ELF', `${path}: ${problem}; ${ELF_FIX}`)
}

function hex(n: bigint): string {
  return `0x${n.toString(16)}`
}

/** An open ELF file with its program and section headers parsed; close() it when done. */
class ElfImage {
  machine = 0
  segments: Segment[] = []
  sections: Section[] = []

  private constructor(
    readonly path: string,
    private readonly fd: number,
    private readonly size: bigint,
  ) {}

  static open(path: string): ElfImage {
    const size = regularFileSize(path)
    const fd = openOrExplain(path)
    const elf = new ElfImage(path, fd, size)
    try {
      elf.parseHeaders()
      return elf
    } catch (err) {
      elf.close()
      throw err
    }
  }

  close(): void {
    closeSync(this.fd)
  }

  fail(problem: string): TraceError {
    return malformed(this.path, problem)
  }

  /** Reads `length` bytes at `offset`, refusing any range that is not wholly inside the file. */
  bytes(offset: bigint, length: bigint, what: string): Buffer {
    if (offset < 0n || length < 0n || offset + length > this.size) {
      throw this.fail(`truncated or corrupt: ${what} would lie past the end of the file (${this.size} bytes)`)
    }
    const buf = Buffer.alloc(Number(length))
    let done = 0
    while (done < buf.length) {
      const n = readSync(this.fd, buf, done, buf.length - done, Number(offset) + done)
      if (n === 0) throw this.fail(`truncated: the file shrank while ${what} was being read`)
      done += n
    }
    return buf
  }

  sectionData(section: Section): Buffer {
    if (section.type === SHT_NOBITS) return Buffer.alloc(0)
    return this.bytes(section.offset, section.size, `section ${section.name}`)
  }

  section(name: string): Section | undefined {
    return this.sections.find((s) => s.name === name)
  }

  /** File offset of code at `vaddr`, via the executable PT_LOAD segment holding it (as libbpf does). */
  codeOffset(vaddr: bigint): bigint | undefined {
    const seg = this.segments.find(
      (s) => s.type === PT_LOAD && (s.flags & PF_X) !== 0 && s.vaddr <= vaddr && vaddr < s.vaddr + s.filesz,
    )
    return seg && vaddr - seg.vaddr + seg.offset
  }

  /**
   * File offset of data at `vaddr`: via the allocated section holding it (as libbpf does for
   * semaphores), else the PT_LOAD segment whose file image holds it.
   */
  dataOffset(vaddr: bigint): bigint | undefined {
    const sec = this.sections.find(
      (s) => (s.flags & SHF_ALLOC) !== 0n && s.type !== SHT_NOBITS && s.addr <= vaddr && vaddr < s.addr + s.size,
    )
    if (sec) return vaddr - sec.addr + sec.offset
    const seg = this.segments.find((s) => s.type === PT_LOAD && s.vaddr <= vaddr && vaddr < s.vaddr + s.filesz)
    return seg && vaddr - seg.vaddr + seg.offset
  }

  private parseHeaders(): void {
    const ident = this.bytes(0n, this.size < 16n ? this.size : 16n, 'the ELF identification')
    if (ident.length === 0) throw this.fail('empty file, not an ELF file')
    if (!ident.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]).subarray(0, ident.length))) {
      throw this.fail('not an ELF file (bad magic)')
    }
    if (ident.length < 16) throw this.fail('truncated: the ELF header extends past the end of the file')
    if (ident[4] !== ELFCLASS64) {
      throw this.fail(`${ident[4] === 1 ? '32-bit ELF' : `ELF class ${ident[4]}`} is not supported (only 64-bit ELF)`)
    }
    if (ident[5] !== ELFDATA2LSB) {
      throw this.fail(
        `${ident[5] === 2 ? 'big-endian ELF' : `ELF data encoding ${ident[5]}`} is not supported (only little-endian)`,
      )
    }
    const h = this.bytes(0n, BigInt(EHDR_SIZE), 'the ELF header')
    this.machine = h.readUInt16LE(18)
    this.segments = this.parseSegments(h.readBigUInt64LE(32), h.readUInt16LE(54), h.readUInt16LE(56))
    this.sections = this.parseSections(
      h.readBigUInt64LE(40),
      h.readUInt16LE(58),
      h.readUInt16LE(60),
      h.readUInt16LE(62),
    )
  }

  private parseSegments(phoff: bigint, entsize: number, count: number): Segment[] {
    if (count === 0) return []
    if (entsize < PHDR_SIZE) throw this.fail(`program header size ${entsize} is too small`)
    const table = this.bytes(phoff, BigInt(entsize * count), 'the program headers')
    return Array.from({ length: count }, (_, i) => {
      const at = i * entsize
      return {
        type: table.readUInt32LE(at),
        flags: table.readUInt32LE(at + 4),
        offset: table.readBigUInt64LE(at + 8),
        vaddr: table.readBigUInt64LE(at + 16),
        filesz: table.readBigUInt64LE(at + 32),
      }
    })
  }

  private parseSections(shoff: bigint, entsize: number, count: number, nameIndex: number): Section[] {
    if (count === 0 || shoff === 0n) return []
    if (entsize < SHDR_SIZE) throw this.fail(`section header size ${entsize} is too small`)
    const table = this.bytes(shoff, BigInt(entsize * count), 'the section headers')
    const raw = Array.from({ length: count }, (_, i) => {
      const at = i * entsize
      return {
        nameOffset: table.readUInt32LE(at),
        name: '',
        type: table.readUInt32LE(at + 4),
        flags: table.readBigUInt64LE(at + 8),
        addr: table.readBigUInt64LE(at + 16),
        offset: table.readBigUInt64LE(at + 24),
        size: table.readBigUInt64LE(at + 32),
        link: table.readUInt32LE(at + 40),
        addralign: table.readBigUInt64LE(at + 48),
      }
    })
    const names = raw[nameIndex]
    if (!names) throw this.fail(`section name table index ${nameIndex} is out of range (${count} sections)`)
    const strings = this.sectionData({ ...names, name: 'section name table' })
    return raw.map(({ nameOffset, ...s }) => ({
      ...s,
      name: cString(strings, nameOffset, () => this.fail(`section name at offset ${nameOffset} is out of range`)),
    }))
  }

  /** Looks `name` up in .dynsym, then .symtab; undefined symbols don't count. */
  symbol(name: string): ElfSymbol | undefined {
    for (const type of [SHT_DYNSYM, SHT_SYMTAB]) {
      for (const table of this.sections.filter((s) => s.type === type)) {
        const found = this.searchSymbolTable(table, name)
        if (found) return found
      }
    }
    return undefined
  }

  private searchSymbolTable(table: Section, name: string): ElfSymbol | undefined {
    const strtab = this.sections[table.link]
    if (!strtab) throw this.fail(`symbol table ${table.name} links to missing string table ${table.link}`)
    const syms = this.sectionData(table)
    const strings = this.sectionData(strtab)
    const wanted = Buffer.from(`${name}\0`)
    for (let at = 0; at + SYM_SIZE <= syms.length; at += SYM_SIZE) {
      const nameOffset = syms.readUInt32LE(at)
      const undefinedHere = syms.readUInt16LE(at + 6) === SHN_UNDEF
      if (undefinedHere || nameOffset + wanted.length > strings.length) continue
      if (strings.compare(wanted, 0, wanted.length, nameOffset, nameOffset + wanted.length) === 0) {
        return { value: syms.readBigUInt64LE(at + 8), size: syms.readBigUInt64LE(at + 16) }
      }
    }
    return undefined
  }

  /**
   * The pointer the loader leaves at `vaddr`, as a link-time address: the addend of a relative
   * relocation there (shared libraries, PIE), else the bytes themselves (fixed-address programs).
   */
  pointerAt(vaddr: bigint): bigint | undefined {
    for (const table of this.sections.filter((s) => s.type === SHT_RELA)) {
      const entries = this.sectionData(table)
      for (let at = 0; at + RELA_SIZE <= entries.length; at += RELA_SIZE) {
        if (entries.readBigUInt64LE(at) !== vaddr) continue
        const type = Number(entries.readBigUInt64LE(at + 8) & 0xffffffffn)
        return RELATIVE_RELOCATIONS.has(type) ? entries.readBigUInt64LE(at + 16) : undefined
      }
    }
    const offset = this.dataOffset(vaddr)
    return offset === undefined ? undefined : this.bytes(offset, 8n, `the pointer at ${hex(vaddr)}`).readBigUInt64LE(0)
  }

  /** The d_val of the first dynamic entry tagged `tag`, from the PT_DYNAMIC segment. */
  dynamicValue(tag: bigint): bigint | undefined {
    return this.dynamicValues(tag)[0]
  }

  /** The d_vals of every dynamic entry tagged `tag`, in order. */
  dynamicValues(tag: bigint): bigint[] {
    const dyn = this.segments.find((s) => s.type === PT_DYNAMIC)
    if (!dyn) return []
    const entries = this.bytes(dyn.offset, dyn.filesz, 'the dynamic segment')
    const values: bigint[] = []
    for (let at = 0; at + DYN_SIZE <= entries.length; at += DYN_SIZE) {
      const entryTag = entries.readBigInt64LE(at)
      if (entryTag === DT_NULL) break
      if (entryTag === tag) values.push(entries.readBigUInt64LE(at + 8))
    }
    return values
  }

  /** The strings of the dynamic entries tagged `tag` (DT_NEEDED, DT_RUNPATH...), from DT_STRTAB. */
  dynamicStrings(tag: bigint): string[] {
    const table = this.dynamicValue(DT_STRTAB)
    const offset = table === undefined ? undefined : this.dataOffset(table)
    if (offset === undefined) return []
    const size = this.dynamicValue(DT_STRSZ) ?? 0n
    const strings = this.bytes(offset, size, 'the dynamic string table')
    return this.dynamicValues(tag).map((at) =>
      cString(strings, Number(at), () => this.fail(`a dynamic entry's string at ${at} lies outside the dynamic string table`)),
    )
  }
}

function regularFileSize(path: string): bigint {
  try {
    const st = statSync(path, { bigint: true })
    // Opening a device or FIFO could block or have side effects, so refuse before open().
    if (!st.isFile()) throw new TraceError('INVALID_ARGUMENT', `${path}: not a regular file; ${ELF_FIX}`)
    return st.size
  } catch (err) {
    throw explainOpenError(path, err)
  }
}

function openOrExplain(path: string): number {
  try {
    return openSync(path, constants.O_RDONLY)
  } catch (err) {
    throw explainOpenError(path, err)
  }
}

function explainOpenError(path: string, err: unknown): unknown {
  if (err instanceof TraceError) return err
  const code = (err as NodeJS.ErrnoException).code
  if (code === 'ENOENT' || code === 'ENOTDIR') {
    return new TraceError('INVALID_ARGUMENT', `${path}: no such file; ${ELF_FIX}`, { cause: err })
  }
  if (code === 'EACCES' || code === 'EPERM') return permissionDenied(`reading ${path}`, err)
  return new TraceError('INVALID_ARGUMENT', `${path}: cannot be read (${code ?? String(err)}); ${ELF_FIX}`, {
    cause: err,
  })
}

/** The NUL-terminated string at `offset`; `fail` builds the error for a missing terminator. */
function cString(buf: Buffer, offset: number, fail: () => TraceError): string {
  const end = offset < buf.length ? buf.indexOf(0, offset) : -1
  if (end < 0) throw fail()
  return buf.toString('utf8', offset, end)
}

function withElf<T>(path: string, use: (elf: ElfImage) => T): T {
  const elf = ElfImage.open(path)
  try {
    return use(elf)
  } finally {
    elf.close()
  }
}

interface StapsdtNote {
  pc: bigint
  base: bigint
  semaphore: bigint
  provider: string
  name: string
  args: string
}

function alignUp(n: number, align: number): number {
  return Math.ceil(n / align) * align
}

/** Walks the note entries of .note.stapsdt, keeping the SystemTap probe descriptors. */
function parseStapsdtNotes(elf: ElfImage, section: Section): StapsdtNote[] {
  const data = elf.sectionData(section)
  // ELF64 notes are 4-byte aligned unless the section asks for 8 (gelf_getnote does the same).
  const align = section.addralign === 8n ? 8 : 4
  const notes: StapsdtNote[] = []
  for (let at = 0; at + 12 <= data.length;) {
    const nameSize = data.readUInt32LE(at)
    const descSize = data.readUInt32LE(at + 4)
    const type = data.readUInt32LE(at + 8)
    const nameAt = at + 12
    const descAt = nameAt + alignUp(nameSize, align)
    if (descAt + descSize > data.length) {
      throw elf.fail(`truncated: the note at offset ${at} of .note.stapsdt overruns the section`)
    }
    const owner = data.toString('latin1', nameAt, nameAt + nameSize).replace(/\0+$/, '')
    if (owner === 'stapsdt' && type === NT_STAPSDT) {
      notes.push(parseStapsdtDesc(elf, data.subarray(descAt, descAt + descSize), at))
    }
    at = descAt + alignUp(descSize, align)
  }
  return notes
}

function parseStapsdtDesc(elf: ElfImage, desc: Buffer, noteOffset: number): StapsdtNote {
  const fail = () => elf.fail(`the probe descriptor at offset ${noteOffset} of .note.stapsdt is truncated`)
  if (desc.length < 24) throw fail()
  const provider = cString(desc, 24, fail)
  const nameAt = 24 + Buffer.byteLength(provider) + 1
  const name = cString(desc, nameAt, fail)
  const args = cString(desc, nameAt + Buffer.byteLength(name) + 1, fail)
  return {
    pc: desc.readBigUInt64LE(0),
    base: desc.readBigUInt64LE(8),
    semaphore: desc.readBigUInt64LE(16),
    provider,
    name,
    args,
  }
}

/**
 * The USDT probes of an ELF file, in note order. Addresses are moved by the difference between
 * the actual .stapsdt.base address and the one recorded in each note, which is how SystemTap and
 * libbpf undo prelinking.
 */
export function readUsdtProbes(path: string): UsdtProbe[] {
  return withElf(path, (elf) => {
    const notes = elf.section('.note.stapsdt')
    if (!notes) return []
    const base = elf.section('.stapsdt.base')?.addr ?? 0n
    return parseStapsdtNotes(elf, notes).map((note) => toProbe(elf, note, base))
  })
}

function toProbe(elf: ElfImage, note: StapsdtNote, base: bigint): UsdtProbe {
  const shift = base !== 0n && note.base !== 0n ? base - note.base : 0n
  const label = `probe ${note.provider}:${note.name}`
  const address = note.pc + shift
  const fileOffset = elf.codeOffset(address)
  if (fileOffset === undefined) throw elf.fail(`${label} at ${hex(address)} is not inside an executable segment`)
  const semaphore = note.semaphore === 0n ? 0n : note.semaphore + shift
  const semaphoreFileOffset = semaphore === 0n ? 0n : elf.dataOffset(semaphore)
  if (semaphoreFileOffset === undefined) {
    throw elf.fail(`${label} has its semaphore at ${hex(semaphore)}, outside the file's data`)
  }
  return {
    provider: note.provider,
    name: note.name,
    object: elf.path,
    address,
    fileOffset,
    semaphore,
    semaphoreFileOffset,
    args: note.args,
    machine: elf.machine,
  }
}

/**
 * The functions an ELF file exports: the defined FUNC and IFUNC symbols of .dynsym, in table
 * order, with the file offsets uprobes attach to. A name appears once per symbol version (e.g.
 * glibc's old and new memcpy), and several names can share an address (aliases such as write
 * and __write). Symbols outside every executable segment are left out.
 */
export function readFunctionSymbols(path: string): FunctionSymbol[] {
  return withElf(path, (elf) => {
    const functions: FunctionSymbol[] = []
    for (const table of elf.sections.filter((s) => s.type === SHT_DYNSYM)) {
      const strtab = elf.sections[table.link]
      if (!strtab) throw elf.fail(`symbol table ${table.name} links to missing string table ${table.link}`)
      const syms = elf.sectionData(table)
      const strings = elf.sectionData(strtab)
      for (let at = 0; at + SYM_SIZE <= syms.length; at += SYM_SIZE) {
        const type = syms.readUInt8(at + 4) & 0xf
        const address = syms.readBigUInt64LE(at + 8)
        if ((type !== STT_FUNC && type !== STT_GNU_IFUNC) || syms.readUInt16LE(at + 6) === SHN_UNDEF || address === 0n) {
          continue
        }
        const fileOffset = elf.codeOffset(address)
        if (fileOffset === undefined) continue
        const nameOffset = syms.readUInt32LE(at)
        const name = cString(strings, nameOffset, () =>
          elf.fail(`the name of symbol ${at / SYM_SIZE} of ${table.name} lies outside its string table`),
        )
        functions.push({ name, address, fileOffset, indirect: type === STT_GNU_IFUNC })
      }
    }
    return functions
  })
}

/**
 * Whether the file is a program a process can run (it names an interpreter, or is statically
 * linked) rather than a shared library, which processes only map.
 */
export function isProgram(path: string): boolean {
  return withElf(path, (elf) => elf.segments.some((s) => s.type === PT_INTERP) || !elf.segments.some((s) => s.type === PT_DYNAMIC))
}

/**
 * File offsets of code a process practically never runs after start-up: the DT_FINI function
 * (else `_fini`), then DT_INIT (else `_init`). A uprobe parked there raises a semaphore through
 * its ref_ctr_offset without ever firing. Only offsets inside an executable segment are returned.
 */
export function coldCodeOffsets(path: string): bigint[] {
  return withElf(path, (elf) => {
    const addresses = [
      elf.dynamicValue(DT_FINI) ?? elf.symbol('_fini')?.value,
      elf.dynamicValue(DT_INIT) ?? elf.symbol('_init')?.value,
    ]
    const offsets = addresses.map((a) => (a ? elf.codeOffset(a) : undefined))
    return [...new Set(offsets.filter((o): o is bigint => o !== undefined))]
  })
}

/**
 * The file offset of the function a data symbol points to at `slot` bytes into it, e.g. a
 * CPython type's tp_dealloc; undefined when the symbol, the pointer or the code is missing.
 */
export function readFunctionPointer(path: string, symbol: string, slot: number): bigint | undefined {
  return withElf(path, (elf) => {
    const sym = elf.symbol(symbol)
    if (!sym || sym.size < BigInt(slot + 8)) return undefined
    const target = elf.pointerAt(sym.value + BigInt(slot))
    return target ? elf.codeOffset(target) : undefined
  })
}

/** A data symbol: where the file links it, and the start of its initial value. */
export interface DataSymbol {
  address: bigint
  size: bigint
  /** Its first bytes as the file holds them (at most the length asked for, at most its size). */
  bytes: Buffer
}

/** The named data symbols of an ELF file (.dynsym, then .symtab) that it has, with their first `length` bytes. */
export function readDataSymbols(path: string, names: readonly string[], length: number): Map<string, DataSymbol> {
  return withElf(path, (elf) => {
    const found = new Map<string, DataSymbol>()
    for (const name of names) {
      const sym = elf.symbol(name)
      const offset = sym && elf.dataOffset(sym.value)
      if (!sym || offset === undefined) continue
      const wanted = sym.size < BigInt(length) ? sym.size : BigInt(length)
      found.set(name, { address: sym.value, size: sym.size, bytes: elf.bytes(offset, wanted, `symbol ${name}`) })
    }
    return found
  })
}

/**
 * The address the file links its byte at `fileOffset` to (through the PT_LOAD segment holding
 * it): with where a process mapped that byte, the distance it was loaded at.
 */
export function linkAddress(path: string, fileOffset: bigint): bigint | undefined {
  return withElf(path, (elf) => {
    const seg = elf.segments.find((s) => s.type === PT_LOAD && s.offset <= fileOffset && fileOffset < s.offset + s.filesz)
    return seg && fileOffset - seg.offset + seg.vaddr
  })
}

/** Where the dynamic loader looks after a program's own run paths (x86-64 and aarch64 Debian, Fedora, Alpine). */
const LIBRARY_DIRECTORIES = ['/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu', '/lib/aarch64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/lib64', '/usr/local/lib', '/usr/lib', '/lib']

/**
 * The shared library a program needs whose name matches `pattern` (e.g. its libpython), found as
 * the dynamic loader finds it: in the program's DT_RPATH or DT_RUNPATH ($ORIGIN expanded), then
 * in the usual library directories. Undefined when it needs none or it is nowhere there.
 */
export function neededLibrary(path: string, pattern: RegExp): string | undefined {
  return withElf(path, (elf) => {
    const name = elf.dynamicStrings(DT_NEEDED).find((needed) => pattern.test(needed))
    if (!name) return undefined
    const origin = dirname(path)
    const runPaths = [...elf.dynamicStrings(DT_RPATH), ...elf.dynamicStrings(DT_RUNPATH)]
      .flatMap((list) => list.split(':'))
      .map((dir) => dir.replace(/\$(?:ORIGIN|\{ORIGIN\})/g, origin))
    return [...runPaths, ...LIBRARY_DIRECTORIES].map((dir) => join(dir, name)).find((candidate) => existsSync(candidate))
  })
}

/**
 * CPython's version, from the `Py_Version` symbol (PY_VERSION_HEX, exported since 3.11), else
 * from a file name such as python3.10 or libpython3.10.so.1.0 (then without micro); null if
 * neither says.
 */
export function readPythonVersion(path: string): PythonVersion | null {
  return withElf(path, readPyVersionSymbol) ?? versionFromFileName(path)
}

function readPyVersionSymbol(elf: ElfImage): PythonVersion | null {
  const sym = elf.symbol('Py_Version')
  if (!sym || (sym.size !== 4n && sym.size !== 8n)) return null
  const offset = elf.dataOffset(sym.value)
  if (offset === undefined) return null
  // Little-endian, so the low 32 bits holding PY_VERSION_HEX come first for either size.
  const hexVersion = elf.bytes(offset, 4n, 'the Py_Version value').readUInt32LE(0)
  const level = (hexVersion >>> 4) & 0xf
  const major = hexVersion >>> 24
  // Only 0xA (alpha), 0xB, 0xC (candidate) and 0xF (final) are release levels; anything else is not a version.
  if (major < 3 || ![0xa, 0xb, 0xc, 0xf].includes(level)) return null
  return { major, minor: (hexVersion >>> 16) & 0xff, micro: (hexVersion >>> 8) & 0xff }
}

function versionFromFileName(path: string): PythonVersion | null {
  const m = /^(?:lib)?python(\d+)\.(\d+)/.exec(basename(path))
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : null
}
