/**
 * Syscall numbers → names for the architectures usdtrace runs on. The numbers are the kernel's
 * stable ABI, so the table lives here and no kernel headers are needed at run time. Generated
 * from Linux 6.1's UAPI headers (x86_64: asm/unistd_64.h; aarch64: asm-generic/unistd.h with
 * arm64's __ARCH_WANT_* choices), then extended with the syscalls added up to Linux 6.18 from
 * the kernel's syscall tables (x86_64 335–336, both 451–470). test/syscall-table.test.ts checks
 * the x86_64 table against the headers installed on the machine.
 */
import { TraceError } from '../errors.js'

/** Runs of consecutive numbers: [first number, names from it on]. */
type SyscallRuns = [number, string[]][]

/**
 * Since Linux 5.1 every architecture numbers new syscalls alike, from 424 on: one run serves
 * both tables.
 */
const UNIFIED_FROM_424: [number, string[]] = [
  424,
  [
    'pidfd_send_signal', 'io_uring_setup', 'io_uring_enter', 'io_uring_register', 'open_tree',
    'move_mount', 'fsopen', 'fsconfig', 'fsmount', 'fspick', 'pidfd_open', 'clone3', 'close_range',
    'openat2', 'pidfd_getfd', 'faccessat2', 'process_madvise', 'epoll_pwait2', 'mount_setattr',
    'quotactl_fd', 'landlock_create_ruleset', 'landlock_add_rule', 'landlock_restrict_self',
    'memfd_secret', 'process_mrelease', 'futex_waitv', 'set_mempolicy_home_node', 'cachestat',
    'fchmodat2', 'map_shadow_stack', 'futex_wake', 'futex_wait', 'futex_requeue', 'statmount',
    'listmount', 'lsm_get_self_attr', 'lsm_set_self_attr', 'lsm_list_modules', 'mseal', 'setxattrat',
    'getxattrat', 'listxattrat', 'removexattrat', 'open_tree_attr', 'file_getattr', 'file_setattr',
    'listns'
  ],
]

