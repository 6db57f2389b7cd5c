// SPDX-License-Identifier: MIT
/*
 * CPython module loads (python:import__find__load__start / __done, both with the absolute module
 * name; done adds whether the load succeeded). A load runs the module's code, which may load
 * others, so each thread keeps a stack of start times: a done pops its start, and its depth is
 * the number of loads still open around it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "usdtrace.h"
#include "current.bpf.h"
#include "usdt_args.bpf.h"
#include "ringbuf.bpf.h"
#include "thread_state.bpf.h"
#include "read_name.bpf.h"

/* Deeper loads are still reported, with their depth, but without a start or duration. */
#define MAX_TIMED_DEPTH 64

struct thread_imports {
	__u32 depth;
	__u64 start_ns[MAX_TIMED_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct thread_imports);
} threads SEC(".maps");

struct import_record {
	struct import_event event;
	char name[NAME_READ];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct import_record);
} scratch SEC(".maps");

/* Starts whose thread finds no slot in `threads` (dropped_thread_slots) arrive without a duration. */

static const struct thread_imports fresh_thread;

static __always_inline void forget_thread_state(__u32 tid)
{
	bpf_map_delete_elem(&threads, &tid);
}

SEC("usdt")
int on_import_start(struct pt_regs *ctx)
{
	__u32 tid = (__u32)current_pid_tgid();
	struct thread_imports *thread = thread_state(&threads, tid, &fresh_thread);
	__u32 depth;

	if (!thread)
		return 0;
	depth = thread->depth;
	if (depth < MAX_TIMED_DEPTH)
		thread->start_ns[depth] = bpf_ktime_get_ns();
	thread->depth = depth + 1;
	return 0;
}

SEC("usdt")
int on_import_done(struct pt_regs *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 pid_tgid = current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	__u32 zero = 0;
	struct import_record *rec = bpf_map_lookup_elem(&scratch, &zero);
	struct thread_imports *thread = bpf_map_lookup_elem(&threads, &tid);
	long name = 0, found = 0;
	__u32 depth = 0, len;

	if (!rec)
		return 0;
	rec->event.flags = 0;
	rec->event.start_ns = 0;
	rec->event.duration_ns = 0;
	/* A load that began before the trace attached has no start: depth 0, no duration. */
	if (thread && thread->depth > 0) {
		depth = thread->depth - 1;
		thread->depth = depth;
		if (depth < MAX_TIMED_DEPTH) {
			rec->event.start_ns = thread->start_ns[depth];
			rec->event.duration_ns = now - rec->event.start_ns;
			rec->event.flags |= IMPORT_HAS_START;
		}
	}

	const volatile struct usdt_spec *spec = usdt_spec(ctx, NULL);
	name = usdt_arg(ctx, spec, 0);
	found = usdt_arg(ctx, spec, 1);
	len = read_name(rec->name, name, &rec->event.flags, IMPORT_NAME_TRUNCATED);
	if (found)
		rec->event.flags |= IMPORT_FOUND;
	rec->event.pid = pid_tgid >> 32;
	rec->event.tid = tid;
	rec->event.depth = depth > 0xffff ? 0xffff : depth;
	rec->event.name_len = len;
	submit_event(rec, sizeof(rec->event) + len);
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
