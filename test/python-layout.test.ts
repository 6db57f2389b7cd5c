// The CPython struct offsets python_names.bpf.h reads, measured again with ctypes on every
// CPython installed here, and code_dealloc found the way readelf shows it.
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import t from 'tap'
import { inspectBinary } from '../src/process/inspect.js'
import { CODE_LAYOUTS, codeDeallocHooks } from '../src/cpython/layout.js'
import { DEBIAN_PYTHON } from './fixtures/processes.js'
import { loadSegments, sections } from './fixtures/readelf.js'

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