const X86_64: SyscallRuns = [
  [
    0,
    [
      'read', 'write', 'open', 'close', 'stat', 'fstat', 'lstat', 'poll', 'lseek', 'mmap', 'mprotect',
      'munmap', 'brk', 'rt_sigaction', 'rt_sigprocmask', 'rt_sigreturn', 'ioctl', 'pread64', 'pwrite64',
      'readv', 'writev', 'access', 'pipe', 'select', 'sched_yield', 'mremap', 'msync', 'mincore',
      'madvise', 'shmget', 'shmat', 'shmctl', 'dup', 'dup2', 'pause', 'nanosleep', 'getitimer', 'alarm',
      'setitimer', 'getpid', 'sendfile', 'socket', 'connect', 'accept', 'sendto', 'recvfrom', 'sendmsg',
      'recvmsg', 'shutdown', 'bind', 'listen', 'getsockname', 'getpeername', 'socketpair', 'setsockopt',
      'getsockopt', 'clone', 'fork', 'vfork', 'execve', 'exit', 'wait4', 'kill', 'uname', 'semget',
      'semop', 'semctl', 'shmdt', 'msgget', 'msgsnd', 'msgrcv', 'msgctl', 'fcntl', 'flock', 'fsync',
      'fdatasync', 'truncate', 'ftruncate', 'getdents', 'getcwd', 'chdir', 'fchdir', 'rename', 'mkdir',
      'rmdir', 'creat', 'link', 'unlink', 'symlink', 'readlink', 'chmod', 'fchmod', 'chown', 'fchown',
      'lchown', 'umask', 'gettimeofday', 'getrlimit', 'getrusage', 'sysinfo', 'times', 'ptrace', 'getuid',
      'syslog', 'getgid', 'setuid', 'setgid', 'geteuid', 'getegid', 'setpgid', 'getppid', 'getpgrp',
      'setsid', 'setreuid', 'setregid', 'getgroups', 'setgroups', 'setresuid', 'getresuid', 'setresgid',
      'getresgid', 'getpgid', 'setfsuid', 'setfsgid', 'getsid', 'capget', 'capset', 'rt_sigpending',
      'rt_sigtimedwait', 'rt_sigqueueinfo', 'rt_sigsuspend', 'sigaltstack', 'utime', 'mknod', 'uselib',
      'personality', 'ustat', 'statfs', 'fstatfs', 'sysfs', 'getpriority', 'setpriority',
      'sched_setparam', 'sched_getparam', 'sched_setscheduler', 'sched_getscheduler',
      'sched_get_priority_max', 'sched_get_priority_min', 'sched_rr_get_interval', 'mlock', 'munlock',
      'mlockall', 'munlockall', 'vhangup', 'modify_ldt', 'pivot_root', '_sysctl', 'prctl', 'arch_prctl',
      'adjtimex', 'setrlimit', 'chroot', 'sync', 'acct', 'settimeofday', 'mount', 'umount2', 'swapon',
      'swapoff', 'reboot', 'sethostname', 'setdomainname', 'iopl', 'ioperm', 'create_module',
      'init_module', 'delete_module', 'get_kernel_syms', 'query_module', 'quotactl', 'nfsservctl',
      'getpmsg', 'putpmsg', 'afs_syscall', 'tuxcall', 'security', 'gettid', 'readahead', 'setxattr',
      'lsetxattr', 'fsetxattr', 'getxattr', 'lgetxattr', 'fgetxattr', 'listxattr', 'llistxattr',
      'flistxattr', 'removexattr', 'lremovexattr', 'fremovexattr', 'tkill', 'time', 'futex',
      'sched_setaffinity', 'sched_getaffinity', 'set_thread_area', 'io_setup', 'io_destroy',
      'io_getevents', 'io_submit', 'io_cancel', 'get_thread_area', 'lookup_dcookie', 'epoll_create',
      'epoll_ctl_old', 'epoll_wait_old', 'remap_file_pages', 'getdents64', 'set_tid_address',
      'restart_syscall', 'semtimedop', 'fadvise64', 'timer_create', 'timer_settime', 'timer_gettime',
      'timer_getoverrun', 'timer_delete', 'clock_settime', 'clock_gettime', 'clock_getres',
      'clock_nanosleep', 'exit_group', 'epoll_wait', 'epoll_ctl', 'tgkill', 'utimes', 'vserver', 'mbind',
      'set_mempolicy', 'get_mempolicy', 'mq_open', 'mq_unlink', 'mq_timedsend', 'mq_timedreceive',
      'mq_notify', 'mq_getsetattr', 'kexec_load', 'waitid', 'add_key', 'request_key', 'keyctl',
      'ioprio_set', 'ioprio_get', 'inotify_init', 'inotify_add_watch', 'inotify_rm_watch',
      'migrate_pages', 'openat', 'mkdirat', 'mknodat', 'fchownat', 'futimesat', 'newfstatat', 'unlinkat',
      'renameat', 'linkat', 'symlinkat', 'readlinkat', 'fchmodat', 'faccessat', 'pselect6', 'ppoll',
      'unshare', 'set_robust_list', 'get_robust_list', 'splice', 'tee', 'sync_file_range', 'vmsplice',
      'move_pages', 'utimensat', 'epoll_pwait', 'signalfd', 'timerfd_create', 'eventfd', 'fallocate',
      'timerfd_settime', 'timerfd_gettime', 'accept4', 'signalfd4', 'eventfd2', 'epoll_create1', 'dup3',
      'pipe2', 'inotify_init1', 'preadv', 'pwritev', 'rt_tgsigqueueinfo', 'perf_event_open', 'recvmmsg',
      'fanotify_init', 'fanotify_mark', 'prlimit64', 'name_to_handle_at', 'open_by_handle_at',
      'clock_adjtime', 'syncfs', 'sendmmsg', 'setns', 'getcpu', 'process_vm_readv', 'process_vm_writev',
      'kcmp', 'finit_module', 'sched_setattr', 'sched_getattr', 'renameat2', 'seccomp', 'getrandom',
      'memfd_create', 'kexec_file_load', 'bpf', 'execveat', 'userfaultfd', 'membarrier', 'mlock2',
      'copy_file_range', 'preadv2', 'pwritev2', 'pkey_mprotect', 'pkey_alloc', 'pkey_free', 'statx',
      'io_pgetevents', 'rseq', 'uretprobe', 'uprobe'
    ],
  ],
  UNIFIED_FROM_424,
]

