// SPDX-License-Identifier: MIT
/*
 * Call statistics summed in the kernel: per Python function (function__return, and
 * function__entry for times) and, when asked, per syscall (raw sys_enter / sys_exit). Nothing
 * is sent per call; user space reads the sums once per interval (aggregate.bpf.h).
 *
 * A function is counted under what the probe hands over for it, the pointers to its names and
 * the process (python_names.bpf.h): a call costs one map lookup and no string read. An entry
 * carries the id its names are stored under in function_names, read once per function. When
 * CPython frees the code object, forget_code moves the entry to a key no pointers can make, so
 * names that take the freed memory start an entry of their own. Without the hook (a CPython
 * whose layout usdtrace does not know) the key is a 128-bit hash of the names read at every call.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "usdtrace.h"
#include "current.bpf.h"
#include "usdt_args.bpf.h"
#include "aggregate.bpf.h"
#include "syscall_filter.bpf.h"
#include "read_name.bpf.h"
#include "python_names.bpf.h"
#include "line_semaphore.bpf.h"
#include "hash.bpf.h"

#define NAME_WORDS (2 * USDTRACE_NAME_MAX / 8)

struct frame {
	__u64 entry_ns;
	__u64 callee_ns; /* time spent in the traced functions it called */
};

#include "thread_stack.bpf.h"

/*
 * Per function: sized by user space (maxFunctions). Keyed by name_key: the names' pointers and
 * process; with names read per call, their hash (tgid 0); once retired, the names' id (retired 1).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, struct name_key);
	__type(value, struct function_stats);
} function_stats_even SEC(".maps"), function_stats_odd SEC(".maps");

/* By name id, stored as the id is given; user space takes them out when it meets an id it does not know. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct function_names);
} function_names SEC(".maps");

/* The names are read here, packed as function_names holds them; the slack takes a full-size read of the function name. */
struct names_scratch {
	struct function_names names;
	char slack[NAME_READ - USDTRACE_NAME_MAX + 8];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct names_scratch);
} scratch SEC(".maps");

/* Where forget_code holds an entry while it moves it. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct function_stats);
} retiring SEC(".maps");

struct syscall_in_flight {
	__u64 entry_ns;
	__s64 nr; /* -1: none */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct syscall_in_flight);
} syscall_threads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct latency_stats);
} syscall_stats_even SEC(".maps"), syscall_stats_odd SEC(".maps");

/* function__return's argument spec, when user space could fix it before load (usdt_args.bpf.h). */
const volatile struct usdt_spec on_function_return_spec = {};

/* Set by user space: without latency no entries are traced, so there is no frame to pop. */
const volatile bool latency = true;

/* The process traced, when it is the only one: its calls need no helper call to tell whose they are. */
const volatile __u32 only_tgid = 0;

/* Function calls not counted: the function maps were full. */
__u64 dropped_function_slots = 0;
/* Function entries not timed for want of room: dropped_thread_slots and dropped_deep_frames. */
/* Syscalls not counted: no slot for the thread, or the syscall map was full. */
__u64 dropped_syscall_slots = 0;

SEC("usdt")
int on_function_entry(struct pt_regs *ctx)
{
	__u32 tid = (__u32)current_pid_tgid();
	struct thread_stack *stack = stack_of(tid, true);
	struct frame *frame = stack ? push_frame(stack, tid) : NULL;

	if (frame) {
		frame->entry_ns = bpf_ktime_get_ns();
		frame->callee_ns = 0;
	}
	return 0;
}

static __always_inline __u64 rotl(__u64 x, int r)
{
	return (x << r) | (x >> (64 - r));
}

/*
 * MurmurHash3-style 128-bit hash of the packed names, seeded with both lengths so that the
 * boundary between file and function is part of the key. Not built to resist names crafted to
 * collide; for any two real names a collision has a probability around 2^-128.
 */
