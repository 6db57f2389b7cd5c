/**
 * Where the decoders read each field: a mirror of bpf/usdtrace.h, held to the C compiler's
 * layout by test/layout.test.ts.
 */
export const CALL_EVENT = {
  size: 48,
  fields: {
    timestamp_ns: 0,
    duration_ns: 8,
    pid: 16,
    tid: 20,
    line: 24,
    depth: 28,
    kind: 30,
    flags: 31,
    file_len: 32,
    func_len: 34,
    cpu: 36,
    name_id: 40,
  },
} as const

export const CALL_ENTRY = 0
export const CALL_RETURN = 1
export const CALL_NAMES = 2
export const CALL_FORGET = 3
export const CALL_HAS_DURATION = 1 << 0
export const CALL_FILE_TRUNCATED = 1 << 1
export const CALL_FUNC_TRUNCATED = 1 << 2
export const NAME_MAX = 512
export const PREFIX_MAX = 256

export const SYSCALL_EVENT = {
  size: 88,
  fields: {
    timestamp_ns: 0,
    duration_ns: 8,
    args: 16,
    ret: 64,
    pid: 72,
    tid: 76,
    nr: 80,
    detail_len: 84,
    flags: 86,
  },
} as const

export const SYSCALL_WANTED = 1 << 0
export const SYSCALL_NEVER_RETURNS = 1 << 1
export const SYSCALL_PATH_ARG_SHIFT = 4
export const SYSCALL_PATH_ARG_MASK = 7 << 4
export const SYSCALL_TABLE_SIZE = 1024
export const SYSCALL_RETURNED = 1 << 0
export const SYSCALL_DETAIL_TRUNCATED = 1 << 1

export const LATENCY_STATS = {
  size: 560,
  fields: {
    calls: 0,
    timed_calls: 8,
    total_ns: 16,
    self_ns: 24,
    min_ns: 32,
    max_ns: 40,
    histogram: 48,
  },
} as const

export const HISTOGRAM_BUCKETS = 64

export const FUNCTION_STATS = { size: 568, fields: { name_id: 0, stats: 8 } } as const

export const FUNCTION_NAMES = {
  size: 1032,
  fields: {
    file_len: 0,
    func_len: 2,
    truncated: 4,
    names: 8,
  },
} as const

export const USDT_EVENT = {
  size: 24,
  fields: {
    timestamp_ns: 0,
    pid: 8,
    tid: 12,
    arg_count: 16,
    flags: 17,
  },
} as const

export const USDT_MAX_ARGS = 12
export const USDT_COOKIE_COUNT_MASK = 0xff
export const USDT_COOKIE_STR_SHIFT = 8
export const USDT_STR_TRUNCATED = 1 << 0

export const LIBRARY_CALL_EVENT = {
  size: 88,
  fields: {
    timestamp_ns: 0,
    duration_ns: 8,
    args: 16,
    return_value: 64,
    pid: 72,
    tid: 76,
    symbol: 80,
    depth: 84,
  },
} as const

export const LIBRARY_CALL_ARGS = 6

export const GC_EVENT = {
  size: 40,
  fields: {
    start_ns: 0,
    duration_ns: 8,
    collected: 16,
    pid: 24,
    tid: 28,
    generation: 32,
  },
} as const

export const IMPORT_EVENT = {
  size: 32,
  fields: {
    start_ns: 0,
    duration_ns: 8,
    pid: 16,
    tid: 20,
    depth: 24,
    flags: 26,
    name_len: 28,
  },
} as const

export const IMPORT_FOUND = 1 << 0
export const IMPORT_HAS_START = 1 << 1
export const IMPORT_NAME_TRUNCATED = 1 << 2

export const AUDIT_VALUE = {
  size: 4,
  fields: {
    kind: 0,
    flags: 1,
    len: 2,
  },
} as const

export const AUDIT_EVENT = {
  size: 24,
  fields: {
    timestamp_ns: 0,
    pid: 8,
    tid: 12,
    name_len: 16,
    args_len: 18,
    flags: 20,
  },
} as const

