/**
 * Everything usdtrace knows about how CPython lays out its structs in memory, in one place: what
 * names a function by identity on the call probes (bpf/python_names.bpf.h), what decodes audit
 * arguments (bpf/audit.bpf.c), what walks a thread's frames (bpf/python_stack.bpf.h), and what
 * finds the threads' `threading` names in user space (src/cpython/threads.ts).
 *
 * Offsets are in bytes for 64-bit builds (x86-64 and aarch64 alike). Where a version describes
 * itself (3.13 on: `_Py_DebugOffsets` at the start of `_PyRuntime`) the layout is read from the
 * interpreter; otherwise it comes from the tables below, each offset with the header it is from.
 * test/python-layout.test.ts measures the tables again against the headers of every CPython
 * installed (offsetof in a program compiled against them).
 */
import { LAYOUT_NONE, PYTHON_OFFSETS } from '../kernel/abi.js'
import { readFunctionPointer, type PythonVersion } from '../process/elf.js'
import type { Inspection } from '../process/inspect.js'

// ---------------------------------------------------------------------------------------------
// Functions named by identity (the call probes): where code_dealloc is, and what it reads.

interface CodeLayout {
  code_filename_offset: number
  code_name_offset: number
  unicode_state_offset: number
  unicode_ascii_data_offset: number
  unicode_utf8_offset: number
}

// PyASCIIObject before 3.12: refcnt, type, length, hash, state, wstr; then utf8_length, utf8.
const UNICODE_BEFORE_3_12 = { unicode_state_offset: 32, unicode_ascii_data_offset: 48, unicode_utf8_offset: 56 }

/** By 3.x minor: the versions that have function__entry/return (3.12 to 3.14 have none). */
export const CODE_LAYOUTS: Readonly<Record<number, CodeLayout>> = {
  6: { code_filename_offset: 96, code_name_offset: 104, ...UNICODE_BEFORE_3_12 },
  7: { code_filename_offset: 96, code_name_offset: 104, ...UNICODE_BEFORE_3_12 },
  8: { code_filename_offset: 104, code_name_offset: 112, ...UNICODE_BEFORE_3_12 },
  9: { code_filename_offset: 104, code_name_offset: 112, ...UNICODE_BEFORE_3_12 },
  10: { code_filename_offset: 104, code_name_offset: 112, ...UNICODE_BEFORE_3_12 },
  11: { code_filename_offset: 112, code_name_offset: 120, ...UNICODE_BEFORE_3_12 },
}

// PyTypeObject: ob_refcnt, ob_type, ob_size, tp_name, tp_basicsize, tp_itemsize, tp_dealloc.
const TP_DEALLOC_OFFSET = 48

/** Where to hook code_dealloc in one target: the interpreter object's file offset of it. */
export function codeDeallocOffset(target: Pick<Inspection, 'interpreterObject'>): bigint | undefined {
  return readFunctionPointer(target.interpreterObject, 'PyCode_Type', TP_DEALLOC_OFFSET)
}

/** Where to hook code_dealloc in each target, and the constants that go with it. */
export interface CodeDeallocHooks {
  constants: CodeLayout
  sites: { target: Inspection; fileOffset: bigint }[]
}

/** The hooks for every target, or null when a target's version is not listed or the targets differ in layout. */
export function codeDeallocHooks(targets: Inspection[]): CodeDeallocHooks | null {
  const sites: CodeDeallocHooks['sites'] = []
  let constants: CodeLayout | undefined
  for (const target of targets) {
    const layout = target.version?.major === 3 ? CODE_LAYOUTS[target.version.minor] : undefined
    if (!layout || !target.probeObject || (constants && constants !== layout)) return null
    const fileOffset = readFunctionPointer(target.probeObject, 'PyCode_Type', TP_DEALLOC_OFFSET)
    if (fileOffset === undefined) return null
    constants = layout
    sites.push({ target, fileOffset })
  }
  return constants ? { constants, sites } : null
}

// ---------------------------------------------------------------------------------------------
// Objects as audit events pass them (bpf/audit.bpf.c's constants of the same names).