static __always_inline void hash_names(const struct function_names *names, struct name_key *key)
{
	const __u64 c1 = 0x87c37b91114253d5ULL, c2 = 0x4cf5ad432745937fULL;
	__u32 total = names->file_len + names->func_len;
	__u64 lengths = ((__u64)names->file_len << 16) | names->func_len;
	__u64 h1 = lengths, h2 = ~lengths;

	for (__u32 i = 0; i < NAME_WORDS; i++) {
		__u32 at = i * 8;
		__u64 word, k1, k2;

		if (at >= total)
			break;
		word = *(const __u64 *)(names->names + at);
		if (total - at < 8)
			word &= (1ULL << ((total - at) * 8)) - 1;
		k1 = rotl(word * c1, 31) * c2;
		h1 = (rotl(h1 ^ k1, 27) + h2) * 5 + 0x52dce729;
		k2 = rotl(word * c2, 33) * c1;
		h2 = (rotl(h2 ^ k2, 31) + h1) * 5 + 0x38495ab5;
	}
	h1 ^= total;
	h2 ^= total;
	h1 += h2;
	h2 += h1;
	h1 = fmix(h1);
	h2 = fmix(h2);
	h1 += h2;
	h2 += h1;
	key->file = h1;
	key->func = h2;
	key->tgid = 0;
	key->retired = 0;
}

/* Pops the returning frame: its duration and self time, charged to its caller as callee time. */
static __always_inline bool time_return(__u64 now, __u64 *duration_ns, __u64 *self_ns)
{
	__u32 tid = (__u32)current_pid_tgid();
	struct thread_stack *stack = stack_of(tid, false);
	struct frame *frame, *caller;
	__u32 depth;

	frame = stack ? pop_frame(stack, tid, &depth) : NULL;
	if (!frame)
		return false;
	*duration_ns = now - frame->entry_ns;
	*self_ns = *duration_ns > frame->callee_ns ? *duration_ns - frame->callee_ns : 0;
	caller = depth > 0 ? frame_at(stack, tid, depth - 1) : NULL;
	if (caller)
		caller->callee_ns += *duration_ns;
	return true;
}

/* Reads both names into `names`. */
static __always_inline void read_names(struct function_names *names, __u64 file, __u64 func)
{
	names->truncated = 0;
	read_code_names(names->names, file, func, &names->file_len, &names->func_len, &names->truncated, 1, 1);
}

/*
 * The id the names behind `key` are stored under, given now if they have none; 0 when there is
 * no room for them. `buffer` holds the names already when they were read for the key.
 */
static __always_inline __u32 name_id(const struct name_key *key, struct names_scratch *buffer, __u64 file, __u64 func)
{
	struct known_name *known = bpf_map_lookup_elem(&known_names, key);
	struct known_name learnt = { .wanted = 1 };
	__u32 zero = 0;

	if (known)
		return known->id;
	if (!buffer) {
		buffer = bpf_map_lookup_elem(&scratch, &zero);
		if (!buffer)
			return 0;
		read_names(&buffer->names, file, func);
	}
	learnt.id = new_name_id();
	if (bpf_map_update_elem(&function_names, &learnt.id, &buffer->names, BPF_NOEXIST))
		return 0;
	/* Remembered only once the names are stored, so an id found here always has them. */
	bpf_map_update_elem(&known_names, key, &learnt, BPF_ANY);
	return learnt.id;
}

static const struct function_stats no_calls = { .stats.min_ns = ~0ULL };

/*
 * The entry for `key` in the current half, opened on the function's first call in this
 * interval; NULL when there is no room. User space reads a half only once nothing writes to it,
 * so an entry is never read before its opener has given it its names' id.
 */
static __always_inline struct function_stats *function_entry(__u32 half, const struct name_key *key, struct names_scratch *buffer,
							     __u64 file, __u64 func)
{
	struct function_stats *stats = lookup_in_half(half, &function_stats_even, &function_stats_odd, key);
	__u32 id;

	if (stats)
		return stats;
	id = name_id(key, buffer, file, func);
	if (!id)
		return NULL;
	stats = open_in_half(half, &function_stats_even, &function_stats_odd, key, &no_calls);
	if (stats)
		stats->name_id = id;
	return stats;
}