const AARCH64: SyscallRuns = [
  [
    0,
    [
      'io_setup', 'io_destroy', 'io_submit', 'io_cancel', 'io_getevents', 'setxattr', 'lsetxattr',
      'fsetxattr', 'getxattr', 'lgetxattr', 'fgetxattr', 'listxattr', 'llistxattr', 'flistxattr',
      'removexattr', 'lremovexattr', 'fremovexattr', 'getcwd', 'lookup_dcookie', 'eventfd2',
      'epoll_create1', 'epoll_ctl', 'epoll_pwait', 'dup', 'dup3', 'fcntl', 'inotify_init1',
      'inotify_add_watch', 'inotify_rm_watch', 'ioctl', 'ioprio_set', 'ioprio_get', 'flock', 'mknodat',
      'mkdirat', 'unlinkat', 'symlinkat', 'linkat', 'renameat', 'umount2', 'mount', 'pivot_root',
      'nfsservctl', 'statfs', 'fstatfs', 'truncate', 'ftruncate', 'fallocate', 'faccessat', 'chdir',
      'fchdir', 'chroot', 'fchmod', 'fchmodat', 'fchownat', 'fchown', 'openat', 'close', 'vhangup',
      'pipe2', 'quotactl', 'getdents64', 'lseek', 'read', 'write', 'readv', 'writev', 'pread64',
      'pwrite64', 'preadv', 'pwritev', 'sendfile', 'pselect6', 'ppoll', 'signalfd4', 'vmsplice', 'splice',
      'tee', 'readlinkat', 'newfstatat', 'fstat', 'sync', 'fsync', 'fdatasync', 'sync_file_range',
      'timerfd_create', 'timerfd_settime', 'timerfd_gettime', 'utimensat', 'acct', 'capget', 'capset',
      'personality', 'exit', 'exit_group', 'waitid', 'set_tid_address', 'unshare', 'futex',
      'set_robust_list', 'get_robust_list', 'nanosleep', 'getitimer', 'setitimer', 'kexec_load',
      'init_module', 'delete_module', 'timer_create', 'timer_gettime', 'timer_getoverrun',
      'timer_settime', 'timer_delete', 'clock_settime', 'clock_gettime', 'clock_getres',
      'clock_nanosleep', 'syslog', 'ptrace', 'sched_setparam', 'sched_setscheduler', 'sched_getscheduler',
      'sched_getparam', 'sched_setaffinity', 'sched_getaffinity', 'sched_yield', 'sched_get_priority_max',
      'sched_get_priority_min', 'sched_rr_get_interval', 'restart_syscall', 'kill', 'tkill', 'tgkill',
      'sigaltstack', 'rt_sigsuspend', 'rt_sigaction', 'rt_sigprocmask', 'rt_sigpending',
      'rt_sigtimedwait', 'rt_sigqueueinfo', 'rt_sigreturn', 'setpriority', 'getpriority', 'reboot',
      'setregid', 'setgid', 'setreuid', 'setuid', 'setresuid', 'getresuid', 'setresgid', 'getresgid',
      'setfsuid', 'setfsgid', 'times', 'setpgid', 'getpgid', 'getsid', 'setsid', 'getgroups', 'setgroups',
      'uname', 'sethostname', 'setdomainname', 'getrlimit', 'setrlimit', 'getrusage', 'umask', 'prctl',
      'getcpu', 'gettimeofday', 'settimeofday', 'adjtimex', 'getpid', 'getppid', 'getuid', 'geteuid',
      'getgid', 'getegid', 'gettid', 'sysinfo', 'mq_open', 'mq_unlink', 'mq_timedsend', 'mq_timedreceive',
      'mq_notify', 'mq_getsetattr', 'msgget', 'msgctl', 'msgrcv', 'msgsnd', 'semget', 'semctl',
      'semtimedop', 'semop', 'shmget', 'shmctl', 'shmat', 'shmdt', 'socket', 'socketpair', 'bind',
      'listen', 'accept', 'connect', 'getsockname', 'getpeername', 'sendto', 'recvfrom', 'setsockopt',
      'getsockopt', 'shutdown', 'sendmsg', 'recvmsg', 'readahead', 'brk', 'munmap', 'mremap', 'add_key',
      'request_key', 'keyctl', 'clone', 'execve', 'mmap', 'fadvise64', 'swapon', 'swapoff', 'mprotect',
      'msync', 'mlock', 'munlock', 'mlockall', 'munlockall', 'mincore', 'madvise', 'remap_file_pages',
      'mbind', 'get_mempolicy', 'set_mempolicy', 'migrate_pages', 'move_pages', 'rt_tgsigqueueinfo',
      'perf_event_open', 'accept4', 'recvmmsg'
    ],
  ],
  [
    260,
    [
      'wait4', 'prlimit64', 'fanotify_init', 'fanotify_mark', 'name_to_handle_at', 'open_by_handle_at',
      'clock_adjtime', 'syncfs', 'setns', 'sendmmsg', 'process_vm_readv', 'process_vm_writev', 'kcmp',
      'finit_module', 'sched_setattr', 'sched_getattr', 'renameat2', 'seccomp', 'getrandom',
      'memfd_create', 'bpf', 'execveat', 'userfaultfd', 'membarrier', 'mlock2', 'copy_file_range',
      'preadv2', 'pwritev2', 'pkey_mprotect', 'pkey_alloc', 'pkey_free', 'statx', 'io_pgetevents', 'rseq',
      'kexec_file_load'
    ],
  ],
  UNIFIED_FROM_424,
]

