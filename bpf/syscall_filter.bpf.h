/* SPDX-License-Identifier: MIT */
/*
 * Which syscalls of which processes a program follows. The raw sys_enter / sys_exit tracepoints
 * fire for every syscall on the machine, so the first thing each program does is ask this
 * filter: the traced processes (by tgid) and the wanted syscall numbers are maps user space
 * fills before attaching.
 */
#ifndef USDTRACE_SYSCALL_FILTER_BPF_H
#define USDTRACE_SYSCALL_FILTER_BPF_H

#include <bpf/bpf_core_read.h>

/* The traced processes, by tgid; user space sizes it to their number. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u8);
} traced_tgids SEC(".maps");

/* enum syscall_flags per syscall number. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, USDTRACE_SYSCALL_TABLE_SIZE);
	__type(key, __u32);
	__type(value, __u8);
} syscall_flags SEC(".maps");

/* Follow every syscall number, not only those flagged SYSCALL_WANTED. */
const volatile bool every_syscall = false;

/*
 * With { binary }: follow every process whose executable is this file (its inode and the
 * kernel's dev_t of its file system) instead of the processes in traced_tgids, so processes
 * started after the trace are followed too.
 */
const volatile __u64 binary_ino = 0;
const volatile __u32 binary_dev = 0;

static __always_inline bool runs_binary(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct inode *inode = BPF_CORE_READ(task, mm, exe_file, f_inode);

	return inode && BPF_CORE_READ(inode, i_ino) == binary_ino && BPF_CORE_READ(inode, i_sb, s_dev) == binary_dev;
}

/* The flags of syscall `nr` in process `tgid`, SYSCALL_WANTED included; 0 when it is not traced. */
static __always_inline __u8 traced_syscall(__u32 tgid, long nr)
{
	__u32 index = (__u32)nr;
	__u8 *flags = NULL;

	if (binary_ino ? !runs_binary() : !bpf_map_lookup_elem(&traced_tgids, &tgid))
		return 0;
	if (nr >= 0 && nr < USDTRACE_SYSCALL_TABLE_SIZE)
		flags = bpf_map_lookup_elem(&syscall_flags, &index);
	if (every_syscall)
		return (flags ? *flags : 0) | SYSCALL_WANTED;
	return flags && (*flags & SYSCALL_WANTED) ? *flags : 0;
}

/* The six raw arguments of the syscall being entered, from the user registers sys_enter gets. */
static __always_inline void read_syscall_args(struct pt_regs *regs, __u64 args[6])
{
#if defined(__TARGET_ARCH_x86)
	args[0] = BPF_CORE_READ(regs, di);
	args[1] = BPF_CORE_READ(regs, si);
	args[2] = BPF_CORE_READ(regs, dx);
	args[3] = BPF_CORE_READ(regs, r10);
	args[4] = BPF_CORE_READ(regs, r8);
	args[5] = BPF_CORE_READ(regs, r9);
#elif defined(__TARGET_ARCH_arm64)
	/* x0 already holds the return value by sys_exit; the kernel keeps the first argument apart. */
	args[0] = BPF_CORE_READ(regs, orig_x0);
	args[1] = BPF_CORE_READ(regs, regs[1]);
	args[2] = BPF_CORE_READ(regs, regs[2]);
	args[3] = BPF_CORE_READ(regs, regs[3]);
	args[4] = BPF_CORE_READ(regs, regs[4]);
	args[5] = BPF_CORE_READ(regs, regs[5]);
#else
#error "syscall arguments are read on x86_64 and aarch64 only"
#endif
}

#endif /* USDTRACE_SYSCALL_FILTER_BPF_H */