/**
 * The layouts of 64-bit builds from 3.8 (the first with audit events) through 3.11, unchanged in
 * that span: Include/cpython/unicodeobject.h's PyASCIIObject still has `wstr` (ASCII text at 48)
 * and its state has interned:2, kind:3, compact:1, ascii:1, ready:1; longs are a signed digit
 * count and 30-bit digits. 3.12 removed `wstr` and `ready` and reworked longs, so later versions
 * stream names without arguments until their layout is added here.
 */
const OBJECT_LAYOUT_3_8_TO_3_11 = {
  ob_type_offset: 8,
  var_size_offset: 16,
  tp_name_offset: 24,
  tp_flags_offset: 168,
  tuple_items_offset: 24,
  list_items_offset: 24,
  str_length_offset: 16,
  str_state_offset: 32,
  // compact (1 << 5), ascii (1 << 6), ready (1 << 7)
  str_ascii_state_mask: 0xe0,
  str_ascii_data_offset: 48,
  bytes_data_offset: 32,
  long_digits_offset: 24,
  long_digit_bits: 30,
}

export type ObjectLayout = typeof OBJECT_LAYOUT_3_8_TO_3_11

/** How audit arguments are read in this version, if usdtrace knows. */
export function objectLayout(version: PythonVersion | null): ObjectLayout | undefined {
  if (version?.major === 3 && version.minor >= 8 && version.minor <= 11) return OBJECT_LAYOUT_3_8_TO_3_11
  return undefined
}

// ---------------------------------------------------------------------------------------------
// Thread states and frames (struct python_offsets in bpf/usdtrace.h, read by python_stack.bpf.h).

/** An offset the version does not have. */
export const NO_OFFSET = LAYOUT_NONE

/** Where one CPython version keeps what a frame walk reads: struct python_offsets, field by field. */
export type FrameLayout = { [Field in keyof typeof PYTHON_OFFSETS.fields]: number }

/** The fields of a FrameLayout that say where something is, as opposed to a value or a flag. */
type Offsets = Omit<FrameLayout, 'frame_window' | 'code_window' | 'owner_cstack' | 'owner_generator' | 'thread_id_is_pthread' | 'instruction_is_index'>

const FRAME_FIELDS = ['frame_previous', 'frame_code', 'frame_instruction', 'frame_owner'] as const
const CODE_FIELDS = ['code_filename', 'code_name', 'code_first_line', 'code_linetable', 'code_first_traceable'] as const
type WindowField = (typeof FRAME_FIELDS)[number] | (typeof CODE_FIELDS)[number] | 'object_type'

/** The bytes each field the walk reads through a window takes (3.10's f_lasti, an int, read as 8 too). */
const FIELD_SIZES: Record<WindowField, number> = {
  frame_previous: 8,
  frame_code: 8,
  frame_instruction: 8,
  frame_owner: 1,
  code_filename: 8,
  code_name: 8,
  code_first_line: 4,
  code_linetable: 8,
  code_first_traceable: 4,
  object_type: 8,
}

/** A frame walk's layout: the offsets, with how much of a frame and of a code object to read. */
function frameLayout(offsets: Offsets, flags: Pick<FrameLayout, 'owner_cstack' | 'owner_generator' | 'thread_id_is_pthread' | 'instruction_is_index'>): FrameLayout {
  // Each window reaches the end of its last field.
  const end = (field: WindowField) => (offsets[field] === NO_OFFSET ? 0 : offsets[field] + FIELD_SIZES[field])
  return {
    ...offsets,
    ...flags,
    frame_window: Math.max(...FRAME_FIELDS.map(end)),
    code_window: Math.max(end('object_type'), ...CODE_FIELDS.map(end)),
  }
}


