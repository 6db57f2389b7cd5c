// The CPython struct offsets python_names.bpf.h reads, measured again with ctypes on every
// CPython installed here, and code_dealloc found the way readelf shows it.
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { inspectBinary } from '../src/process/inspect.js'
import { readDataSymbols, readPythonVersion } from '../src/process/elf.js'
import {
  CODE_LAYOUTS,
  DEBUG_OFFSETS_BYTES,
  DICT_ENTRY,
  DICT_KEYS_GENERAL,
  DICT_UNICODE_ENTRY,
  LONG_DIGIT_BITS,
  LONG_TAG_SIGN,
  UNICODE_STATE,
  codeDeallocHooks,
  sizedIndexBytes,
  parseDebugOffsets,
  threadNamesLayout,
} from '../src/cpython/layout.js'
import { stackReadingOrReason } from '../src/cpython/runtime.js'
import { DEBIAN_PYTHON, STACK_PYTHONS } from './fixtures/processes.js'
import { dynamicSymbol, loadSegments, sections } from './fixtures/readelf.js'
import { compile, tmpDir } from './programs/tools.js'

const LIBPYTHON = '/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0'

// Where a code object keeps co_filename and co_name, and where a str keeps its state, its
// ASCII data and its UTF-8 buffer (what PyUnicode_AsUTF8 returns, the probes' arguments).
const MEASURE = `
import ctypes, struct, sys
def word(address): return struct.unpack('<Q', ctypes.string_at(address, 8))[0]
def first(obj, target, start): return next(o for o in range(start, 256, 8) if word(id(obj) + o) == id(target))
def f(): pass
code = f.__code__
ascii, other = "ascii_name", "n\\u00e4me"
ctypes.pythonapi.PyUnicode_AsUTF8.restype = ctypes.c_void_p
utf8 = ctypes.pythonapi.PyUnicode_AsUTF8(ctypes.py_object(other))
print(sys.version_info[1], first(code, code.co_filename, 16), first(code, code.co_name, 16),
      next(o for o in range(16, 80, 8) if ctypes.string_at(id(ascii) + o, len(ascii)) == ascii.encode()),
      next(o for o in range(16, 96, 8) if word(id(other) + o) == utf8),
      ctypes.string_at(id(ascii) + 32, 1)[0] & 0x60, ctypes.string_at(id(other) + 32, 1)[0] & 0x60)
`

function installedPythons(): string[] {
  const root = '/root/.pyenv/versions'
  const pyenv = existsSync(root) ? readdirSync(root).map((v) => `${root}/${v}/bin/python`) : []
  return [DEBIAN_PYTHON, ...pyenv].filter((python) => existsSync(python))
}

t.test('the table matches every listed CPython installed here', async (t) => {
  let measured = 0
  for (const python of installedPythons()) {
    const out = execFileSync(python, ['-c', 'import sys; print(sys.version_info[:2] >= (3, 0) and sys.version_info[1])'], { encoding: 'utf8' }).trim()
    const layout = CODE_LAYOUTS[Number(out)]
    if (out === 'False' || !layout) continue
    const [, file, name, asciiData, utf8, asciiBits, otherBits] = execFileSync(python, ['-c', MEASURE], { encoding: 'utf8' }).trim().split(' ').map(Number)
    t.same(
      { file, name, asciiData, utf8, asciiBits, otherBits },
      {
        file: layout.code_filename_offset,
        name: layout.code_name_offset,
        asciiData: layout.unicode_ascii_data_offset,
        utf8: layout.unicode_utf8_offset,
        asciiBits: 0x60,
        otherBits: 0x20,
      },
      `${python} (3.${out})`,
    )
    measured++
  }
  t.ok(measured >= 1, `${measured} interpreters measured`)
})

