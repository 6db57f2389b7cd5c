/* SPDX-License-Identifier: MIT */
/*
 * The records BPF writes into ring buffers. This header is the one definition: the BPF programs
 * fill these structs, the addon reports their sizes and offsets (native/layout.cc), and the
 * TypeScript decoders (src/layout.ts) are checked against that report by test/layout.test.ts.
 */
#ifndef USDTRACE_H
#define USDTRACE_H

/* A name longer than this is cut to it and flagged; anything up to it arrives whole. */
#define USDTRACE_NAME_MAX 512

enum call_kind {
	CALL_ENTRY = 0,
	CALL_RETURN = 1,
};

enum call_flags {
	CALL_HAS_DURATION = 1 << 0,
	CALL_FILE_TRUNCATED = 1 << 1,
	CALL_FUNC_TRUNCATED = 1 << 2,
};

/*
 * One Python function entry or return. The record is sized to its strings: the header is
 * followed by file_len bytes of the file name, then func_len bytes of the function name,
 * without NULs.
 */
struct call_event {
	__u64 timestamp_ns; /* CLOCK_MONOTONIC */
	__u64 duration_ns;  /* valid when CALL_HAS_DURATION */
	__u32 pid;
	__u32 tid;
	__s32 line;
	__u16 depth;
	__u8 kind;  /* enum call_kind */
	__u8 flags; /* enum call_flags */
	__u16 file_len;
	__u16 func_len;
};

/* The most arguments a USDT probe has (libbpf's BPF_USDT_MAX_ARG_CNT). */
#define USDT_MAX_ARGS 12
/*
 * What user space tells usdt.bpf.c about one attachment, through its USDT cookie: bits 0-7
 * hold how many arguments to read, bit USDT_COOKIE_STR_SHIFT + i is set when argument i is a
 * pointer to a string to copy. Everything else about a type (width, sign) is applied by the
 * decoder, which knows the declared types.
 */
#define USDT_COOKIE_COUNT_MASK 0xff
#define USDT_COOKIE_STR_SHIFT 8

enum usdt_flags {
	USDT_STR_TRUNCATED = 1 << 0,
};

/*
 * One hit of a USDT probe. The record is sized to its contents: the header is followed by
 * arg_count 8-byte values (each argument as libbpf read it, sign-extended from the probe's
 * declared width; for a string argument, its length), then the bytes of the string arguments
 * back to back, without NULs.
 */
struct usdt_event {
	__u64 timestamp_ns; /* CLOCK_MONOTONIC */
	__u32 pid;
	__u32 tid;
	__u8 arg_count;
	__u8 flags; /* enum usdt_flags */
	__u8 reserved[6]; /* zero; keeps the values that follow 8-byte aligned */
};

/* The integer registers a library call's arguments arrive in, all of them recorded. */
#define LIBRARY_CALL_ARGS 6

/* One completed call into a shared-library function, recorded when it returns. */
struct library_call_event {
	__u64 timestamp_ns; /* at entry, CLOCK_MONOTONIC */
	__u64 duration_ns;
	__u64 args[LIBRARY_CALL_ARGS];
	__u64 return_value;
	__u32 pid;
	__u32 tid;
	__u32 symbol; /* the attachment's cookie: which traced function */
	__u32 depth;  /* traced calls of this thread still running around this one */
};

#endif /* USDTRACE_H */