// PyObject: ob_refcnt, ob_type (Include/object.h). PyBytesObject: PyObject_VAR_HEAD (ob_size at
// 16), ob_shash, ob_sval (Include/cpython/bytesobject.h), the same from 3.10 to 3.13.
const OBJECTS = { object_type: 8, bytes_size: 16, bytes_data: 32 }
// Include/cpython/unicodeobject.h: PyASCIIObject is ob_refcnt, ob_type, length, hash, state
// (and wstr before 3.12); PyCompactUnicodeObject adds utf8_length, utf8 (and wstr_length before 3.12).
const UNICODE_3_10_TO_3_11 = { unicode_state: 32, unicode_length: 16, unicode_ascii_data: 48, unicode_compact_data: 72 }
const UNICODE_FROM_3_12 = { unicode_state: 32, unicode_length: 16, unicode_ascii_data: 40, unicode_compact_data: 56 }
// Include/internal/pycore_frame.h, enum _frameowner: GENERATOR = 1; 3.12 added CSTACK = 3 for
// the shim frames it puts between a C call and the Python frames it runs.
const NO_OWNER = 0xff

/**
 * 3.10 to 3.12, which do not describe themselves. Each offset is offsetof() in the header named
 * (Include/..., of that version); test/python-layout.test.ts compiles the same offsetof()s.
 */
export const FRAME_LAYOUTS: Readonly<Record<number, FrameLayout>> = {
  10: frameLayout(
    {
      runtime_interpreters: 32, // internal/pycore_runtime.h: _PyRuntimeState.interpreters.head
      interpreter_next: 0, // internal/pycore_interp.h: PyInterpreterState.next
      interpreter_threads: 8, // .tstate_head
      thread_next: 8, // cpython/pystate.h: PyThreadState.next
      thread_id: 176, // .thread_id: the pthread, 3.10 has no native_thread_id
      thread_frame: 24, // .frame
      cframe_current_frame: NO_OFFSET,
      frame_previous: 24, // cpython/frameobject.h: PyFrameObject.f_back
      frame_code: 32, // .f_code
      frame_instruction: 96, // .f_lasti (int, in 2-byte code units)
      frame_owner: NO_OFFSET,
      code_filename: 104, // cpython/code.h: PyCodeObject.co_filename
      code_name: 112, // .co_name (3.10 has no co_qualname)
      code_first_line: 40, // .co_firstlineno
      code_linetable: 120, // .co_linetable
      code_instructions: NO_OFFSET,
      code_first_traceable: NO_OFFSET,
      ...OBJECTS,
      ...UNICODE_3_10_TO_3_11,
    },
    { owner_cstack: NO_OWNER, owner_generator: NO_OWNER, thread_id_is_pthread: 1, instruction_is_index: 1 },
  ),
  11: frameLayout(
    {
      runtime_interpreters: 40, // internal/pycore_runtime.h: _PyRuntimeState.interpreters.head
      interpreter_next: 0, // internal/pycore_interp.h: PyInterpreterState.next
      interpreter_threads: 16, // .threads.head
      thread_next: 8, // cpython/pystate.h: PyThreadState.next
      thread_id: 160, // .native_thread_id
      thread_frame: 56, // .cframe
      cframe_current_frame: 8, // cpython/pystate.h: _PyCFrame.current_frame
      frame_previous: 48, // internal/pycore_frame.h: _PyInterpreterFrame.previous
      frame_code: 32, // .f_code
      frame_instruction: 56, // .prev_instr
      frame_owner: 69, // .owner
      code_filename: 112, // cpython/code.h: PyCodeObject.co_filename
      code_name: 128, // .co_qualname
      code_first_line: 72, // .co_firstlineno
      code_linetable: 136, // .co_linetable
      code_instructions: 184, // .co_code_adaptive
      code_first_traceable: 168, // ._co_firsttraceable
      ...OBJECTS,
      ...UNICODE_3_10_TO_3_11,
    },
    { owner_cstack: NO_OWNER, owner_generator: 1, thread_id_is_pthread: 0, instruction_is_index: 0 },
  ),
  12: frameLayout(
    {
      runtime_interpreters: 40, // internal/pycore_runtime.h: _PyRuntimeState.interpreters.head
      interpreter_next: 0, // internal/pycore_interp.h: PyInterpreterState.next
      interpreter_threads: 72, // .threads.head
      thread_next: 8, // cpython/pystate.h: PyThreadState.next
      thread_id: 144, // .native_thread_id
      thread_frame: 56, // .cframe
      cframe_current_frame: 0, // cpython/pystate.h: _PyCFrame.current_frame
      frame_previous: 8, // internal/pycore_frame.h: _PyInterpreterFrame.previous
      frame_code: 0, // .f_code
      frame_instruction: 56, // .prev_instr
      frame_owner: 70, // .owner
      code_filename: 112, // cpython/code.h: PyCodeObject.co_filename
      code_name: 128, // .co_qualname
      code_first_line: 68, // .co_firstlineno
      code_linetable: 136, // .co_linetable
      code_instructions: 192, // .co_code_adaptive
      code_first_traceable: 176, // ._co_firsttraceable
      ...OBJECTS,
      ...UNICODE_FROM_3_12,
    },
    { owner_cstack: 3, owner_generator: 1, thread_id_is_pthread: 0, instruction_is_index: 0 },
  ),
}