/** The file offset of PyCode_Type's tp_dealloc, from readelf's symbols, relocations and headers. */
function codeDeallocByReadelf(path: string): bigint {
  const readelf = (...args: string[]) => execFileSync('readelf', [...args, path], { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' }, maxBuffer: 64 << 20 })
  const symbol = /^\s*\d+: ([0-9a-f]+)\s+\d+ OBJECT\s+GLOBAL\s+DEFAULT\s+\d+ PyCode_Type$/m.exec(readelf('-sW'))
  const slot = BigInt(`0x${symbol![1]}`) + 48n
  const relocation = new RegExp(`^0*${slot.toString(16)}\\s+\\S+\\s+R_X86_64_RELATIVE\\s+([0-9a-f]+)`, 'm').exec(readelf('-rW'))
  let target: bigint
  if (relocation) {
    target = BigInt(`0x${relocation[1]}`)
  } else {
    const data = sections(path).find((s) => s.addr <= slot && slot < s.addr + s.size)!
    target = readFileSync(path).readBigUInt64LE(Number(slot - data.addr + data.offset))
  }
  const code = loadSegments(path).find((s) => s.executable && s.vaddr <= target && target < s.vaddr + s.filesz)!
  return target - code.vaddr + code.offset
}

t.test('code_dealloc is found through PyCode_Type, in a program and in a shared library', async (t) => {
  for (const path of [DEBIAN_PYTHON, LIBPYTHON]) {
    const hooks = codeDeallocHooks([inspectBinary(path)])
    t.equal(hooks?.sites[0]?.fileOffset, codeDeallocByReadelf(path), path)
    t.same(hooks?.constants, CODE_LAYOUTS[11], `${path}: the 3.11 layout`)
  }
})

/** Where a CPython's headers are, and which file holds its _PyRuntime (the executable, or libpython). */
const ABOUT = `
import json, os, sys, sysconfig
config = sysconfig.get_config_var
print(json.dumps({"include": sysconfig.get_paths()["include"], "executable": os.path.realpath(sys.executable),
                  "libpython": os.path.join(config("LIBDIR"), config("INSTSONAME") or "")}))
`

/**
 * 3.10's dict keys, which only Objects/dict-common.h describes (not installed), measured on live
 * dicts: the word that is each dict's entry count, the one that is a power of two with room for
 * them, where the indices start and how wide each is (the entries after them holding each item's
 * hash, key and value, in order), and where a split table's values array has its values.
 */
const MEASURE_3_10_KEYS = `
import ctypes, json, struct, sys
dict_keys, dict_values = int(sys.argv[1]), int(sys.argv[2])
def word(address): return struct.unpack('<q', ctypes.string_at(address, 8))[0]
def keys(d): return word(id(d) + dict_keys)
dicts = [{'k%d' % i: 'v%d' % i for i in range(n)} for n in (3, 40, 300)]
def room(n, d): return n > 0 and n & (n - 1) == 0 and n * 2 // 3 >= len(d)
nentries = next(o for o in range(8, 80, 8) if all(word(keys(d) + o) == len(d) for d in dicts))
size = next(o for o in range(8, 80, 8) if all(room(word(keys(d) + o), d) for d in dicts))
def shaped(d, indices, width, entry, key, value):
    entries = keys(d) + indices + word(keys(d) + size) * width
    return all((word(at + key), word(at + value), word(at + entry - key - value)) == (id(k), id(v), hash(k))
               for i, (k, v) in enumerate(d.items()) for at in [entries + i * entry])
indices, entry, key, value = next((i, e, k, v) for i in range(nentries + 8, 96, 8) for e in (16, 24, 32)
                                  for k in range(0, e, 8) for v in range(0, e, 8)
                                  if k != v and all(any(shaped(d, i, w, e, k, v) for w in (1, 2, 4, 8)) for d in dicts))
index_bytes = [[word(keys(d) + size), word(keys(d) + size) * w] for d in dicts for w in (1, 2, 4, 8) if shaped(d, indices, w, entry, key, value)]
class Split:
    def __init__(self): self.a, self.b = 'va', 'vb'
Split()
split = Split().__dict__
values = word(id(split) + dict_values)
items = next(o for o in range(0, 32, 8) if values and [word(values + o + 8 * i) for i in range(2)] == [id(split['a']), id(split['b'])])
print(json.dumps({"keys": {"form": "size", "size": size, "nentries": nentries, "indices": indices},
                  "entry": {"size": entry, "key": key, "value": value}, "values_items": items, "index_bytes": index_bytes}))
`

t.test("threading's names: every CPython's layout is what its headers say", async (t) => {
  const dir = tmpDir(t, 'layout')
  for (const python of STACK_PYTHONS) {
    const about = JSON.parse(execFileSync(python, ['-c', ABOUT], { encoding: 'utf8' })) as Record<string, string>
    const file = dynamicSymbol(about.executable!, '_PyRuntime') ? about.executable! : about.libpython!
    const reading = stackReadingOrReason({ interpreterObject: file, version: readPythonVersion(file) })
    if (typeof reading === 'string' || !reading.threadNames) {
      t.fail(`${python}: no way to read its threads' names`, { reading })
      continue
    }
    const program = compile('thread_names_layout.c', join(dir, `layout-${reading.version.minor}`), [`-I${about.include}`])
    const header = JSON.parse(execFileSync(program, { encoding: 'utf8' })) as Record<string, any>
    if (!header.keys) {
      Object.assign(header, JSON.parse(execFileSync(python, ['-c', MEASURE_3_10_KEYS, header.dict_keys, header.dict_values], { encoding: 'utf8' })))
    }
    const { entry, unicode_entry, keys_general, index_bytes, long_digit_bits, long_digit_size, long_sign, unicode_kind_bits, unicode_compact, unicode_ascii, pointer_size, inline_values, tagged_values_bit, ...layout } = header
    const named = `${python} (3.${reading.version.minor}, ${reading.source})`
    t.same(reading.threadNames.layout, layout, `${named}: the layout`)
    t.same(
      { entry, long_digit_bits, long_digit_size, pointer_size },
      { entry: DICT_ENTRY, long_digit_bits: LONG_DIGIT_BITS, long_digit_size: 4, pointer_size: 8 },
      `${named}: its dict entries, int digits, and pointers`,
    )
    if (index_bytes) {
      t.same(
        index_bytes.map(([size]: [number]) => [size, Number(sizedIndexBytes(BigInt(size)))]),
        index_bytes,
        `${named}: its indices' bytes, for tables of ${index_bytes.map(([size]: [number]) => size).join(', ')} slots`,
      )
    }
    if (long_sign) t.same(long_sign, LONG_TAG_SIGN, `${named}: an int's sign in lv_tag`)
    if (unicode_entry) t.same({ unicode_entry, keys_general }, { unicode_entry: DICT_UNICODE_ENTRY, keys_general: DICT_KEYS_GENERAL }, `${named}: its str-keyed entries`)
    const kindShift = Math.log2(unicode_kind_bits & -unicode_kind_bits)
    t.same(
      { kindShift, kindMask: unicode_kind_bits >> kindShift, compact: unicode_compact, ascii: unicode_ascii },
      UNICODE_STATE,
      `${named}: a str's state bits`,
    )
    if (inline_values !== undefined) t.equal(inline_values, 0, `${named}: inline values start at tp_basicsize`)
    if (tagged_values_bit !== undefined) t.equal(tagged_values_bit, 1, `${named}: a values pointer is told by bit 0`)
    const symbol = (name: string) => dynamicSymbol(file, name)?.value
    t.same(
      reading.threadNames.types,
      { str: symbol('PyUnicode_Type'), int: symbol('PyLong_Type'), dict: symbol('PyDict_Type'), module: symbol('PyModule_Type') },
      `${named}: the types objects are checked against, where readelf has them`,
    )
  }
})

t.test("the frame walk: every CPython's layout is what its headers say", async (t) => {
  const dir = tmpDir(t, 'frames')
  for (const python of STACK_PYTHONS) {
    const about = JSON.parse(execFileSync(python, ['-c', ABOUT], { encoding: 'utf8' })) as Record<string, string>
    const file = dynamicSymbol(about.executable!, '_PyRuntime') ? about.executable! : about.libpython!
    const reading = stackReadingOrReason({ interpreterObject: file, version: readPythonVersion(file) })
    if (typeof reading === 'string') {
      t.fail(`${python}: its stacks cannot be read: ${reading}`)
      continue
    }
    const program = compile('frame_layout.c', join(dir, `frames-${reading.version.minor}`), [`-I${about.include}`])
    const header = JSON.parse(execFileSync(program, { encoding: 'utf8' })) as Record<string, number>
    const measured = Object.fromEntries(Object.keys(header).map((field) => [field, reading.layout[field as keyof typeof reading.layout]]))
    t.same(measured, header, `${python} (3.${reading.version.minor}, ${reading.source})`)
  }
})

t.test('_Py_DebugOffsets that contradict themselves give no names layout', async (t) => {
  const libpython = '/root/.pyenv/versions/3.13.0/lib/libpython3.13.so.1.0'
  const offsets = parseDebugOffsets(readDataSymbols(libpython, ['_PyRuntime'], DEBUG_OFFSETS_BYTES).get('_PyRuntime')!.bytes)!
  t.ok(threadNamesLayout(13, offsets), 'as 3.13.0 has them, they give one')
  const fields = offsets.fields
  for (const [field, size] of [
    ['interpreter_state.imports_modules', 'interpreter_state.size'],
    ['dict_object.ma_keys', 'dict_object.size'],
    ['long_object.ob_digit', 'long_object.size'],
  ] as const) {
    t.equal(threadNamesLayout(13, { ...offsets, fields: { ...fields, [field]: fields[size] } }), undefined, `${field} at ${size}`)
  }
  t.equal(threadNamesLayout(14, offsets), undefined, 'a version whose objects usdtrace does not know')
})