export const AUDIT_NAME_MAX = 62
export const AUDIT_VALUE_MAX = 256
export const AUDIT_ARGS_MAX = 1024
export const AUDIT_ITEMS_MAX = 6
export const AUDIT_NESTED_ITEMS_MAX = 4
export const AUDIT_NAME_TRUNCATED = 1 << 0
export const AUDIT_ARGS_DECODED = 1 << 1
export const AUDIT_ARGS_TRUNCATED = 1 << 2
export const AUDIT_VALUE_STR = 1
export const AUDIT_VALUE_BYTES = 2
export const AUDIT_VALUE_INT = 3
export const AUDIT_VALUE_BOOL = 4
export const AUDIT_VALUE_TUPLE = 5
export const AUDIT_VALUE_LIST = 6
export const AUDIT_VALUE_OBJECT = 7
export const AUDIT_VALUE_CUT = 1 << 0

/** The value of bpf/stats.bpf.c's per-process map, per CPU. */
export const PYTHON_STATS = {
  size: 40,
  fields: {
    calls: 0,
    gc_runs: 8,
    gc_collected: 16,
    imports: 24,
    threads: 32,
  },
} as const

/** One attachment's USDT argument spec, the value of the usdt_specs map (bpf/usdt_args.bpf.h). */
export const USDT_SPEC = {
  size: 208,
  fields: {
    cookie: 0,
    arg_count: 8,
    args: 16,
  },
} as const

/** One argument of a USDT_SPEC. */
export const USDT_ARG_SPEC = {
  size: 16,
  fields: {
    value: 0,
    kind: 8,
    reg: 9,
    size: 10,
    is_signed: 11,
  },
} as const

export const USDT_SPECS_MAX = 256
export const USDT_ARG_CONST = 0
export const USDT_ARG_REG = 1
export const USDT_ARG_REG_DEREF = 2

export const STACK_SAMPLE = {
  size: 32,
  fields: { kind: 0, flags: 1, depth: 2, pid: 4, tid: 8, cpu: 12, timestamp_ns: 16, off_cpu_ns: 24 },
} as const

export const CODE_RECORD = {
  size: 24,
  fields: { kind: 0, flags: 1, file_kind: 2, func_kind: 3, id: 4, pid: 8, first_line: 12, linetable_len: 16, file_len: 20, func_len: 22 },
} as const

/** One frame of a stack: its code object's id and its offset into the instructions. */
export const PYTHON_FRAME = { size: 8, fields: { code_id: 0, offset: 4 } } as const

export const PYTHON_PROCESS = { size: 24, fields: { runtime: 0, code_type: 8, layout: 16 } } as const

export const STACK_KEY = { size: 1024, fields: { pid: 0, depth: 4, flags: 6, frames: 8 } } as const

export const STACK_COUNTS = { size: 16, fields: { samples: 0, off_cpu_ns: 8 } } as const

/** struct python_offsets: 26 u16 fields, then 4 u8 flags, in this order. */
export const PYTHON_OFFSETS = {
  size: 56,
  u16: [
    'runtime_interpreters', 'interpreter_next', 'interpreter_threads', 'thread_next', 'thread_id', 'thread_frame',
    'cframe_current_frame', 'frame_previous', 'frame_code', 'frame_instruction', 'frame_owner', 'code_filename',
    'code_name', 'code_first_line', 'code_linetable', 'code_instructions', 'code_first_traceable', 'object_type',
    'unicode_state', 'unicode_length', 'unicode_ascii_data', 'unicode_compact_data', 'bytes_size', 'bytes_data',
    'frame_window', 'code_window',
  ],
  u8: ['owner_cstack', 'owner_generator', 'thread_id_is_pthread', 'instruction_is_index'],
} as const

export const STACK_FRAMES_MAX = 127
export const LINETABLE_MAX = 16384
export const PYTHON_LAYOUTS_MAX = 8
export const STACK_SAMPLE_KIND = 1
export const STACK_CODE = 2
export const STACK_FORGET = 3
export const STACK_PROCESS = 4
export const STACK_EXIT = 5
export const SAMPLE_ON_CPU = 1 << 0
export const SAMPLE_TRUNCATED = 1 << 1
export const SAMPLE_UNREADABLE = 1 << 2
export const CODE_FILE_TRUNCATED = 1 << 0
export const CODE_FUNC_TRUNCATED = 1 << 1
export const CODE_LINETABLE_TRUNCATED = 1 << 2
