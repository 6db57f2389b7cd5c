// SPDX-License-Identifier: MIT
/*
 * Any USDT probe of any program. One program serves every attachment: the cookie of its spec
 * says how many arguments to read and which of them are strings to copy (usdtrace.h), so the
 * record carries raw values and the strings, and user space applies the declared types.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "usdtrace.h"
#include "current.bpf.h"
#include "usdt_args.bpf.h"
#include "ringbuf.bpf.h"
#include "read_name.bpf.h"
#include "line_semaphore.bpf.h"

#define VALUES_BYTES (USDT_MAX_ARGS * 8)
/* The furthest a string can start: after every value and USDT_MAX_ARGS - 1 whole strings. */
#define LAST_STR_AT (VALUES_BYTES + (USDT_MAX_ARGS - 1) * USDTRACE_NAME_MAX)

struct usdt_record {
	struct usdt_event event;
	/* arg_count values, then the strings right after them */
	__u8 body[LAST_STR_AT + NAME_READ];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct usdt_record);
} scratch SEC(".maps");

/*
 * A function of its own, verified once: inlined into the loop below, each argument's register
 * switch would multiply the paths the verifier walks past its limit.
 */
__noinline long read_usdt_arg(struct pt_regs *ctx, const volatile struct usdt_spec *spec, __u32 n)
{
	return usdt_arg(ctx, spec, n);
}

SEC("usdt")
int on_usdt(struct pt_regs *ctx)
{
	__u64 pid_tgid = current_pid_tgid();
	const volatile struct usdt_spec *spec = usdt_spec(ctx, NULL);
	__u64 cookie = usdt_cookie(spec);
	__u32 count = cookie & USDT_COOKIE_COUNT_MASK;
	__u32 zero = 0, strings_at, strings_len = 0, i;
	struct usdt_record *rec = bpf_map_lookup_elem(&scratch, &zero);

	if (!rec || !spec)
		return 0;
	if (count > USDT_MAX_ARGS)
		count = USDT_MAX_ARGS;
	rec->event.timestamp_ns = bpf_ktime_get_ns();
	rec->event.pid = pid_tgid >> 32;
	rec->event.tid = (__u32)pid_tgid;
	rec->event.arg_count = count;
	rec->event.flags = 0;
	strings_at = count * 8;

	for (i = 0; i < USDT_MAX_ARGS && i < count; i++) {
		long value = read_usdt_arg(ctx, spec, i);

		if (cookie & (1ULL << (USDT_COOKIE_STR_SHIFT + i))) {
			__u32 at = strings_at + strings_len;

			if (at > LAST_STR_AT)
				break;
			/* An unreadable pointer arrives as an empty string. */
			value = read_name((char *)rec->body + at, value, &rec->event.flags, USDT_STR_TRUNCATED);
			strings_len += value;
		}
		*(__u64 *)(rec->body + i * 8) = value;
	}

	submit_event(rec, sizeof(rec->event) + strings_at + strings_len);
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