export interface SyscallTable {
  /** `x86_64` or `aarch64` */
  arch: string
  nameOf(nr: number): string
  numberOf(name: string): number | undefined
  names(): string[]
}

function tableOf(arch: string, runs: SyscallRuns): SyscallTable {
  const byNumber = new Map<number, string>()
  for (const [first, names] of runs) names.forEach((name, i) => byNumber.set(first + i, name))
  const byName = new Map([...byNumber].map(([nr, name]) => [name, nr]))
  return {
    arch,
    // A number outside the table (a newer kernel's syscall, or syscall(2) with any number) is still shown.
    nameOf: (nr) => byNumber.get(nr) ?? `syscall_${nr}`,
    numberOf: (name) => byName.get(name),
    names: () => [...byName.keys()].sort(),
  }
}

const TABLES: Record<string, () => SyscallTable> = {
  x64: () => tableOf('x86_64', X86_64),
  arm64: () => tableOf('aarch64', AARCH64),
}

const made = new Map<string, SyscallTable>()

/** The table of an architecture (as process.arch names it; default: this machine's); INVALID_ARGUMENT without one. */
export function syscallTable(arch: string = process.arch): SyscallTable {
  const make = TABLES[arch]
  if (!make) {
    throw new TraceError(
      'INVALID_ARGUMENT',
      `syscall tracing knows the syscall numbers of x86_64 and aarch64, not of ${arch}; run on one of those`,
    )
  }
  if (!made.has(arch)) made.set(arch, make())
  return made.get(arch)!
}

/** The numbers of `names` in `table`; an unknown name is an INVALID_ARGUMENT listing the closest ones. */
export function syscallNumbers(table: SyscallTable, names: readonly string[]): number[] {
  if (!Array.isArray(names) || names.length === 0) {
    throw new TraceError(
      'INVALID_ARGUMENT',
      'the syscall names must be a non-empty array of names (e.g. ["openat", "read"]); leave them out to trace every syscall',
    )
  }
  return names.map((name) => {
    const nr = typeof name === 'string' ? table.numberOf(name) : undefined
    if (nr === undefined) throw unknownSyscall(table, name)
    return nr
  })
}

function unknownSyscall(table: SyscallTable, name: unknown): TraceError {
  const all = table.names()
  const wanted = String(name)
  const close = all
    .map((candidate) => ({ candidate, distance: editDistance(wanted, candidate) }))
    .filter(({ candidate, distance }) => distance <= 2 || (wanted.length >= 3 && candidate.includes(wanted)))
    .sort((a, b) => a.distance - b.distance)
    .map(({ candidate }) => candidate)
  const hint = close.length > 0 ? `did you mean ${close.slice(0, 8).join(', ')}?` : `the ${table.arch} syscalls are: ${all.join(', ')}`
  return new TraceError('INVALID_ARGUMENT', `no syscall named ${JSON.stringify(wanted)} on ${table.arch}; ${hint}`)
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    previous = row
  }
  return previous[b.length]!
}

/** Syscalls whose argument at this index (0-based) is a path, read in the kernel as the event's `path`. */
export const PATH_ARGUMENTS: Readonly<Record<string, number>> = {
  open: 0, creat: 0, openat: 1, openat2: 1, execve: 0, execveat: 1,
  stat: 0, lstat: 0, newfstatat: 1, statx: 1, statfs: 0,
  access: 0, faccessat: 1, faccessat2: 1, readlink: 0, readlinkat: 1,
  unlink: 0, unlinkat: 1, mkdir: 0, mkdirat: 1, rmdir: 0, mknod: 0, mknodat: 1,
  rename: 0, renameat: 1, renameat2: 1, link: 0, linkat: 1, symlink: 1, symlinkat: 2,
  chdir: 0, chroot: 0, truncate: 0, chmod: 0, fchmodat: 1, fchmodat2: 1,
  chown: 0, lchown: 0, fchownat: 1, utimensat: 1,
  getxattr: 0, lgetxattr: 0, setxattr: 0, lsetxattr: 0, listxattr: 0, llistxattr: 0,
  removexattr: 0, lremovexattr: 0, inotify_add_watch: 1, umount2: 0, swapon: 0, swapoff: 0, acct: 0,
}

/** Syscalls that end the thread or process: they never reach sys_exit. */
export const NEVER_RETURN = ['exit', 'exit_group'] as const