/**
 * What `_Py_DebugOffsets` leaves out but the walk uses, for the versions usdtrace knows: the frame
 * owners (internal/pycore_frame.h) and _co_firsttraceable (cpython/code.h). A newer version
 * walks without them: the shims' f_executable is not a code object, which the walk checks anyway,
 * and frames not yet started are kept rather than guessed at.
 */
const BEYOND_DEBUG_OFFSETS: Readonly<Record<number, Pick<FrameLayout, 'owner_cstack' | 'owner_generator' | 'code_first_traceable'>>> = {
  13: { owner_cstack: 3, owner_generator: 1, code_first_traceable: 184 },
}

/** The cookie `_PyRuntime` starts with from 3.13 on. */
export const DEBUG_OFFSETS_COOKIE = 'xdebugpy'

/**
 * `_Py_DebugOffsets` after its cookie: u64s, in this order (Include/internal/pycore_runtime.h in
 * 3.13, pycore_debug_offsets.h later). A later version that appends sections still reads right;
 * one that inserts fields is caught by the checks in debugOffsetsLayout().
 */
const DEBUG_OFFSETS_FIELDS = [
  'version',
  'free_threaded',
  ...['size', 'finalizing', 'interpreters_head'].map((f) => `runtime_state.${f}`),
  ...[
    'size', 'id', 'next', 'threads_head', 'gc', 'imports_modules', 'sysdict', 'builtins', 'ceval_gil',
    'gil_runtime_state', 'gil_runtime_state_enabled', 'gil_runtime_state_locked', 'gil_runtime_state_holder',
  ].map((f) => `interpreter_state.${f}`),
  ...['size', 'prev', 'next', 'interp', 'current_frame', 'thread_id', 'native_thread_id', 'datastack_chunk', 'status'].map(
    (f) => `thread_state.${f}`,
  ),
  ...['size', 'previous', 'executable', 'instr_ptr', 'localsplus', 'owner'].map((f) => `interpreter_frame.${f}`),
  ...[
    'size', 'filename', 'name', 'qualname', 'linetable', 'firstlineno', 'argcount', 'localsplusnames', 'localspluskinds',
    'co_code_adaptive',
  ].map((f) => `code_object.${f}`),
  ...['size', 'ob_type'].map((f) => `pyobject.${f}`),
  ...['size', 'tp_name', 'tp_repr', 'tp_flags'].map((f) => `type_object.${f}`),
  ...['size', 'ob_item', 'ob_size'].map((f) => `tuple_object.${f}`),
  ...['size', 'ob_item', 'ob_size'].map((f) => `list_object.${f}`),
  ...['size', 'ma_keys', 'ma_values'].map((f) => `dict_object.${f}`),
  ...['size', 'ob_fval'].map((f) => `float_object.${f}`),
  ...['size', 'lv_tag', 'ob_digit'].map((f) => `long_object.${f}`),
  ...['size', 'ob_size', 'ob_sval'].map((f) => `bytes_object.${f}`),
  ...['size', 'state', 'length', 'asciiobject_size'].map((f) => `unicode_object.${f}`),
] as const

type DebugOffsetName = (typeof DEBUG_OFFSETS_FIELDS)[number]

