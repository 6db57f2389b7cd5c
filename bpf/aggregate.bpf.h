/* SPDX-License-Identifier: MIT */
/*
 * Sums kept in the kernel and read by user space once per interval, without losing an update.
 *
 * Every aggregate map comes in two halves (`*_even`, `*_odd`), chosen by the parity of the
 * `generation` user space sets. To take a snapshot, user space advances the generation, waits
 * until no program is still writing into the old half (its `writers_*` count is 0), and then
 * reads and empties that half: nothing writes to it any more, so no update falls between the
 * read and the removal. A program registers as a writer before it checks the generation again,
 * so one that read the old generation just before the switch is either counted as a writer or
 * moves to the new half. The atomics are fully ordered (fetching forms), which is what makes the
 * register-then-check order hold on weakly ordered CPUs as well.
 */
#ifndef USDTRACE_AGGREGATE_BPF_H
#define USDTRACE_AGGREGATE_BPF_H

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} generation SEC(".maps");

/* Programs currently writing into each half. */
__u64 writers_even = 0;
__u64 writers_odd = 0;

/* Updates given up because the generation moved twice while one began (two snapshots at once). */
__u64 dropped_snapshot_race = 0;

#define HALF_NONE 2
/* Compare-and-swap attempts for min/max; each failure means another CPU improved the value. */
#define EXTREME_ATTEMPTS 8

/* An atomic add whose result is used, so the compiler emits the fully ordered fetching form. */
static __always_inline void ordered_add(__u64 *counter, __s64 delta)
{
	__u64 before = __sync_fetch_and_add(counter, delta);

	asm volatile("" : "+r"(before));
}

/* Registers as a writer of the current half and returns it (0 even, 1 odd; HALF_NONE on failure). */
static __always_inline __u32 enter_half(void)
{
	__u32 zero = 0;

	for (int attempt = 0; attempt < 2; attempt++) {
		__u64 *current = bpf_map_lookup_elem(&generation, &zero);
		__u64 seen;

		if (!current)
			return HALF_NONE;
		seen = *(volatile __u64 *)current;
		ordered_add(seen & 1 ? &writers_odd : &writers_even, 1);
		if (*(volatile __u64 *)current == seen)
			return seen & 1;
		ordered_add(seen & 1 ? &writers_odd : &writers_even, -1);
	}
	__sync_fetch_and_add(&dropped_snapshot_race, 1);
	return HALF_NONE;
}

static __always_inline void leave_half(__u32 half)
{
	ordered_add(half ? &writers_odd : &writers_even, -1);
}

/*
 * `key`'s value in the half's map. Each half has a lookup of its own: the verifier inlines a
 * lookup only when it knows the map, and one whose map is picked at run time goes through the
 * generic helper and an indirect call. The empty asm keeps clang from merging the two calls.
 */
static __always_inline void *lookup_in_half(__u32 half, void *even, void *odd, const void *key)
{
	void *value;

	if (half) {
		value = bpf_map_lookup_elem(odd, key);
		asm volatile("" : "+r"(value));
	} else {
		value = bpf_map_lookup_elem(even, key);
	}
	return value;
}

/*
 * Creates `key`'s entry in the half's map from `fresh` unless it is there, and returns it; NULL
 * when the map is full. Another CPU may create it between the two calls: NOEXIST fails, and the
 * lookup finds that one.
 */
static __always_inline void *open_in_half(__u32 half, void *even, void *odd, const void *key, const void *fresh)
{
	void *map = half ? odd : even;

	bpf_map_update_elem(map, key, fresh, BPF_NOEXIST);
	return bpf_map_lookup_elem(map, key);
}

static const struct latency_stats fresh_stats = { .min_ns = ~0ULL };

/* The entry for `key` in the half's map, created empty if missing; NULL when the map is full. */
static __always_inline struct latency_stats *stats_entry(__u32 half, void *even, void *odd, const void *key)
{
	struct latency_stats *stats = lookup_in_half(half, even, odd, key);

	return stats ? stats : open_in_half(half, even, odd, key, &fresh_stats);
}

static __always_inline __u32 log2_bucket(__u64 value)
{
	__u32 bucket = 0;

	if (value >> 32) { value >>= 32; bucket += 32; }
	if (value >> 16) { value >>= 16; bucket += 16; }
	if (value >> 8) { value >>= 8; bucket += 8; }
	if (value >> 4) { value >>= 4; bucket += 4; }
	if (value >> 2) { value >>= 2; bucket += 2; }
	if (value >> 1) bucket += 1;
	return bucket;
}

static __always_inline void store_min(__u64 *slot, __u64 value)
{
	__u64 seen = *(volatile __u64 *)slot;

	for (int attempt = 0; attempt < EXTREME_ATTEMPTS && value < seen; attempt++) {
		__u64 was = __sync_val_compare_and_swap(slot, seen, value);

		if (was == seen)
			return;
		seen = was;
	}
}

static __always_inline void store_max(__u64 *slot, __u64 value)
{
	__u64 seen = *(volatile __u64 *)slot;

	for (int attempt = 0; attempt < EXTREME_ATTEMPTS && value > seen; attempt++) {
		__u64 was = __sync_val_compare_and_swap(slot, seen, value);

		if (was == seen)
			return;
		seen = was;
	}
}

/* Counts one call; a timed one also adds its duration (and self time) to the sums. */
static __always_inline void add_call(struct latency_stats *stats, bool timed, __u64 duration_ns, __u64 self_ns)
{
	__sync_fetch_and_add(&stats->calls, 1);
	if (!timed)
		return;
	__sync_fetch_and_add(&stats->timed_calls, 1);
	__sync_fetch_and_add(&stats->total_ns, duration_ns);
	__sync_fetch_and_add(&stats->self_ns, self_ns);
	__sync_fetch_and_add(&stats->histogram[log2_bucket(duration_ns) & (USDTRACE_HISTOGRAM_BUCKETS - 1)], 1);
	store_min(&stats->min_ns, duration_ns);
	store_max(&stats->max_ns, duration_ns);
}

#endif /* USDTRACE_AGGREGATE_BPF_H */
