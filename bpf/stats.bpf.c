// SPDX-License-Identifier: MIT
/*
 * pythonstat's counters, kept per process in the kernel: nothing crosses to user space per
 * event. Each program adds to the calling process's slot of a per-CPU hash (no atomics, no
 * sharing between CPUs); user space sums the CPUs and takes differences between readings.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "usdtrace.h"
#include "current.bpf.h"
#include "usdt_args.bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct python_stats);
} stats SEC(".maps");

/* Counts lost because `stats` had no slot left for another process. */
__u64 dropped_process_slots = 0;

static const struct python_stats no_stats;

static __always_inline struct python_stats *stats_of_current(void)
{
	__u32 pid = current_pid_tgid() >> 32;
	struct python_stats *counts = bpf_map_lookup_elem(&stats, &pid);

	if (counts)
		return counts;
	bpf_map_update_elem(&stats, &pid, &no_stats, BPF_NOEXIST);
	counts = bpf_map_lookup_elem(&stats, &pid);
	if (!counts)
		__sync_fetch_and_add(&dropped_process_slots, 1);
	return counts;
}

SEC("usdt")
int count_call(struct pt_regs *ctx)
{
	struct python_stats *counts = stats_of_current();

	if (counts)
		counts->calls++;
	return 0;
}

SEC("usdt")
int count_gc(struct pt_regs *ctx)
{
	struct python_stats *counts = stats_of_current();

	if (!counts)
		return 0;
	counts->gc_runs++;
	counts->gc_collected += usdt_arg(ctx, usdt_spec(ctx, NULL), 0);
	return 0;
}

SEC("usdt")
int count_import(struct pt_regs *ctx)
{
	struct python_stats *counts = stats_of_current();

	if (counts)
		counts->imports++;
	return 0;
}

/* A uprobe on PyThread_start_new_thread, through which every Python thread starts. */
SEC("uprobe")
int count_thread(struct pt_regs *ctx)
{
	struct python_stats *counts = stats_of_current();

	if (counts)
		counts->threads++;
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