/** The bytes of `_Py_DebugOffsets` a layout is read from: its cookie and every field above. */
export const DEBUG_OFFSETS_BYTES = 8 + 8 * DEBUG_OFFSETS_FIELDS.length

/** `_Py_DebugOffsets` read from the start of `_PyRuntime` (its initial bytes in the ELF file). */
export interface DebugOffsets {
  /** PY_VERSION_HEX */
  version: number
  freeThreaded: boolean
  fields: Record<DebugOffsetName, number>
}

/** Parses `_Py_DebugOffsets`; undefined when `bytes` does not start with its cookie. */
export function parseDebugOffsets(bytes: Buffer): DebugOffsets | undefined {
  if (bytes.length < DEBUG_OFFSETS_BYTES || bytes.toString('latin1', 0, 8) !== DEBUG_OFFSETS_COOKIE) return undefined
  const fields = {} as Record<DebugOffsetName, number>
  DEBUG_OFFSETS_FIELDS.forEach((name, i) => {
    const value = bytes.readBigUInt64LE(8 + 8 * i)
    fields[name] = value > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(value)
  })
  return { version: fields.version, freeThreaded: fields.free_threaded !== 0, fields }
}

/**
 * The frame walk's layout from `_Py_DebugOffsets`, or the reason it cannot be trusted: every
 * offset must lie inside the size its section states, and fit the walk's windows.
 */
export function debugOffsetsLayout(offsets: DebugOffsets, minor: number): FrameLayout | string {
  const f = offsets.fields
  const inside: [DebugOffsetName, DebugOffsetName][] = [
    ['runtime_state.interpreters_head', 'runtime_state.size'],
    ['interpreter_state.next', 'interpreter_state.size'],
    ['interpreter_state.threads_head', 'interpreter_state.size'],
    ['thread_state.next', 'thread_state.size'],
    ['thread_state.native_thread_id', 'thread_state.size'],
    ['thread_state.current_frame', 'thread_state.size'],
    ['interpreter_frame.previous', 'interpreter_frame.size'],
    ['interpreter_frame.executable', 'interpreter_frame.size'],
    ['interpreter_frame.instr_ptr', 'interpreter_frame.size'],
    ['interpreter_frame.owner', 'interpreter_frame.size'],
    ['code_object.filename', 'code_object.size'],
    ['code_object.qualname', 'code_object.size'],
    ['code_object.linetable', 'code_object.size'],
    ['code_object.firstlineno', 'code_object.size'],
    ['code_object.co_code_adaptive', 'code_object.size'],
    ['unicode_object.state', 'unicode_object.asciiobject_size'],
    ['unicode_object.length', 'unicode_object.asciiobject_size'],
    ['bytes_object.ob_size', 'bytes_object.ob_sval'],
  ]
  const outside = inside.find(([field, size]) => !(f[field] < f[size]))
  if (outside) return `_Py_DebugOffsets says ${outside[0]} is ${f[outside[0]]}, outside ${outside[1]} (${f[outside[1]]})`
  const known = BEYOND_DEBUG_OFFSETS[minor]
  const layout = frameLayout(
    {
      runtime_interpreters: f['runtime_state.interpreters_head'],
      interpreter_next: f['interpreter_state.next'],
      interpreter_threads: f['interpreter_state.threads_head'],
      thread_next: f['thread_state.next'],
      thread_id: f['thread_state.native_thread_id'],
      thread_frame: f['thread_state.current_frame'],
      cframe_current_frame: NO_OFFSET,
      frame_previous: f['interpreter_frame.previous'],
      frame_code: f['interpreter_frame.executable'],
      frame_instruction: f['interpreter_frame.instr_ptr'],
      frame_owner: f['interpreter_frame.owner'],
      code_filename: f['code_object.filename'],
      code_name: f['code_object.qualname'],
      code_first_line: f['code_object.firstlineno'],
      code_linetable: f['code_object.linetable'],
      code_instructions: f['code_object.co_code_adaptive'],
      code_first_traceable: known?.code_first_traceable ?? NO_OFFSET,
      object_type: f['pyobject.ob_type'],
      unicode_state: f['unicode_object.state'],
      unicode_length: f['unicode_object.length'],
      unicode_ascii_data: f['unicode_object.asciiobject_size'],
      // PyCompactUnicodeObject adds utf8_length and utf8 to PyASCIIObject (since 3.12).
      unicode_compact_data: f['unicode_object.asciiobject_size'] + 16,
      bytes_size: f['bytes_object.ob_size'],
      bytes_data: f['bytes_object.ob_sval'],
    },
    {
      owner_cstack: known?.owner_cstack ?? NO_OWNER,
      owner_generator: known?.owner_generator ?? NO_OWNER,
      thread_id_is_pthread: 0,
      instruction_is_index: 0,
    },
  )
  const biggest = Math.max(...Object.values(layout).filter((value) => value !== NO_OFFSET))
  if (layout.frame_window > 128 || layout.code_window > 256 || biggest >= NO_OFFSET) {
    return `_Py_DebugOffsets places a frame or code field further than usdtrace reads (frame ${layout.frame_window} bytes, code ${layout.code_window})`
  }
  return layout
}

