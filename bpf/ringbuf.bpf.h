/* SPDX-License-Identifier: MIT */
/*
 * The output path every usdtrace BPF program shares: one ring buffer named `events`, sized by
 * user space before load, and a submit that wakes the reader only once enough has gone out.
 * Waking per record costs the traced program several times the uprobe itself; user space
 * drains on a short timer as well, so a quiet trace still arrives within that interval.
 *
 * What has gone out is counted per CPU, in a map the verifier inlines: asking the ring how much
 * it holds (bpf_ringbuf_query) would cost a helper call and a read of the line the reader
 * writes, on every record.
 */
#ifndef USDTRACE_RINGBUF_BPF_H
#define USDTRACE_RINGBUF_BPF_H

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

/* Bytes one CPU sends between wakeups of the reader; set by user space before load. */
const volatile __u64 wakeup_bytes = 1 << 16;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} unannounced_bytes SEC(".maps");

/* Records the ring had no room for. User space reads every `dropped_*` global as lost events. */
__u64 dropped_ring_full = 0;

/* The submit flag for a record of `size` bytes: a wakeup once this CPU's unannounced bytes reach wakeup_bytes. */
static __always_inline __u64 wakeup_flag(__u64 size)
{
	__u32 zero = 0;
	__u64 *unannounced = bpf_map_lookup_elem(&unannounced_bytes, &zero);

	if (!unannounced)
		return BPF_RB_NO_WAKEUP;
	*unannounced += size;
	if (*unannounced < wakeup_bytes)
		return BPF_RB_NO_WAKEUP;
	*unannounced = 0;
	return BPF_RB_FORCE_WAKEUP;
}

/* Copies a record of variable size into the ring. */
static __always_inline void submit_event(void *record, __u64 size)
{
	if (bpf_ringbuf_output(&events, record, size, wakeup_flag(size)))
		__sync_fetch_and_add(&dropped_ring_full, 1);
}

/* Room for a fixed-size record, filled in place and sent with commit_event(); NULL (counted) when full. */
static __always_inline void *reserve_event(__u64 size)
{
	void *record = bpf_ringbuf_reserve(&events, size, 0);

	if (!record)
		__sync_fetch_and_add(&dropped_ring_full, 1);
	return record;
}

/* Sends a record from reserve_event() of `size` bytes. */
static __always_inline void commit_event(void *record, __u64 size)
{
	bpf_ringbuf_submit(record, wakeup_flag(size));
}

#endif /* USDTRACE_RINGBUF_BPF_H */
