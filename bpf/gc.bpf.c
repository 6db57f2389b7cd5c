// SPDX-License-Identifier: MIT
/*
 * CPython garbage collections (python:gc__start with the generation, python:gc__done with the
 * number of unreachable objects found). The start is kept per thread until its done, so one
 * record per collection carries both, and collections shorter than min_duration_ns never leave
 * the kernel.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "usdtrace.h"
#include "current.bpf.h"
#include "usdt_args.bpf.h"
#include "ringbuf.bpf.h"
#include "thread_state.bpf.h"
#include "python_stack.bpf.h"

/* Collections that took less are not reported; set by user space before load. */
const volatile __u64 min_duration_ns = 0;

struct gc_start {
	__u64 start_ns;
	__s32 generation;
};

/* CPython runs one collection at a time per interpreter, so a thread has at most one open. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct gc_start);
} starts SEC(".maps");

/* Collections whose start found no free slot in `starts`: they go unreported. */
__u64 dropped_gc_slots = 0;

/* A thread that exits between a start and its done (its process killed mid-collection). */
static __always_inline void forget_thread_state(__u32 tid)
{
	bpf_map_delete_elem(&starts, &tid);
	bpf_map_delete_elem(&thread_states, &tid);
}

SEC("usdt")
int on_gc_start(struct pt_regs *ctx)
{
	__u32 tid = (__u32)current_pid_tgid();
	struct gc_start start = { .start_ns = bpf_ktime_get_ns() };

	start.generation = usdt_arg(ctx, usdt_spec(ctx, NULL), 0);
	if (bpf_map_update_elem(&starts, &tid, &start, BPF_ANY))
		__sync_fetch_and_add(&dropped_gc_slots, 1);
	return 0;
}

SEC("usdt")
int on_gc_done(struct pt_regs *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 pid_tgid = current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	struct gc_start *start = bpf_map_lookup_elem(&starts, &tid);
	struct gc_event event = {};

	/* A collection already running when the trace attached has no start: it is not reported. */
	if (!start)
		return 0;
	event.start_ns = start->start_ns;
	event.generation = start->generation;
	bpf_map_delete_elem(&starts, &tid);
	event.duration_ns = now - event.start_ns;
	if (event.duration_ns < min_duration_ns)
		return 0;
	event.collected = usdt_arg(ctx, usdt_spec(ctx, NULL), 0);
	event.pid = pid_tgid >> 32;
	event.tid = tid;
	send_event_stack(event.start_ns);
	submit_event(&event, sizeof(event));
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
