// The TypeScript decoders read the records where the C compiler put their fields, and the addon
// carries its libraries inside: nothing but glibc is needed at run time.
import { execFileSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { binding } from '../src/kernel/binding.js'
import * as layout from '../src/kernel/layout.js'

t.test('call_event: sizes, offsets and constants match bpf/usdtrace.h as compiled', async (t) => {
  const c = binding.layouts.call_event
  t.equal(layout.CALL_EVENT.size, c.size, 'size')
  t.same(layout.CALL_EVENT.fields, c.fields, 'field offsets')
  const constants = binding.layouts.constants
  t.equal(layout.NAME_MAX, constants.USDTRACE_NAME_MAX)
  t.equal(layout.PREFIX_MAX, constants.USDTRACE_PREFIX_MAX)
  t.equal(layout.CALL_ENTRY, constants.CALL_ENTRY)
  t.equal(layout.CALL_RETURN, constants.CALL_RETURN)
  t.equal(layout.CALL_NAMES, constants.CALL_NAMES)
  t.equal(layout.CALL_FORGET, constants.CALL_FORGET)
  t.equal(layout.CALL_HAS_DURATION, constants.CALL_HAS_DURATION)
  t.equal(layout.CALL_FILE_TRUNCATED, constants.CALL_FILE_TRUNCATED)
  t.equal(layout.CALL_FUNC_TRUNCATED, constants.CALL_FUNC_TRUNCATED)
})

t.test('syscall_event, latency_stats, function_stats, function_names: as compiled', async (t) => {
  const structs = {
    syscall_event: layout.SYSCALL_EVENT,
    latency_stats: layout.LATENCY_STATS,
    function_stats: layout.FUNCTION_STATS,
    function_names: layout.FUNCTION_NAMES,
  }
  for (const [name, mirror] of Object.entries(structs)) {
    const c = binding.layouts[name]!
    t.equal(mirror.size, c.size, `${name} size`)
    t.same(mirror.fields, c.fields, `${name} field offsets`)
  }
  const constants = binding.layouts.constants
  t.equal(layout.SYSCALL_WANTED, constants.SYSCALL_WANTED)
  t.equal(layout.SYSCALL_NEVER_RETURNS, constants.SYSCALL_NEVER_RETURNS)
  t.equal(layout.SYSCALL_PATH_ARG_SHIFT, constants.SYSCALL_PATH_ARG_SHIFT)
  t.equal(layout.SYSCALL_PATH_ARG_MASK, constants.SYSCALL_PATH_ARG_MASK)
  t.equal(layout.SYSCALL_TABLE_SIZE, constants.USDTRACE_SYSCALL_TABLE_SIZE)
  t.equal(layout.SYSCALL_RETURNED, constants.SYSCALL_RETURNED)
  t.equal(layout.SYSCALL_DETAIL_TRUNCATED, constants.SYSCALL_DETAIL_TRUNCATED)
  t.equal(layout.HISTOGRAM_BUCKETS, constants.USDTRACE_HISTOGRAM_BUCKETS)
})

t.test('gc, import, audit and stats records: sizes, offsets and constants match bpf/usdtrace.h', async (t) => {
  const structs = [
    ['gc_event', layout.GC_EVENT],
    ['import_event', layout.IMPORT_EVENT],
    ['audit_value', layout.AUDIT_VALUE],
    ['audit_event', layout.AUDIT_EVENT],
    ['python_stats', layout.PYTHON_STATS],
  ] as const
  for (const [name, mirror] of structs) {
    const c = binding.layouts[name]!
    t.equal(mirror.size, c.size, `${name} size`)
    t.same(mirror.fields, c.fields, `${name} field offsets`)
  }
  const constants = binding.layouts.constants
  const mirrored = layout as unknown as Record<string, number>
  for (const name of [
    'IMPORT_FOUND',
    'IMPORT_HAS_START',
    'IMPORT_NAME_TRUNCATED',
    'AUDIT_NAME_MAX',
    'AUDIT_VALUE_MAX',
    'AUDIT_ARGS_MAX',
    'AUDIT_ITEMS_MAX',
    'AUDIT_NESTED_ITEMS_MAX',
    'AUDIT_NAME_TRUNCATED',
    'AUDIT_ARGS_DECODED',
    'AUDIT_ARGS_TRUNCATED',
    'AUDIT_VALUE_STR',
    'AUDIT_VALUE_BYTES',
    'AUDIT_VALUE_INT',
    'AUDIT_VALUE_BOOL',
    'AUDIT_VALUE_TUPLE',
    'AUDIT_VALUE_LIST',
    'AUDIT_VALUE_OBJECT',
    'AUDIT_VALUE_CUT',
  ]) {
    t.equal(mirrored[name], constants[name], name)
  }
})

t.test('the addon links libbpf, libelf and zlib statically: ldd shows only glibc', async (t) => {
  const root = fileURLToPath(new URL('..', import.meta.url))
  const addon: string = createRequire(import.meta.url)('node-gyp-build').path(root)
  const needed = execFileSync('ldd', [addon], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0])
    .filter(Boolean)
  const glibc = /^(linux-vdso\.so\.1|libc\.so\.6|\/lib64\/ld-linux-x86-64\.so\.2|ld-linux-x86-64\.so\.2|libm\.so\.6)$/
  t.same(needed.filter((lib) => !glibc.test(lib)), [], `only glibc in: ${needed.join(', ')}`)
  const dynamic = execFileSync('readelf', ['-d', addon], { encoding: 'utf8' })
  t.notMatch(dynamic, /libbpf|libelf|libz|libstdc\+\+/, 'no NEEDED entry for libbpf, libelf, zlib or libstdc++')
})

