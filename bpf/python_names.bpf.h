/* SPDX-License-Identifier: MIT */
/*
 * Python function names known by identity, so that a call costs no string read.
 *
 * CPython's function__entry/return hand over the UTF-8 of the code object's co_filename and
 * co_name: pointers into two str objects that live as long as the code objects naming them.
 * The names behind a (process, file pointer, function pointer) are read once, the first time
 * it is seen, and given an id; later calls only look the pointers up. What makes that correct
 * is forget_code, on CPython's code_dealloc: a str can only be freed, and its memory handed to
 * another name, once every code object holding it is gone, and each of those forgets the pair
 * as it goes. A pair that another live code object still uses is simply learnt again.
 *
 * The hook needs the version's struct offsets (src/cpython/layout.ts); without them
 * code_filename_offset stays 0 and programs read the names on every call instead.
 */
#ifndef USDTRACE_PYTHON_NAMES_BPF_H
#define USDTRACE_PYTHON_NAMES_BPF_H

#include "current.bpf.h"

struct name_key {
	__u64 file; /* the UTF-8 the probe passed */
	__u64 func;
	__u32 tgid;
	__u32 retired; /* 0; 1 only in callstats.bpf.c's keys for functions whose code is gone */
};

struct known_name {
	__u32 id;
	/* Whether calls of this function are reported (calls.bpf.c's prefix filters). */
	__u32 wanted;
};

/* An evicted pair is learnt again under a new id: evictions cost a read, never a wrong name. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct name_key);
	__type(value, struct known_name);
} known_names SEC(".maps");

/* Ids handed out so far; 0 is never an id. */
__u32 last_name_id = 0;

/* Offsets into PyCodeObject and str for this CPython; 0: no hook, names are read per call. */
const volatile __u32 code_filename_offset = 0;
const volatile __u32 code_name_offset = 0;
const volatile __u32 unicode_state_offset = 0;
const volatile __u32 unicode_ascii_data_offset = 0;
const volatile __u32 unicode_utf8_offset = 0;

/* The `compact` and `ascii` bits of PyASCIIObject.state (every CPython with call probes). */
#define UNICODE_COMPACT_ASCII 0x60

static __always_inline bool names_by_identity(void)
{
	return code_filename_offset != 0;
}

static __always_inline __u32 new_name_id(void)
{
	return __sync_fetch_and_add(&last_name_id, 1) + 1;
}

/* What PyUnicode_AsUTF8 returned for this str: its inline data if compact ASCII, else its utf8 buffer. */
static __always_inline __u64 utf8_of(__u64 str)
{
	__u8 state = 0;
	__u64 utf8 = 0;

	bpf_probe_read_user(&state, sizeof(state), (const void *)(str + unicode_state_offset));
	if ((state & UNICODE_COMPACT_ASCII) == UNICODE_COMPACT_ASCII)
		return str + unicode_ascii_data_offset;
	bpf_probe_read_user(&utf8, sizeof(utf8), (const void *)(str + unicode_utf8_offset));
	return utf8;
}

/* The key the probes report for the code object code_dealloc is about to free. */
static __always_inline void dying_code_key(struct pt_regs *ctx, struct name_key *key)
{
	__u64 code = PT_REGS_PARM1(ctx), file = 0, func = 0;

	bpf_probe_read_user(&file, sizeof(file), (const void *)(code + code_filename_offset));
	bpf_probe_read_user(&func, sizeof(func), (const void *)(code + code_name_offset));
	key->file = utf8_of(file);
	key->func = utf8_of(func);
	key->tgid = current_pid_tgid() >> 32;
	key->retired = 0;
}

#endif /* USDTRACE_PYTHON_NAMES_BPF_H */
