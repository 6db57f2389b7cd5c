// SPDX-License-Identifier: MIT
/*
 * System calls of the traced processes, the strace view: raw sys_enter / sys_exit tracepoints,
 * paired per thread here so each syscall arrives as one record with its arguments, its return
 * value and its duration. A path argument is read at entry, while the caller's memory holds it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "usdtrace.h"
#include "current.bpf.h"
#include "ringbuf.bpf.h"
#include "syscall_filter.bpf.h"
#include "thread_state.bpf.h"
#include "read_name.bpf.h"
#include "python_stack.bpf.h"

/* A thread's syscall in flight, already laid out as the record it becomes on return. */
struct syscall_record {
	struct syscall_event event;
	char detail[NAME_READ];
};

/* One slot per traced thread, reused for each of its syscalls; timestamp_ns 0 = none in flight. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct syscall_record);
} in_flight SEC(".maps");

/* Syscalls whose thread finds no slot in `in_flight` (dropped_thread_slots) are not traced. */
static const struct syscall_record idle_record;

static __always_inline void send(struct syscall_record *record)
{
	__u32 len = record->event.detail_len;

	if (len > USDTRACE_NAME_MAX)
		len = USDTRACE_NAME_MAX;
	send_event_stack(record->event.timestamp_ns);
	submit_event(record, sizeof(record->event) + len);
	record->event.timestamp_ns = 0;
}

/* Reads the path argument named by `flags` into the record's detail. */
static __always_inline void read_path(struct syscall_record *record, __u8 flags)
{
	__u32 arg = (flags & SYSCALL_PATH_ARG_MASK) >> SYSCALL_PATH_ARG_SHIFT;

	record->event.detail_len = 0;
	if (arg == 0 || arg > 6)
		return;
	record->event.detail_len = read_name(record->detail, record->event.args[arg - 1], &record->event.flags,
					     SYSCALL_DETAIL_TRUNCATED);
}

SEC("raw_tp")
int on_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 pid_tgid = current_pid_tgid();
	long nr = (long)ctx->args[1];
	__u8 flags = traced_syscall(pid_tgid >> 32, nr);
	struct syscall_record *record;

	if (!flags)
		return 0;
	record = thread_state(&in_flight, (__u32)pid_tgid, &idle_record);
	if (!record)
		return 0;
	record->event.timestamp_ns = bpf_ktime_get_ns();
	record->event.duration_ns = 0;
	record->event.ret = 0;
	record->event.pid = pid_tgid >> 32;
	record->event.tid = (__u32)pid_tgid;
	record->event.nr = (__u32)nr;
	record->event.flags = 0;
	read_syscall_args((struct pt_regs *)ctx->args[0], record->event.args);
	read_path(record, flags);
	/* exit and exit_group never reach sys_exit: they are reported as they begin. */
	if (flags & SYSCALL_NEVER_RETURNS)
		send(record);
	return 0;
}

SEC("raw_tp")
int on_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 tid = (__u32)current_pid_tgid();
	struct syscall_record *record = bpf_map_lookup_elem(&in_flight, &tid);

	if (!record || record->event.timestamp_ns == 0)
		return 0;
	record->event.duration_ns = bpf_ktime_get_ns() - record->event.timestamp_ns;
	record->event.ret = (__s64)ctx->args[1];
	record->event.flags |= SYSCALL_RETURNED;
	send(record);
	return 0;
}

static __always_inline void forget_thread_state(__u32 tid)
{
	bpf_map_delete_elem(&in_flight, &tid);
	bpf_map_delete_elem(&thread_states, &tid);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