// ---------------------------------------------------------------------------------------------
// Objects read in user space for the threads' `threading` names (src/cpython/threads.ts):
// sys.modules['threading']._active, each Thread's _name and _native_id.

/** PyASCIIObject.state (cpython/unicodeobject.h): interned:2, kind:3, compact:1, ascii:1, the same bits in 3.10 to 3.13. */
export const UNICODE_STATE = { kindShift: 2, kindMask: 7, compact: 1 << 5, ascii: 1 << 6 }

/** PyDictKeyEntry (Objects/dict-common.h in 3.10, internal/pycore_dict.h on): me_hash, me_key, me_value; every entry in 3.10, DICT_KEYS_GENERAL's from 3.11. */
export const DICT_ENTRY = { size: 24, key: 8, value: 16 }
/** PyDictUnicodeEntry (internal/pycore_dict.h, 3.11 on): me_key, me_value, for DICT_KEYS_UNICODE and DICT_KEYS_SPLIT. */
export const DICT_UNICODE_ENTRY = { size: 16, key: 0, value: 8 }
/** internal/pycore_dict.h's DictKeysKind: the one whose entries are PyDictKeyEntry. */
export const DICT_KEYS_GENERAL = 0

/** PyLong_SHIFT (cpython/longintrepr.h): 30-bit digits, in uint32s, on every 64-bit build. */
export const LONG_DIGIT_BITS = 30
/** The sign in lv_tag's low bits, from 3.12 (internal/pycore_long.h: SIGN_MASK, SIGN_ZERO, SIGN_NEGATIVE; 0 is positive). */
export const LONG_TAG_SIGN = { mask: 3, zero: 1, negative: 2 }

/**
 * The bytes of 3.10's indices for a table of `size` slots: each index the smallest of 1, 2, 4 or
 * 8 bytes that holds `size` (DK_IXSIZE in Objects/dictobject.c).
 */
export function sizedIndexBytes(size: bigint): bigint {
  return size * (size <= 0xffn ? 1n : size <= 0xffffn ? 2n : size <= 0xffffffffn ? 4n : 8n)
}

/** A PyDictKeysObject's header: its size, where its entries start, how many are used. */
export type DictKeysLayout =
  /** 3.10: dk_size, a Py_ssize_t; indices 1, 2, 4 or 8 bytes wide by it; every entry a PyDictKeyEntry. */
  | { form: 'size'; size: number; nentries: number; indices: number }
  /** 3.11 on: dk_log2_size, dk_log2_index_bytes (the indices' bytes), dk_kind (which entries), all bytes. */
  | { form: 'log2'; log2_size: number; log2_index_bytes: number; kind: number; nentries: number; indices: number }

/**
 * Where an instance of a Python class keeps its attributes. A type without the flag(s) named
 * keeps a dict at tp_dictoffset. `values` arrays hold the values of the type's shared keys
 * (PyHeapTypeObject.ht_cached_keys), by entry index.
 */