SEC("usdt")
int on_function_return(struct pt_regs *ctx)
{
	const volatile struct usdt_spec *spec = usdt_spec(ctx, &on_function_return_spec);
	__u64 file = usdt_arg(ctx, spec, 0), func = usdt_arg(ctx, spec, 1);
	__u64 duration_ns = 0, self_ns = 0;
	bool timed = latency && time_return(bpf_ktime_get_ns(), &duration_ns, &self_ns);
	struct names_scratch *buffer = NULL;
	struct function_stats *stats;
	struct name_key key;
	__u32 zero = 0, half;

	if (names_by_identity()) {
		key.file = file;
		key.func = func;
		key.tgid = only_tgid ? only_tgid : current_pid_tgid() >> 32;
		key.retired = 0;
	} else {
		buffer = bpf_map_lookup_elem(&scratch, &zero);
		if (!buffer)
			return 0;
		read_names(&buffer->names, file, func);
		hash_names(&buffer->names, &key);
	}

	half = enter_half();
	if (half == HALF_NONE)
		return 0;
	stats = function_entry(half, &key, buffer, file, func);
	if (stats)
		add_call(&stats->stats, timed, duration_ns, self_ns);
	else
		__sync_fetch_and_add(&dropped_function_slots, 1);
	leave_half(half);
	return 0;
}

/*
 * On CPython's code_dealloc (python_names.bpf.h): the pair is forgotten, and its entry in the
 * current half moves under its names' id, so names that take the freed memory open an entry of
 * their own. The half user space may be reading holds no call made since the switch, so its
 * entries stay where they are. CPython holds the GIL here: no call of this process adds to the
 * entry while it moves.
 */
SEC("uprobe")
int forget_code(struct pt_regs *ctx)
{
	struct name_key key, retired = { .retired = 1 };
	struct function_stats *stats, *moving;
	__u32 zero = 0, half;
	void *map;

	dying_code_key(ctx, &key);
	bpf_map_delete_elem(&known_names, &key);
	moving = bpf_map_lookup_elem(&retiring, &zero);
	if (!moving)
		return 0;
	half = enter_half();
	if (half == HALF_NONE)
		return 0;
	map = half ? (void *)&function_stats_odd : (void *)&function_stats_even;
	stats = bpf_map_lookup_elem(map, &key);
	if (stats) {
		/* Out before in, so a map with room for this entry has room for it under its new key. */
		*moving = *stats;
		retired.file = moving->name_id;
		bpf_map_delete_elem(map, &key);
		if (bpf_map_update_elem(map, &retired, moving, BPF_NOEXIST))
			__sync_fetch_and_add(&dropped_function_slots, moving->stats.calls);
	}
	leave_half(half);
	return 0;
}

/* Counts a syscall into the current half. */
static __always_inline void count_syscall(__u32 nr, bool timed, __u64 duration_ns)
{
	__u32 half = enter_half();
	struct latency_stats *stats;

	if (half == HALF_NONE)
		return;
	stats = stats_entry(half, &syscall_stats_even, &syscall_stats_odd, &nr);
	if (stats)
		add_call(stats, timed, duration_ns, duration_ns);
	else
		__sync_fetch_and_add(&dropped_syscall_slots, 1);
	leave_half(half);
}

static const struct syscall_in_flight idle_syscall = { .nr = -1 };

SEC("raw_tp")
int on_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 pid_tgid = current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	long nr = (long)ctx->args[1];
	__u8 flags = traced_syscall(pid_tgid >> 32, nr);
	struct syscall_in_flight *slot;

	if (!flags)
		return 0;
	/* exit and exit_group never reach sys_exit: counted as they begin, without a time. */
	if (flags & SYSCALL_NEVER_RETURNS) {
		count_syscall((__u32)nr, false, 0);
		return 0;
	}
	slot = bpf_map_lookup_elem(&syscall_threads, &tid);
	if (!slot) {
		bpf_map_update_elem(&syscall_threads, &tid, &idle_syscall, BPF_NOEXIST);
		slot = bpf_map_lookup_elem(&syscall_threads, &tid);
	}
	if (!slot) {
		__sync_fetch_and_add(&dropped_syscall_slots, 1);
		return 0;
	}
	slot->entry_ns = bpf_ktime_get_ns();
	slot->nr = nr;
	return 0;
}

SEC("raw_tp")
int on_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 tid = (__u32)current_pid_tgid();
	struct syscall_in_flight *slot = bpf_map_lookup_elem(&syscall_threads, &tid);
	__s64 nr;

	if (!slot || slot->nr < 0)
		return 0;
	nr = slot->nr;
	slot->nr = -1;
	count_syscall((__u32)nr, true, bpf_ktime_get_ns() - slot->entry_ns);
	return 0;
}

static __always_inline void forget_thread_state(__u32 tid)
{
	forget_stack(tid);
	bpf_map_delete_elem(&syscall_threads, &tid);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
