// SPDX-License-Identifier: MIT
/*
 * Python stacks of running CPython processes, probes or not (python_stack.bpf.h walks them).
 *
 * On CPU: a perf event per CPU interrupts whatever runs; a thread of a traced process has its
 * stack walked right there. Off CPU: when a traced thread blocks, sched_switch walks its stack as
 * it leaves (its memory is still the current one) and parks it; when the thread is switched back
 * in, the parked stack goes out with how long it waited. Each stack is either sent as a sample
 * or, for profiles, summed in the kernel under the stack itself (aggregate.bpf.h's halves), one
 * entry per distinct stack however long the profile runs. The dump iterator walks every thread of
 * a process once, reading another task's memory, and writes to its own seq_file.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "usdtrace.h"
#include "current.bpf.h"
#include "ringbuf.bpf.h"
#include "aggregate.bpf.h"
#include "python_stack.bpf.h"

/* Set by user space before load: stacks are summed in stack_counts_* rather than sent. */
const volatile bool aggregate = false;

/* Where an on-CPU stack is walked before it is sent or summed. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stack_key);
} key_scratch SEC(".maps");

/* A blocked thread's stack as it left the CPU, until it returns; sized by user space. */
struct parked_stack {
	__u64 since_ns;
	struct stack_key key;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct parked_stack);
} parked_stacks SEC(".maps");

/* Per distinct stack (and process, and on or off CPU): sized by user space (maxStacks). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, struct stack_key);
	__type(value, struct stack_counts);
} stack_counts_even SEC(".maps"), stack_counts_odd SEC(".maps");

/* Samples not summed: stack_counts was full. */
__u64 dropped_stack_slots = 0;
/* Waits not timed: parked_stacks was full. */
__u64 dropped_parked_threads = 0;

static const struct parked_stack no_parked_stack;

/* Walks `task`'s stack (the current task) into `key`; false when it is not a traced Python thread. */
static __always_inline bool walk_into_key(struct task_struct *task, struct stack_key *key, __u8 flags)
{
	__u16 depth = 0;

	if (aggregate)
		__builtin_memset(key->frames, 0, sizeof(key->frames));
	if (!walk_current_stack(task, key->frames, &depth, &flags))
		return false;
	key->pid = task->tgid;
	key->depth = depth;
	key->flags = flags;
	key->reserved = 0;
	return true;
}

/* Sums one sample of `key` (and its wait) into the current half. */
static __always_inline void count_stack(const struct stack_key *key, __u64 off_cpu_ns)
{
	static const struct stack_counts none;
	struct stack_counts *counts;
	__u32 half = enter_half();

	if (half == HALF_NONE)
		return;
	counts = lookup_in_half(half, &stack_counts_even, &stack_counts_odd, key);
	if (!counts)
		counts = open_in_half(half, &stack_counts_even, &stack_counts_odd, key, &none);
	if (counts) {
		__sync_fetch_and_add(&counts->samples, 1);
		if (off_cpu_ns)
			__sync_fetch_and_add(&counts->off_cpu_ns, off_cpu_ns);
	} else {
		__sync_fetch_and_add(&dropped_stack_slots, 1);
	}
	leave_half(half);
}

/* Sends `key`'s stack as a sample of thread `tid`, or sums it. */
static __always_inline void deliver(const struct stack_key *key, __u32 tid, __u64 now, __u64 off_cpu_ns)
{
	struct sample_record *record;
	__u32 depth = key->depth;

	if (aggregate) {
		count_stack(key, off_cpu_ns);
		return;
	}
	record = sample_scratch_record();
	if (!record || depth > STACK_FRAMES_MAX)
		return;
	describe_stack(&record->sample, STACK_RECORD_SAMPLE, key->flags, key->pid, tid, depth, now);
	record->sample.off_cpu_ns = off_cpu_ns;
	__builtin_memcpy(record->frames, key->frames, sizeof(record->frames));
	submit_event(record, sizeof(record->sample) + depth * sizeof(struct python_frame));
}

static __always_inline struct stack_key *key_buffer(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&key_scratch, &zero);
}

