// SPDX-License-Identifier: MIT
/*
 * Python function entries and returns (CPython's function__entry / function__return USDT
 * probes: file, function, line). Each thread's open frames are kept here (thread_stack.bpf.h),
 * so a return carries its depth and duration, at any depth, and user space needs no shadow stack.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "usdtrace.h"
#include "current.bpf.h"
#include "usdt_args.bpf.h"
#include "ringbuf.bpf.h"
#include "read_name.bpf.h"
#include "python_names.bpf.h"
#include "line_semaphore.bpf.h"
#include "hash.bpf.h"

struct frame {
	__u64 entry_ns;
};

#include "thread_stack.bpf.h"

struct call_record {
	struct call_event event;
	char names[USDTRACE_NAME_MAX + NAME_READ];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct call_record);
} scratch SEC(".maps");

/* Set by user space when entries are traced: without them there is no depth to keep. */
const volatile bool track_threads = true;

/*
 * Only calls whose function name and file path start with these prefixes are sent (an empty
 * prefix matches all). Depth and durations are still kept for every call, so what is sent
 * nests as it did in the program.
 */
const volatile char func_prefix[USDTRACE_PREFIX_MAX] = {};
const volatile __u32 func_prefix_len = 0;
const volatile char file_prefix[USDTRACE_PREFIX_MAX] = {};
const volatile __u32 file_prefix_len = 0;

/*
 * A direct-mapped cache in front of known_names (python_names.bpf.h), shared by every CPU: a call
 * whose pair sits in its slot costs an inlined array lookup instead of a hash map's helper call.
 * Slots are written without a lock, so each carries a check over its fields: a slot two writers
 * tore reads as a miss, and the call asks known_names, never taking another pair's id.
 */
#define NAME_CACHE_SLOTS 8192

struct cached_name {
	struct name_key key;
	struct known_name name;
	__u64 check;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NAME_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct cached_name);
} name_cache SEC(".maps");

/* The probes' argument specs, when user space could fix them before load (usdt_args.bpf.h). */
const volatile struct usdt_spec on_call_entry_spec = {};
const volatile struct usdt_spec on_call_return_spec = {};

static __always_inline bool starts_with(const char *name, __u32 len, const volatile char *prefix, __u32 prefix_len)
{
	if (prefix_len > len)
		return false;
	for (__u32 i = 0; i < USDTRACE_PREFIX_MAX && i < prefix_len; i++)
		if (name[i] != prefix[i])
			return false;
	return true;
}

/*
 * Reads both names into rec (lengths and truncation in its header) and returns their size;
 * *wanted tells whether the prefixes let the call through.
 */
static __always_inline __u32 read_names(struct call_record *rec, __u64 file, __u64 func, bool *wanted)
{
	struct call_event *event = &rec->event;
	__u32 size;

	event->flags = 0;
	size = read_code_names(rec->names, file, func, &event->file_len, &event->func_len, &event->flags,
			       CALL_FILE_TRUNCATED, CALL_FUNC_TRUNCATED);
	*wanted = starts_with(rec->names, event->file_len, file_prefix, file_prefix_len) &&
		  starts_with(rec->names + event->file_len, event->func_len, func_prefix, func_prefix_len);
	return size;
}

static __always_inline __u64 cache_check(const struct name_key *key, const struct known_name *name)
{
	__u64 h = mix(key->file);

	h = mix(h ^ key->func);
	h = mix(h ^ key->tgid);
	return mix(h ^ ((__u64)name->wanted << 32 | name->id));
}

static __always_inline struct cached_name *cache_slot(const struct name_key *key)
{
	__u32 slot = (__u32)(mix(key->file ^ (key->func << 7)) & (NAME_CACHE_SLOTS - 1));

	return bpf_map_lookup_elem(&name_cache, &slot);
}

static __always_inline bool holds(const struct cached_name *cached, const struct name_key *key)
{
	return cached->key.file == key->file && cached->key.func == key->func && cached->key.tgid == key->tgid;
}

/* The slot's name for the pair, when it holds the pair and its check shows no two writers tore it. */
static __always_inline bool cached_name(const struct cached_name *cached, const struct name_key *key, struct known_name *name)
{
	if (!holds(cached, key))
		return false;
	*name = cached->name;
	return cached->check == cache_check(key, name);
}

/* What is known of the pair: from the cache, else from known_names (and then cached); false when neither knows it. */
static __always_inline bool recall(const struct name_key *key, struct known_name *name)
{
	struct cached_name *cached = cache_slot(key);
	struct known_name *known;

	if (cached && cached_name(cached, key, name))
		return true;
	known = bpf_map_lookup_elem(&known_names, key);
	if (!known)
		return false;
	*name = *known;
	if (cached) {
		cached->key = *key;
		cached->name = *name;
		cached->check = cache_check(key, name);
	}
	return true;
}

/*
 * The first call of a (file, function) pair: its names go out once in a CALL_NAMES record, and
 * the pair is remembered only after that record is in the ring, so any call that finds it there
 * is read after its names.
 */
