/* SPDX-License-Identifier: MIT */
/*
 * Per-thread state every program keeps the same way: an entry keyed by tid in a hash map,
 * created from a zeroed value on the thread's first use. A full map is never silent: the event
 * that found no room is counted in `dropped_thread_slots`, which user space reports as lost.
 *
 * The state goes when its thread exits: forget_thread, attached to sched_process_exit through a
 * raw tracepoint (no tracefs), calls the object's forget_thread_state. So a service that starts a
 * thread per request holds as many entries as it has threads alive, however many came and went,
 * and a later thread given a dead one's id starts clean.
 */
#ifndef USDTRACE_THREAD_STATE_BPF_H
#define USDTRACE_THREAD_STATE_BPF_H

#include "current.bpf.h"

__u64 dropped_thread_slots = 0;

/* The thread's entry in `map`, created from `fresh` if it has none; NULL (counted) when full. */
static __always_inline void *thread_state(void *map, __u32 tid, const void *fresh)
{
	void *state = bpf_map_lookup_elem(map, &tid);

	if (state)
		return state;
	/* Another CPU may create it between the two calls: NOEXIST fails, the lookup finds it. */
	bpf_map_update_elem(map, &tid, fresh, BPF_NOEXIST);
	state = bpf_map_lookup_elem(map, &tid);
	if (!state)
		__sync_fetch_and_add(&dropped_thread_slots, 1);
	return state;
}

/* Frees everything the object keeps for thread `tid`; each object that includes this defines it. */
static __always_inline void forget_thread_state(__u32 tid);

/* sched_process_exit runs on the exiting thread, for every thread of every process. */
SEC("raw_tp")
int forget_thread(struct bpf_raw_tracepoint_args *ctx)
{
	forget_thread_state((__u32)current_pid_tgid());
	return 0;
}

#endif /* USDTRACE_THREAD_STATE_BPF_H */