SEC("perf_event")
int sample_on_cpu(struct bpf_perf_event_data *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct stack_key *key;

	if (task->pid == 0)
		return 0;
	key = key_buffer();
	if (!key || !walk_into_key(task, key, SAMPLE_ON_CPU))
		return 0;
	deliver(key, task->pid, bpf_ktime_get_ns(), 0);
	return 0;
}

/*
 * A traced thread that blocks has its stack parked as it leaves; one that comes back has the
 * parked stack delivered with the time it was away. A thread preempted while it could still run
 * is not waiting in the program: only blocking (prev_state other than running) counts.
 */
SEC("tp_btf/sched_switch")
int BPF_PROG(on_switch, bool preempt, struct task_struct *prev, struct task_struct *next, unsigned int prev_state)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 prev_tid = prev->pid, next_tid = next->pid;
	struct parked_stack *parked;
	struct stack_key *key;

	parked = next_tid ? bpf_map_lookup_elem(&parked_stacks, &next_tid) : NULL;
	if (parked) {
		deliver(&parked->key, next_tid, now, now - parked->since_ns);
		bpf_map_delete_elem(&parked_stacks, &next_tid);
	}
	if (preempt || prev_state == 0 || prev_tid == 0)
		return 0;
	key = key_buffer();
	if (!key || !walk_into_key(prev, key, 0))
		return 0;
	bpf_map_update_elem(&parked_stacks, &prev_tid, &no_parked_stack, BPF_ANY);
	parked = bpf_map_lookup_elem(&parked_stacks, &prev_tid);
	if (!parked) {
		__sync_fetch_and_add(&dropped_parked_threads, 1);
		return 0;
	}
	parked->since_ns = now;
	__builtin_memcpy(&parked->key, key, sizeof(parked->key));
	return 0;
}

static long forget_code_of(struct bpf_map *map, const struct code_key *key, struct known_code *value, __u32 *tgid)
{
	if (key->tgid == *tgid)
		bpf_map_delete_elem(map, key);
	return 0;
}

/*
 * With { binary } processes come and go for as long as the trace runs: one that exits (or runs
 * another program) takes its code ids with it, here and in user space, and a process that gets
 * its pid later is asked about anew.
 */
static __always_inline void forget_process(__u32 tgid)
{
	if (!follow_binary)
		return;
	bpf_for_each_map_elem(&known_codes, forget_code_of, &tgid, 0);
	if (bpf_map_delete_elem(&python_processes, &tgid) == 0)
		send_process_record(STACK_RECORD_EXIT, tgid);
	bpf_map_delete_elem(&asked_processes, &tgid);
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(forget_thread, struct task_struct *task)
{
	__u32 tid = task->pid;

	bpf_map_delete_elem(&thread_states, &tid);
	bpf_map_delete_elem(&parked_stacks, &tid);
	if (tid == task->tgid)
		forget_process(tid);
	return 0;
}

/* A process that runs another program keeps its pid: what was known of it no longer holds. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(forget_image, struct task_struct *task)
{
	forget_process(task->tgid);
	return 0;
}

/* Every thread of the traced processes, once, with its stack; records go to the iterator's output. */
SEC("iter.s/task")
int dump_threads(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct stack_walk walk = {};
	struct sample_record *record;
	__u32 size;

	if (!task)
		return 0;
	record = sample_scratch_record();
	if (!record)
		return 0;
	walk.task = task;
	walk.seq = ctx->meta->seq;
	walk.frames = record->frames;
	if (!start_walk(&walk, task, task->tgid))
		return 0;
	walk_frames(&walk);
	describe_stack(&record->sample, STACK_RECORD_SAMPLE, walk.flags | (task->on_cpu ? SAMPLE_ON_CPU : 0), walk.tgid,
		       task->pid, walk.depth, bpf_ktime_get_ns());
	record->sample.cpu = task->thread_info.cpu;
	size = sizeof(record->sample) + walk.depth * sizeof(struct python_frame);
	if (size <= sizeof(*record))
		emit_record(&walk, record, size);
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