t.test('usdt_event: size, offsets and cookie constants match bpf/usdtrace.h as compiled', async (t) => {
  const c = binding.layouts.usdt_event
  t.equal(layout.USDT_EVENT.size, c.size, 'size')
  t.same(layout.USDT_EVENT.fields, c.fields, 'field offsets')
  const constants = binding.layouts.constants
  t.equal(layout.USDT_MAX_ARGS, constants.USDT_MAX_ARGS)
  t.equal(layout.USDT_COOKIE_COUNT_MASK, constants.USDT_COOKIE_COUNT_MASK)
  t.equal(layout.USDT_COOKIE_STR_SHIFT, constants.USDT_COOKIE_STR_SHIFT)
  t.equal(layout.USDT_STR_TRUNCATED, constants.USDT_STR_TRUNCATED)
})

t.test('library_call_event: size, offsets and constants match bpf/usdtrace.h as compiled', async (t) => {
  const c = binding.layouts.library_call_event
  t.equal(layout.LIBRARY_CALL_EVENT.size, c.size, 'size')
  t.same(layout.LIBRARY_CALL_EVENT.fields, c.fields, 'field offsets')
  t.equal(layout.LIBRARY_CALL_ARGS, binding.layouts.constants.LIBRARY_CALL_ARGS)
})

t.test('usdt_spec and usdt_arg_spec: size, offsets and constants match bpf/usdtrace.h as compiled', async (t) => {
  for (const [name, mirror] of [['usdt_spec', layout.USDT_SPEC], ['usdt_arg_spec', layout.USDT_ARG_SPEC]] as const) {
    const c = binding.layouts[name]!
    t.equal(mirror.size, c.size, `${name} size`)
    t.same(mirror.fields, c.fields, `${name} field offsets`)
  }
  const constants = binding.layouts.constants
  t.equal(layout.USDT_SPECS_MAX, constants.USDT_SPECS_MAX)
  t.equal(layout.USDT_ARG_CONST, constants.USDT_ARG_CONST)
  t.equal(layout.USDT_ARG_REG, constants.USDT_ARG_REG)
  t.equal(layout.USDT_ARG_REG_DEREF, constants.USDT_ARG_REG_DEREF)
})
