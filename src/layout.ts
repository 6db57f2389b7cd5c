/**
 * Where the decoders read each field: a mirror of bpf/usdtrace.h, held to the C compiler's
 * layout by test/layout.test.ts.
 */
export const CALL_EVENT = {
  size: 40,
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
  },
} as const

export const CALL_ENTRY = 0
export const CALL_RETURN = 1
export const CALL_HAS_DURATION = 1 << 0
export const CALL_FILE_TRUNCATED = 1 << 1
export const CALL_FUNC_TRUNCATED = 1 << 2
export const NAME_MAX = 512

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