export type InstanceAttributes =
  /** 3.10: a dict at tp_dictoffset, its values split (ma_values) while it shares its type's keys. */
  | { kind: 'dict-offset' }
  /** 3.11, Py_TPFLAGS_MANAGED_DICT: a values array or, once made, a dict, in the words before the object. */
  | { kind: 'managed'; flag: number; values: number; dict: number }
  /** 3.12, Py_TPFLAGS_MANAGED_DICT: one word before the object, a dict, or a values array's address less `values_tag` (bit 0 set). */
  | { kind: 'dict-or-values'; flag: number; dict_or_values: number; values_tag: number }
  /**
   * 3.13, Py_TPFLAGS_INLINE_VALUES: a values array right after the object (at tp_basicsize) while
   * its `valid` byte says so; with Py_TPFLAGS_MANAGED_DICT, the dict once made, before the object.
   */
  | { kind: 'inline'; flag: number; inline_flag: number; dict: number; values_capacity: number; values_valid: number }

/** Where one CPython version keeps what reading `threading`'s names takes. */
export interface ThreadNamesLayout {
  /** sys.modules: PyInterpreterState.modules, imports.modules from 3.12. */
  interpreter_modules: number
  /** PyModuleObject.md_dict */
  module_dict: number
  /** PyTypeObject.tp_basicsize, tp_flags, tp_dictoffset, PyHeapTypeObject.ht_cached_keys */
  type_basicsize: number
  type_flags: number
  type_dictoffset: number
  type_cached_keys: number
  /** PyDictObject.ma_keys, ma_values (NULL, or the values of a split table) */
  dict_keys: number
  dict_values: number
  keys: DictKeysLayout
  /** Where a values array's pointers start (PyDictValues.values; 3.10's ma_values is the array itself). */
  values_items: number
  attributes: InstanceAttributes
  /** A PyLong's size word (ob_size, a signed digit count; from 3.12 lv_tag: count << long_tag_bits | sign), and its digits. */
  long_size: number
  long_tag_bits: number
  long_digits: number
}

// The same from 3.10 to 3.13: PyModuleObject (internal/pycore_moduleobject.h), PyTypeObject's
// fields (cpython/object.h), PyDictObject (cpython/dictobject.h), and a PyLong's size word and
// digits (longintrepr.h, cpython/longintrepr.h from 3.11).
const OBJECT_HEADERS = {
  module_dict: 16,
  type_basicsize: 32,
  type_flags: 168,
  type_dictoffset: 288,
  dict_keys: 32,
  dict_values: 40,
  long_size: 16,
  long_digits: 24,
}
// internal/pycore_dict.h: dk_refcnt, dk_log2_size, dk_log2_index_bytes, dk_kind, dk_version, dk_usable, dk_nentries, dk_indices.
const KEYS_FROM_3_11: DictKeysLayout = { form: 'log2', log2_size: 8, log2_index_bytes: 9, kind: 10, nentries: 24, indices: 32 }
// object.h: Py_TPFLAGS_MANAGED_DICT is (1 << 4) from 3.11.
const MANAGED_DICT_FLAG = 1 << 4

/**
 * 3.10 to 3.12. Each offset is offsetof() in the header named (Include/..., of that version);
 * test/python-layout.test.ts compiles the same offsetof()s, and measures 3.10's dict keys (in
 * Objects/dict-common.h, which is not installed) on a live dict.
 */
