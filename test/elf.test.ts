import { execFileSync } from 'node:child_process'
import { closeSync, copyFileSync, openSync, readFileSync, readSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { TraceError } from '../src/errors.js'
import { coldCodeOffsets, readFunctionSymbols, readPythonVersion, readUsdtProbes } from '../src/process/elf.js'
import {
  codeOffset,
  dynamicEntry,
  dynamicSymbol,
  expectedProbes,
  exportedFunctions,
  loadSegments,
  notes,
  sectionHeaderTable,
  sectionIndex,
  sections,
} from './fixtures/readelf.js'

const PYTHON = '/usr/bin/python3.11'
const LIBPYTHON = '/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0'
const POSTGRES = '/usr/lib/postgresql/15/bin/postgres'
const LIBSTDCXX = '/usr/lib/x86_64-linux-gnu/libstdc++.so.6'
const LIBC = '/usr/lib/x86_64-linux-gnu/libc.so.6'

/** Asserts `fn` throws a TraceError with `code` (and nothing else, such as a RangeError). */
function throwsTrace(t: Test, fn: () => unknown, code: string, message?: RegExp): void {
  let thrown: unknown
  try {
    fn()
  } catch (err) {
    thrown = err
  }
  t.ok(thrown instanceof TraceError, `throws a TraceError (got ${String(thrown)})`)
  t.equal((thrown as TraceError).code, code)
  if (message) t.match((thrown as TraceError).message, message)
}

t.test('python3.11 probes match readelf -n, base-adjusted and mapped through the headers', async (t) => {
  const expected = expectedProbes(PYTHON)
  t.equal(expected.length, 8, 'readelf sees the 8 python probes')
  t.same(readUsdtProbes(PYTHON), expected)
})

t.test('libpython3.11 probes match readelf', async (t) => {
  t.same(readUsdtProbes(LIBPYTHON), expectedProbes(LIBPYTHON))
})

t.test('semaphore file offsets are the .probes section math', async (t) => {
  const probes = sections(PYTHON).find((s) => s.name === '.probes')!
  for (const p of readUsdtProbes(PYTHON)) {
    t.ok(p.semaphore >= probes.addr && p.semaphore < probes.addr + probes.size, `${p.name} semaphore in .probes`)
    t.equal(p.semaphoreFileOffset, p.semaphore - probes.addr + probes.offset, `${p.name} ref_ctr_offset`)
  }
})

t.test('a moved .stapsdt.base shifts every probe and semaphore by the difference', async (t) => {
  const copy = join(t.testdir(), 'python3.11')
  copyFileSync(PYTHON, copy)
  const shdrs = sectionHeaderTable(copy)
  const addrField = shdrs.offset + sectionIndex(copy, '.stapsdt.base') * shdrs.entsize + 16
  const fd = openSync(copy, 'r+')
  const addr = Buffer.alloc(8)
  readSync(fd, addr, 0, 8, addrField)
  // Backwards keeps every shifted semaphore inside an allocated, file-backed section.
  addr.writeBigUInt64LE(addr.readBigUInt64LE(0) - 0x10n)
  writeSync(fd, addr, 0, 8, addrField)
  closeSync(fd)

  const original = readUsdtProbes(PYTHON)
  const moved = readUsdtProbes(copy)
  t.same(moved, expectedProbes(copy), 'matches readelf of the modified copy')
  t.same(
    moved.map((p) => [p.address, p.semaphore]),
    original.map((p) => [p.address - 0x10n, p.semaphore - 0x10n]),
  )
})

t.test('postgres carries every probe readelf lists', async (t) => {
  const probes = readUsdtProbes(POSTGRES)
  t.equal(probes.length, notes(POSTGRES).length)
  t.ok(probes.length >= 70, `${probes.length} probes`)
  t.same(probes, expectedProbes(POSTGRES))
  t.ok(probes.every((p) => p.provider === 'postgresql'))
})

t.test('libstdc++ has libstdcxx:throw and catch', async (t) => {
  const names = readUsdtProbes(LIBSTDCXX).map((p) => `${p.provider}:${p.name}`)
  t.ok(names.includes('libstdcxx:throw'))
  t.ok(names.includes('libstdcxx:catch'))
  t.same(readUsdtProbes(LIBSTDCXX), expectedProbes(LIBSTDCXX))
})

t.test('a probe-less ELF has no probes', async (t) => {
  t.same(readUsdtProbes('/bin/true'), [])
})

t.test('non-ELF, empty and truncated files are MALFORMED_ELF, naming the file and the fix', async (t) => {
  const dir = t.testdir({ 'notes.txt': 'hello, I am not an ELF file\n', empty: '' })
  const text = join(dir, 'notes.txt')
  throwsTrace(t, () => readUsdtProbes(text), 'MALFORMED_ELF', /notes\.txt: not an ELF file \(bad magic\).*libpython/)
  throwsTrace(t, () => readUsdtProbes(join(dir, 'empty')), 'MALFORMED_ELF', /empty file/)

  const image = readFileSync(PYTHON)
  const head = join(dir, 'head')
  writeFileSync(head, image.subarray(0, 4096))
  throwsTrace(
    t,
    () => readUsdtProbes(head),
    'MALFORMED_ELF',
    /truncated or corrupt: the section headers would lie past the end of the file/,
  )

  const shdrs = sectionHeaderTable(PYTHON)
  const cut = join(dir, 'cut')
  writeFileSync(cut, image.subarray(0, shdrs.offset + Math.floor((shdrs.count * shdrs.entsize) / 2)))
  for (const read of [readUsdtProbes, coldCodeOffsets, readPythonVersion, readFunctionSymbols]) {
    throwsTrace(t, () => read(cut), 'MALFORMED_ELF', /cut: truncated/)
  }
})

t.test('32-bit and big-endian ELF are refused as unsupported', async (t) => {
  const dir = t.testdir()
  const image = readFileSync('/bin/true')
  for (const [byte, value, message] of [
    [4, 1, /32-bit ELF is not supported/],
    [5, 2, /big-endian ELF is not supported/],
  ] as const) {
    const copy = join(dir, `variant-${byte}`)
    const bytes = Buffer.from(image)
    bytes[byte] = value
    writeFileSync(copy, bytes)
    throwsTrace(t, () => readUsdtProbes(copy), 'MALFORMED_ELF', message)
  }
})

t.test('a missing file or a directory is INVALID_ARGUMENT', async (t) => {
  throwsTrace(t, () => readUsdtProbes('/nonexistent/python3.11'), 'INVALID_ARGUMENT', /no such file/)
  throwsTrace(t, () => readUsdtProbes('/usr/bin'), 'INVALID_ARGUMENT', /not a regular file/)
})

t.test('corrupted headers, notes and symbols never escape as anything but a TraceError', async (t) => {
  const copy = join(t.testdir(), 'python3.11')
  copyFileSync(PYTHON, copy)
  const shdrs = sectionHeaderTable(copy)
  const secs = sections(copy)
  const regions = [
    { from: 0, size: 64 },
    { from: 64, size: 13 * 56 }, // its 13 program headers
    { from: shdrs.offset, size: shdrs.count * shdrs.entsize },
    ...['.note.stapsdt', '.dynsym', '.dynamic'].map((name) => {
      const s = secs.find((x) => x.name === name)!
      return { from: Number(s.offset), size: Math.min(Number(s.size), 4096) }
    }),
  ]
  // A fixed-seed generator keeps any failure reproducible.
  let seed = 0x5eed
  const random = (n: number) => (seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff) % n
  const fd = openSync(copy, 'r+')
  t.teardown(() => closeSync(fd))
  const unexpected: string[] = []
  let errors = 0
  for (let i = 0; i < 600; i++) {
    const region = regions[i % regions.length]!
    const at = region.from + random(region.size)
    const saved = Buffer.alloc(8)
    readSync(fd, saved, 0, 8, at)
    const garbage = Buffer.from(Array.from({ length: 1 + random(8) }, () => (random(3) === 0 ? 0xff : random(256))))
    writeSync(fd, garbage, 0, garbage.length, at)
    for (const read of [readUsdtProbes, coldCodeOffsets, readPythonVersion, readFunctionSymbols]) {
      try {
        read(copy)
      } catch (err) {
        errors++
        if (!(err instanceof TraceError))
          unexpected.push(`${read.name} with ${garbage.toString('hex')} at ${at}: ${String(err)}`)
      }
    }
    writeSync(fd, saved, 0, 8, at)
  }
  t.same(unexpected, [])
  t.ok(errors > 100, `the corruption was caught in ${errors} reads, so the fuzzing bites`)
})

t.test('readPythonVersion reads Py_Version and falls back to the file name', async (t) => {
  const [major, minor, micro] = JSON.parse(
    execFileSync(PYTHON, ['-c', 'import sys, json; print(json.dumps(sys.version_info[:3]))'], { encoding: 'utf8' }),
  ) as number[]
  t.same(readPythonVersion(PYTHON), { major, minor, micro })
  t.same(readPythonVersion(LIBPYTHON), { major, minor, micro })
  t.ok(dynamicSymbol(PYTHON, 'Py_Version'), 'readelf agrees Py_Version is exported')

  // An ELF without Py_Version (as before 3.11) is versioned by its name alone.
  const dir = t.testdir()
  for (const [name, version] of [
    ['python3.10', { major: 3, minor: 10 }],
    ['libpython3.10.so.1.0', { major: 3, minor: 10 }],
    ['python2.7', { major: 2, minor: 7 }],
    ['true', null],
  ] as const) {
    copyFileSync('/bin/true', join(dir, name))
    t.same(readPythonVersion(join(dir, name)), version, name)
  }
})

t.test('coldCodeOffsets is DT_FINI then DT_INIT, mapped through the LOAD segments', async (t) => {
  for (const path of [PYTHON, LIBPYTHON, LIBSTDCXX]) {
    const expected = ['FINI', 'INIT'].map((tag) => codeOffset(path, dynamicEntry(path, tag)!)!)
    t.same(coldCodeOffsets(path), expected, path)
  }
})

t.test('readFunctionSymbols lists the exported functions readelf --dyn-syms shows, with their file offsets', async (t) => {
  // One line per symbol: tap's deep comparison of thousands of objects takes seconds.
  const line = (f: { name: string; address: bigint; indirect: boolean; fileOffset?: bigint }) =>
    `${f.name} ${f.address} ${f.indirect} ${f.fileOffset}`
  for (const path of [LIBC, LIBPYTHON]) {
    const code = loadSegments(path).filter((s) => s.executable)
    const fileOffset = (vaddr: bigint) => {
      const seg = code.find((s) => s.vaddr <= vaddr && vaddr < s.vaddr + s.filesz)
      return seg && vaddr - seg.vaddr + seg.offset
    }
    const expected = exportedFunctions(path).map((f) => line({ ...f, fileOffset: fileOffset(f.address) }))
    t.ok(expected.length > 1000, `${path} exports ${expected.length} functions`)
    t.equal(readFunctionSymbols(path).map(line).join('\n'), expected.join('\n'), path)
  }
  const libc = readFunctionSymbols(LIBC)
  const write = libc.find((f) => f.name === 'write')!
  t.same(
    libc.filter((f) => f.address === write.address).map((f) => f.name).sort(),
    ['__write', 'write'],
    'aliases share an address',
  )
  t.ok(libc.some((f) => f.name === 'memcpy' && f.indirect), 'memcpy is an IFUNC')
})
