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

#endif /* USDTRACE_H */
