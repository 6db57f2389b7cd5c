/* SPDX-License-Identifier: MIT */
/*
 * The output path every usdtrace BPF program shares: one ring buffer named `events`, sized by
 * user space before load, and a submit that wakes the reader only when enough has piled up.
 * Waking per record costs the traced program several times the uprobe itself; user space
 * drains on a short timer as well, so a quiet trace still arrives within that interval.
 */
#ifndef USDTRACE_RINGBUF_BPF_H
#define USDTRACE_RINGBUF_BPF_H

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

/* Bytes waiting in the ring before a record forces a wakeup; set by user space before load. */
const volatile __u64 wakeup_bytes = 1 << 16;

/* Records the ring had no room for. User space reads every `dropped_*` global as lost events. */
__u64 dropped_ring_full = 0;

static __always_inline __u64 wakeup_flag(void)
{
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* Copies a record of variable size into the ring. */
static __always_inline void submit_event(void *record, __u64 size)
{
	if (bpf_ringbuf_output(&events, record, size, wakeup_flag()))
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

static __always_inline void commit_event(void *record)
{
	bpf_ringbuf_submit(record, wakeup_flag());
}

#endif /* USDTRACE_RINGBUF_BPF_H */
