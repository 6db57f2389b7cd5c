// SPDX-License-Identifier: MIT
/*
 * CPython module loads (python:import__find__load__start / __done, both with the absolute module
 * name; done adds whether the load succeeded). A load runs the module's code, which may load
 * others, so each thread keeps a stack of start times (thread_stack.bpf.h): a done pops its
 * start, and its depth is the number of loads still open around it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "usdtrace.h"
#include "current.bpf.h"
#include "usdt_args.bpf.h"
#include "ringbuf.bpf.h"
#include "read_name.bpf.h"

struct frame {
	__u64 start_ns;
};

#include "thread_stack.bpf.h"

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

/* Starts that find no room (dropped_thread_slots, dropped_deep_frames) arrive without a duration. */

static __always_inline void forget_thread_state(__u32 tid)
{
	forget_stack(tid);
}

SEC("usdt")
int on_import_start(struct pt_regs *ctx)
{
	__u32 tid = (__u32)current_pid_tgid();
	struct thread_stack *stack = stack_of(tid, true);
	struct frame *frame = stack ? push_frame(stack, tid) : NULL;

	if (frame)
		frame->start_ns = bpf_ktime_get_ns();
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
	struct thread_stack *stack = stack_of(tid, false);
	struct frame *frame;
	long name = 0, found = 0;
	__u32 depth = 0, len;

	if (!rec)
		return 0;
	rec->event.flags = 0;
	rec->event.start_ns = 0;
	rec->event.duration_ns = 0;
	/* A load that began before the trace attached has no start: depth 0, no duration. */
	frame = stack ? pop_frame(stack, tid, &depth) : NULL;
	if (frame) {
		rec->event.start_ns = frame->start_ns;
		rec->event.duration_ns = now - frame->start_ns;
		rec->event.flags |= IMPORT_HAS_START;
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
