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

static __always_inline void submit_event(void *record, __u64 size)
{
	__u64 queued = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	__u64 flags = queued >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;

	if (bpf_ringbuf_output(&events, record, size, flags))
		__sync_fetch_and_add(&dropped_ring_full, 1);
}

#endif /* USDTRACE_RINGBUF_BPF_H */