static __always_inline bool learn_names(struct call_record *rec, const struct name_key *key, struct known_name *name)
{
	struct known_name learnt = {};
	struct known_name *known;
	bool wanted;
	__u32 size = read_names(rec, key->file, key->func, &wanted);

	if (wanted) {
		learnt.wanted = 1;
		learnt.id = new_name_id();
		rec->event.kind = CALL_NAMES;
		rec->event.name_id = learnt.id;
		if (bpf_ringbuf_output(&events, rec, sizeof(rec->event) + size, wakeup_flag(sizeof(rec->event) + size))) {
			__sync_fetch_and_add(&dropped_ring_full, 1);
			return false;
		}
	}
	/* Another CPU may have learnt the pair meanwhile: then its id is the one kept. */
	bpf_map_update_elem(&known_names, key, &learnt, BPF_NOEXIST);
	known = bpf_map_lookup_elem(&known_names, key);
	if (!known)
		return false;
	*name = *known;
	return true;
}

/* Fills everything but the names, their lengths and the flags they set. */
static __always_inline void describe_call(struct call_event *event, __u64 now, __u64 pid_tgid, long line, __u32 depth, __u8 kind)
{
	event->timestamp_ns = now;
	event->pid = pid_tgid >> 32;
	event->tid = (__u32)pid_tgid;
	event->line = line;
	event->depth = depth > 0xffff ? 0xffff : depth;
	event->kind = kind;
	event->cpu = bpf_get_smp_processor_id();
	event->reserved = 0;
}

static __always_inline int record_call(struct pt_regs *ctx, __u8 kind, const volatile struct usdt_spec *fixed_spec)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 pid_tgid = current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	__u32 zero = 0;
	struct call_record *rec;
	struct thread_stack *stack;
	struct frame *frame;
	struct known_name known;
	struct call_event *event;
	struct name_key key;
	long file = 0, func = 0, line = 0;
	__u64 duration_ns = 0;
	__u32 depth = 0, size;
	__u8 flags = 0;
	bool wanted;

	/* A return creates no stack: a missing entry has nothing to pair with. */
	stack = track_threads ? stack_of(tid, kind == CALL_ENTRY) : NULL;
	if (stack && kind == CALL_ENTRY) {
		depth = stack->depth;
		frame = push_frame(stack, tid);
		if (frame)
			frame->entry_ns = now;
	} else if (stack) {
		frame = pop_frame(stack, tid, &depth);
		if (frame) {
			duration_ns = now - frame->entry_ns;
			flags = CALL_HAS_DURATION;
		}
	}

	const volatile struct usdt_spec *spec = usdt_spec(ctx, fixed_spec);
	file = usdt_arg(ctx, spec, 0);
	func = usdt_arg(ctx, spec, 1);
	line = usdt_arg(ctx, spec, 2);

	if (names_by_identity()) {
		key.file = file;
		key.func = func;
		key.tgid = pid_tgid >> 32;
		key.retired = 0;
		if (!recall(&key, &known)) {
			rec = bpf_map_lookup_elem(&scratch, &zero);
			if (!rec || !learn_names(rec, &key, &known))
				return 0;
		}
		if (!known.wanted)
			return 0;
		event = reserve_event(sizeof(*event));
		if (!event)
			return 0;
		describe_call(event, now, pid_tgid, line, depth, kind);
		event->duration_ns = duration_ns;
		event->flags = flags;
		event->file_len = 0;
		event->func_len = 0;
		event->name_id = known.id;
		commit_event(event, sizeof(*event));
		return 0;
	}

	rec = bpf_map_lookup_elem(&scratch, &zero);
	if (!rec)
		return 0;
	size = read_names(rec, file, func, &wanted);
	if (!wanted)
		return 0;
	describe_call(&rec->event, now, pid_tgid, line, depth, kind);
	rec->event.duration_ns = duration_ns;
	rec->event.flags |= flags;
	rec->event.name_id = 0;
	submit_event(rec, sizeof(rec->event) + size);
	return 0;
}

static __always_inline void forget_thread_state(__u32 tid)
{
	forget_stack(tid);
}

SEC("usdt")
int on_call_entry(struct pt_regs *ctx)
{
	return record_call(ctx, CALL_ENTRY, &on_call_entry_spec);
}

SEC("usdt")
int on_call_return(struct pt_regs *ctx)
{
	return record_call(ctx, CALL_RETURN, &on_call_return_spec);
}

/*
 * On CPython's code_dealloc (python_names.bpf.h): the pair is forgotten, here (known_names and
 * the cache) and in user space. Telling user space only frees its copy of the names: when the
 * ring is full that is skipped, and no call is lost, so nothing is counted.
 */
SEC("uprobe")
int forget_code(struct pt_regs *ctx)
{
	struct known_name forgotten = {};
	struct cached_name *cached;
	struct known_name *known;
	struct call_event *event;
	struct name_key key;

	dying_code_key(ctx, &key);
	/* The cache may still hold a pair known_names has evicted: it goes either way. */
	cached = cache_slot(&key);
	if (cached && holds(cached, &key)) {
		struct known_name name;

		if (cached_name(cached, &key, &name))
			forgotten = name;
		__builtin_memset(cached, 0, sizeof(*cached));
	}
	known = bpf_map_lookup_elem(&known_names, &key);
	if (known) {
		forgotten = *known;
		bpf_map_delete_elem(&known_names, &key);
	}
	if (!forgotten.wanted)
		return 0;
	event = bpf_ringbuf_reserve(&events, sizeof(*event), 0);
	if (event) {
		__builtin_memset(event, 0, sizeof(*event));
		event->kind = CALL_FORGET;
		event->name_id = forgotten.id;
		commit_event(event, sizeof(*event));
	}
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