export const THREAD_NAMES_LAYOUTS: Readonly<Record<number, ThreadNamesLayout>> = {
  10: {
    ...OBJECT_HEADERS,
    interpreter_modules: 856, // internal/pycore_interp.h: PyInterpreterState.modules
    type_cached_keys: 872, // cpython/object.h: PyHeapTypeObject.ht_cached_keys
    // Objects/dict-common.h: dk_refcnt, dk_size, dk_lookup, dk_usable, dk_nentries, dk_indices.
    keys: { form: 'size', size: 8, nentries: 32, indices: 40 },
    values_items: 0,
    attributes: { kind: 'dict-offset' },
    long_tag_bits: 0,
  },
  11: {
    ...OBJECT_HEADERS,
    interpreter_modules: 888, // internal/pycore_interp.h: PyInterpreterState.modules
    type_cached_keys: 872, // cpython/object.h: PyHeapTypeObject.ht_cached_keys
    keys: KEYS_FROM_3_11,
    values_items: 0, // internal/pycore_dict.h: PyDictValues.values
    // internal/pycore_object.h: _PyObject_ValuesPointer (obj - 4 words), _PyObject_ManagedDictPointer (- 3).
    attributes: { kind: 'managed', flag: MANAGED_DICT_FLAG, values: -32, dict: -24 },
    long_tag_bits: 0,
  },
  12: {
    ...OBJECT_HEADERS,
    interpreter_modules: 944, // internal/pycore_interp.h: PyInterpreterState.imports (pycore_import.h's .modules)
    type_cached_keys: 880, // cpython/object.h: PyHeapTypeObject.ht_cached_keys
    keys: KEYS_FROM_3_11,
    values_items: 0, // internal/pycore_dict.h: PyDictValues.values
    // internal/pycore_object.h: _PyObject_DictOrValuesPointer (obj - 3 words), _PyDictOrValues_GetValues (+ 1).
    attributes: { kind: 'dict-or-values', flag: MANAGED_DICT_FLAG, dict_or_values: -24, values_tag: 1 },
    long_tag_bits: 3, // cpython/longintrepr.h: _PyLong_NON_SIZE_BITS
  },
}

/** What `_Py_DebugOffsets` describes of a ThreadNamesLayout. */
type DescribedNames = 'interpreter_modules' | 'type_flags' | 'dict_keys' | 'dict_values' | 'long_size' | 'long_digits'

/** The rest, for the versions that describe themselves and whose objects usdtrace knows. */
const NAMES_BEYOND_DEBUG_OFFSETS: Readonly<Record<number, Omit<ThreadNamesLayout, DescribedNames>>> = {
  13: {
    module_dict: OBJECT_HEADERS.module_dict,
    type_basicsize: OBJECT_HEADERS.type_basicsize,
    type_dictoffset: OBJECT_HEADERS.type_dictoffset,
    type_cached_keys: 880, // cpython/object.h: PyHeapTypeObject.ht_cached_keys
    keys: KEYS_FROM_3_11,
    values_items: 8, // internal/pycore_dict.h: PyDictValues: capacity, size, embedded, valid (bytes), values
    // object.h: Py_TPFLAGS_INLINE_VALUES (1 << 2); internal/pycore_object.h: MANAGED_DICT_OFFSET (- 3 words).
    attributes: { kind: 'inline', flag: MANAGED_DICT_FLAG, inline_flag: 1 << 2, dict: -24, values_capacity: 0, values_valid: 3 },
    long_tag_bits: 3, // cpython/longintrepr.h: _PyLong_NON_SIZE_BITS
  },
}

/**
 * How `threading`'s names are read in this version: from the table, or from `_Py_DebugOffsets`
 * and what it leaves out; undefined when usdtrace does not know the version's objects or the
 * offsets lie outside the sizes they state.
 */
export function threadNamesLayout(minor: number, debug: DebugOffsets | undefined): ThreadNamesLayout | undefined {
  if (!debug) return THREAD_NAMES_LAYOUTS[minor]
  const known = NAMES_BEYOND_DEBUG_OFFSETS[minor]
  const f = debug.fields
  const inside =
    f['interpreter_state.imports_modules'] < f['interpreter_state.size'] &&
    f['type_object.tp_flags'] < f['type_object.size'] &&
    f['dict_object.ma_keys'] < f['dict_object.size'] &&
    f['dict_object.ma_values'] < f['dict_object.size'] &&
    f['long_object.lv_tag'] < f['long_object.ob_digit'] &&
    f['long_object.ob_digit'] < f['long_object.size']
  if (!known || !inside) return undefined
  return {
    ...known,
    interpreter_modules: f['interpreter_state.imports_modules'],
    type_flags: f['type_object.tp_flags'],
    dict_keys: f['dict_object.ma_keys'],
    dict_values: f['dict_object.ma_values'],
    long_size: f['long_object.lv_tag'],
    long_digits: f['long_object.ob_digit'],
  }
}
