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
