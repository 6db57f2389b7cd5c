// SPDX-License-Identifier: MIT
/*
 * Calls into shared-library functions, ltrace style: a uprobe at each function's entry keeps
 * the call's arguments and start time on a small per-thread stack, and a uretprobe on the same
 * function pops it and writes one record with the return value and the duration. The cookie of
 * both attachments says which function it is.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "usdtrace.h"
#include "current.bpf.h"
#include "ringbuf.bpf.h"
#include "thread_state.bpf.h"
#include "python_stack.bpf.h"

/* Traced calls a thread can be inside at once; deeper ones are counted in dropped_deep_calls. */
#define MAX_PENDING_CALLS 32

/*
 * How far a return moves the stack pointer from where it was at the function's first
 * instruction: x86's `ret` pops the return address `call` pushed; arm64 returns through LR.
 * And the sixth argument's register, which this libbpf's bpf_tracing.h does not name.
 */
#if defined(__TARGET_ARCH_x86)
#define RETURN_SP_SHIFT 8
#define SIXTH_ARG(ctx) ((ctx)->r9)
#elif defined(__TARGET_ARCH_arm64)
#define RETURN_SP_SHIFT 0
#define SIXTH_ARG(ctx) (((struct user_pt_regs *)(ctx))->regs[5])
#else
#error "libcalls.bpf.c knows the return convention of x86 and arm64 only"
#endif

struct pending_call {
	__u64 entry_ns;
	/* the stack pointer at entry: identifies which frame a return belongs to */
	__u64 stack_pointer;
	__u64 args[LIBRARY_CALL_ARGS];
};

struct thread_calls {
	__u32 depth;
	struct pending_call calls[MAX_PENDING_CALLS];
};

/*
 * Only threads inside a traced call have an entry: it goes when their outermost call returns,
 * or when the thread exits inside one (pthread_exit, exit: calls that never return).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct thread_calls);
} threads SEC(".maps");

/* Calls whose thread finds no entry in `threads` (dropped_thread_slots) are not reported. */
/* Calls made deeper than MAX_PENDING_CALLS traced calls: they are not reported. */
__u64 dropped_deep_calls = 0;

static const struct thread_calls fresh_thread;

static __always_inline void forget_thread_state(__u32 tid)
{
	bpf_map_delete_elem(&threads, &tid);
	bpf_map_delete_elem(&thread_states, &tid);
}

SEC("uprobe")
int on_library_entry(struct pt_regs *ctx)
{
	__u32 tid = (__u32)current_pid_tgid();
	struct thread_calls *thread = thread_state(&threads, tid, &fresh_thread);
	struct pending_call *call;
	__u32 depth;

	if (!thread)
		return 0;
	depth = thread->depth;
	if (depth >= MAX_PENDING_CALLS) {
		__sync_fetch_and_add(&dropped_deep_calls, 1);
		return 0;
	}
	call = &thread->calls[depth];
	call->stack_pointer = PT_REGS_SP(ctx);
	call->args[0] = PT_REGS_PARM1(ctx);
	call->args[1] = PT_REGS_PARM2(ctx);
	call->args[2] = PT_REGS_PARM3(ctx);
	call->args[3] = PT_REGS_PARM4(ctx);
	call->args[4] = PT_REGS_PARM5(ctx);
	call->args[5] = SIXTH_ARG(ctx);
	thread->depth = depth + 1;
	/* Last, so the time spent here is not counted in the call. */
	call->entry_ns = bpf_ktime_get_ns();
	return 0;
}

SEC("uretprobe")
int on_library_return(struct pt_regs *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 pid_tgid = current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	__u64 entry_sp = PT_REGS_SP(ctx) - RETURN_SP_SHIFT;
	struct thread_calls *thread = bpf_map_lookup_elem(&threads, &tid);
	struct library_call_event event;
	struct pending_call *call;
	__u32 depth, i;

	if (!thread)
		return 0; /* the call began before the trace */
	depth = thread->depth;
	/*
	 * Frames deeper than this return were left without returning (longjmp, exceptions
	 * unwinding through them): drop them. A frame further out means this call began before
	 * the trace.
	 */
	for (i = 0; i < MAX_PENDING_CALLS && depth > 0; i++) {
		if (thread->calls[(depth - 1) & (MAX_PENDING_CALLS - 1)].stack_pointer >= entry_sp)
			break;
		depth--;
	}
	thread->depth = depth;
	if (depth == 0 || depth > MAX_PENDING_CALLS)
		goto done;
	call = &thread->calls[(depth - 1) & (MAX_PENDING_CALLS - 1)];
	if (call->stack_pointer != entry_sp)
		goto done;

	depth--;
	thread->depth = depth;
	event.timestamp_ns = call->entry_ns;
	event.duration_ns = now - call->entry_ns;
	__builtin_memcpy(event.args, call->args, sizeof(event.args));
	event.return_value = PT_REGS_RC(ctx);
	event.pid = pid_tgid >> 32;
	event.tid = tid;
	event.symbol = bpf_get_attach_cookie(ctx);
	event.depth = depth;
	send_event_stack(event.timestamp_ns);
	submit_event(&event, sizeof(event));
done:
	if (depth == 0)
		bpf_map_delete_elem(&threads, &tid);
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
