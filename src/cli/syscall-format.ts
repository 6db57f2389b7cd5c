/**
 * A syscall event written the way strace writes it: `openat(AT_FDCWD, "/etc/hosts",
 * O_RDONLY|O_CLOEXEC) = 3`, `= -1 ENOENT`. The library hands over six raw registers; this table
 * says, for the common syscalls, how many of them are arguments and what each one means. Others
 * are shown with all six registers in hex.
 */
import type { SyscallEvent } from '../index.js'

type Kind =
  | 'int' | 'long' | 'uint' | 'size' | 'hex' | 'ptr' | 'fd' | 'dirfd' | 'path' | 'oflags' | 'fdflags' | 'mode'
  | 'prot' | 'mflags' | 'timerflags' | 'atflags' | 'whence' | 'signal' | 'clock' | 'domain' | 'socktype'

const SIGNATURES: Record<string, Kind[]> = {
  read: ['fd', 'ptr', 'size'], write: ['fd', 'ptr', 'size'],
  pread64: ['fd', 'ptr', 'size', 'long'], pwrite64: ['fd', 'ptr', 'size', 'long'],
  readv: ['fd', 'ptr', 'int'], writev: ['fd', 'ptr', 'int'],
  open: ['path', 'oflags', 'mode'], openat: ['dirfd', 'path', 'oflags', 'mode'], creat: ['path', 'mode'],
  close: ['fd'], close_range: ['fd', 'fd', 'hex'],
  stat: ['path', 'ptr'], lstat: ['path', 'ptr'], fstat: ['fd', 'ptr'],
  newfstatat: ['dirfd', 'path', 'ptr', 'atflags'], statx: ['dirfd', 'path', 'atflags', 'hex', 'ptr'], statfs: ['path', 'ptr'], fstatfs: ['fd', 'ptr'],
  lseek: ['fd', 'long', 'whence'],
  mmap: ['ptr', 'size', 'prot', 'mflags', 'fd', 'hex'], mprotect: ['ptr', 'size', 'prot'], munmap: ['ptr', 'size'],
  mremap: ['ptr', 'size', 'size', 'hex', 'ptr'], brk: ['ptr'], madvise: ['ptr', 'size', 'int'],
  ioctl: ['fd', 'hex', 'ptr'], fcntl: ['fd', 'int', 'hex'], flock: ['fd', 'int'],
  access: ['path', 'int'], faccessat: ['dirfd', 'path', 'int'], faccessat2: ['dirfd', 'path', 'int', 'atflags'],
  pipe: ['ptr'], pipe2: ['ptr', 'fdflags'], dup: ['fd'], dup2: ['fd', 'fd'], dup3: ['fd', 'fd', 'fdflags'],
  nanosleep: ['ptr', 'ptr'], clock_nanosleep: ['clock', 'timerflags', 'ptr', 'ptr'], clock_gettime: ['clock', 'ptr'], gettimeofday: ['ptr', 'ptr'],
  getpid: [], getppid: [], gettid: [], getuid: [], geteuid: [], getgid: [], getegid: [], sched_yield: [], setsid: [], getpgrp: [],
  socket: ['domain', 'socktype', 'int'], socketpair: ['domain', 'socktype', 'int', 'ptr'],
  connect: ['fd', 'ptr', 'int'], bind: ['fd', 'ptr', 'int'], listen: ['fd', 'int'], shutdown: ['fd', 'int'],
  accept: ['fd', 'ptr', 'ptr'], accept4: ['fd', 'ptr', 'ptr', 'fdflags'],
  sendto: ['fd', 'ptr', 'size', 'hex', 'ptr', 'int'], recvfrom: ['fd', 'ptr', 'size', 'hex', 'ptr', 'ptr'],
  sendmsg: ['fd', 'ptr', 'hex'], recvmsg: ['fd', 'ptr', 'hex'], sendmmsg: ['fd', 'ptr', 'uint', 'hex'], recvmmsg: ['fd', 'ptr', 'uint', 'hex', 'ptr'],
  setsockopt: ['fd', 'int', 'int', 'ptr', 'int'], getsockopt: ['fd', 'int', 'int', 'ptr', 'ptr'],
  getsockname: ['fd', 'ptr', 'ptr'], getpeername: ['fd', 'ptr', 'ptr'], sendfile: ['fd', 'fd', 'ptr', 'size'],
  clone: ['hex', 'ptr', 'ptr', 'ptr', 'hex'], clone3: ['ptr', 'size'], fork: [], vfork: [],
  execve: ['path', 'ptr', 'ptr'], execveat: ['dirfd', 'path', 'ptr', 'ptr', 'atflags'],
  exit: ['int'], exit_group: ['int'], wait4: ['int', 'ptr', 'hex', 'ptr'],
  kill: ['int', 'signal'], tkill: ['int', 'signal'], tgkill: ['int', 'int', 'signal'],
  rt_sigaction: ['signal', 'ptr', 'ptr', 'size'], rt_sigprocmask: ['int', 'ptr', 'ptr', 'size'], rt_sigreturn: [],
  fsync: ['fd'], fdatasync: ['fd'], truncate: ['path', 'long'], ftruncate: ['fd', 'long'],
  getdents64: ['fd', 'ptr', 'size'], getcwd: ['ptr', 'size'], chdir: ['path'], fchdir: ['fd'],
  rename: ['path', 'ptr'], renameat: ['dirfd', 'path', 'dirfd', 'ptr'], renameat2: ['dirfd', 'path', 'dirfd', 'ptr', 'hex'],
  mkdir: ['path', 'mode'], mkdirat: ['dirfd', 'path', 'mode'], rmdir: ['path'],
  unlink: ['path'], unlinkat: ['dirfd', 'path', 'atflags'],
  readlink: ['path', 'ptr', 'size'], readlinkat: ['dirfd', 'path', 'ptr', 'size'],
  chmod: ['path', 'mode'], fchmod: ['fd', 'mode'], fchmodat: ['dirfd', 'path', 'mode'],
  futex: ['ptr', 'int', 'int', 'ptr', 'ptr', 'int'],
  poll: ['ptr', 'uint', 'int'], ppoll: ['ptr', 'uint', 'ptr', 'ptr', 'size'],
  select: ['int', 'ptr', 'ptr', 'ptr', 'ptr'], pselect6: ['int', 'ptr', 'ptr', 'ptr', 'ptr', 'ptr'],
  epoll_create1: ['fdflags'], epoll_ctl: ['fd', 'int', 'fd', 'ptr'], epoll_wait: ['fd', 'ptr', 'int', 'int'],
  epoll_pwait: ['fd', 'ptr', 'int', 'int', 'ptr', 'size'],
  eventfd2: ['uint', 'fdflags'], timerfd_create: ['clock', 'fdflags'], memfd_create: ['ptr', 'hex'],
  getrandom: ['ptr', 'size', 'hex'], set_robust_list: ['ptr', 'size'], rseq: ['ptr', 'uint', 'hex', 'hex'],
  prlimit64: ['int', 'int', 'ptr', 'ptr'], getrusage: ['int', 'ptr'], uname: ['ptr'], sysinfo: ['ptr'],
  arch_prctl: ['hex', 'hex'], prctl: ['int', 'hex', 'hex', 'hex', 'hex'], set_tid_address: ['ptr'],
}

/** Syscalls that return an address rather than a number. */
const RETURNS_ADDRESS = new Set(['mmap', 'mremap', 'brk'])

/** x86_64 and aarch64 differ in four open flags. */
const ARM64 = process.arch === 'arm64'
const OPEN_FLAGS: [number, string][] = [
  [0o100, 'O_CREAT'], [0o200, 'O_EXCL'], [0o400, 'O_NOCTTY'], [0o1000, 'O_TRUNC'], [0o2000, 'O_APPEND'],
  [0o4000, 'O_NONBLOCK'], [0o4010000, 'O_SYNC'], [0o10000, 'O_DSYNC'], [0o20000, 'O_ASYNC'],
  [ARM64 ? 0o200000 : 0o40000, 'O_DIRECT'], [ARM64 ? 0o400000 : 0o100000, 'O_LARGEFILE'],
  [ARM64 ? 0o40000 : 0o200000, 'O_DIRECTORY'], [ARM64 ? 0o100000 : 0o400000, 'O_NOFOLLOW'],
  [0o1000000, 'O_NOATIME'], [0o2000000, 'O_CLOEXEC'], [0o10000000, 'O_PATH'],
]
const FD_FLAGS: [number, string][] = [[0o4000, 'O_NONBLOCK'], [0o2000000, 'O_CLOEXEC']]
const PROT: [number, string][] = [[1, 'PROT_READ'], [2, 'PROT_WRITE'], [4, 'PROT_EXEC']]
const MAP: [number, string][] = [
  [0x01, 'MAP_SHARED'], [0x02, 'MAP_PRIVATE'], [0x10, 'MAP_FIXED'], [0x20, 'MAP_ANONYMOUS'], [0x100, 'MAP_GROWSDOWN'],
  [0x800, 'MAP_DENYWRITE'], [0x1000, 'MAP_EXECUTABLE'], [0x2000, 'MAP_LOCKED'], [0x4000, 'MAP_NORESERVE'],
  [0x8000, 'MAP_POPULATE'], [0x10000, 'MAP_NONBLOCK'], [0x20000, 'MAP_STACK'], [0x40000, 'MAP_HUGETLB'],
  [0x100000, 'MAP_FIXED_NOREPLACE'],
]
const AT: [number, string][] = [[0x100, 'AT_SYMLINK_NOFOLLOW'], [0x200, 'AT_REMOVEDIR'], [0x400, 'AT_SYMLINK_FOLLOW'], [0x800, 'AT_NO_AUTOMOUNT'], [0x1000, 'AT_EMPTY_PATH']]
const WHENCE = ['SEEK_SET', 'SEEK_CUR', 'SEEK_END', 'SEEK_DATA', 'SEEK_HOLE']
const SIGNALS = [
  '0', 'SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGILL', 'SIGTRAP', 'SIGABRT', 'SIGBUS', 'SIGFPE', 'SIGKILL', 'SIGUSR1', 'SIGSEGV',
  'SIGUSR2', 'SIGPIPE', 'SIGALRM', 'SIGTERM', 'SIGSTKFLT', 'SIGCHLD', 'SIGCONT', 'SIGSTOP', 'SIGTSTP', 'SIGTTIN',
  'SIGTTOU', 'SIGURG', 'SIGXCPU', 'SIGXFSZ', 'SIGVTALRM', 'SIGPROF', 'SIGWINCH', 'SIGIO', 'SIGPWR', 'SIGSYS',
]
const CLOCKS = ['CLOCK_REALTIME', 'CLOCK_MONOTONIC', 'CLOCK_PROCESS_CPUTIME_ID', 'CLOCK_THREAD_CPUTIME_ID', 'CLOCK_MONOTONIC_RAW', 'CLOCK_REALTIME_COARSE', 'CLOCK_MONOTONIC_COARSE', 'CLOCK_BOOTTIME']
const DOMAINS: Record<number, string> = { 1: 'AF_UNIX', 2: 'AF_INET', 10: 'AF_INET6', 16: 'AF_NETLINK', 17: 'AF_PACKET' }
const SOCK_TYPES: Record<number, string> = { 1: 'SOCK_STREAM', 2: 'SOCK_DGRAM', 3: 'SOCK_RAW', 5: 'SOCK_SEQPACKET' }
const AT_FDCWD = -100
/** O_CREAT, and the bit of O_TMPFILE (0o20200000) that O_DIRECTORY lacks. */
const CREATES = 0o100 | 0o20000000

const int32 = (value: bigint) => Number(BigInt.asIntN(32, value))
const hex = (value: bigint) => `0x${value.toString(16)}`

function flags(value: number, table: [number, string][], zero?: string): string {
  const names: string[] = zero === undefined ? [] : [zero]
  let rest = value
  for (const [bit, name] of table) {
    if ((rest & bit) === bit && bit !== 0) {
      names.push(name)
      rest &= ~bit
    }
  }
  if (rest !== 0 || names.length === 0) names.push(`0x${rest.toString(16)}`)
  return names.join('|')
}

function argument(kind: Kind, value: bigint, event: SyscallEvent): string {
  switch (kind) {
    case 'int':
    case 'fd':
      return String(int32(value))
    case 'long':
      return BigInt.asIntN(64, value).toString()
    case 'uint':
    case 'size':
      return value.toString()
    case 'hex':
      return hex(value)
    case 'ptr':
      return value === 0n ? 'NULL' : hex(value)
    case 'dirfd':
      return int32(value) === AT_FDCWD ? 'AT_FDCWD' : String(int32(value))
    case 'path':
      return event.path === undefined ? (value === 0n ? 'NULL' : hex(value)) : `${JSON.stringify(event.path)}${event.truncated ? '...' : ''}`
    case 'oflags': {
      const v = int32(value)
      return flags(v & ~3, OPEN_FLAGS, ['O_RDONLY', 'O_WRONLY', 'O_RDWR', 'O_ACCMODE'][v & 3])
    }
    case 'fdflags':
      return int32(value) === 0 ? '0' : flags(int32(value), FD_FLAGS)
    case 'mode':
      return `0${(int32(value) >>> 0).toString(8).padStart(3, '0')}`
    case 'prot':
      return int32(value) === 0 ? 'PROT_NONE' : flags(int32(value), PROT)
    case 'mflags':
      return flags(int32(value), MAP)
    case 'atflags':
      return int32(value) === 0 ? '0' : flags(int32(value), AT)
    case 'timerflags':
      return int32(value) === 1 ? 'TIMER_ABSTIME' : String(int32(value))
    case 'whence':
      return WHENCE[int32(value)] ?? String(int32(value))
    case 'signal':
      return SIGNALS[int32(value)] ?? String(int32(value))
    case 'clock':
      return CLOCKS[int32(value)] ?? String(int32(value))
    case 'domain':
      return DOMAINS[int32(value)] ?? String(int32(value))
    case 'socktype': {
      const v = int32(value)
      const extra = v & ~0xf
      return [SOCK_TYPES[v & 0xf] ?? String(v & 0xf), ...(extra ? [flags(extra, [[0o4000, 'SOCK_NONBLOCK'], [0o2000000, 'SOCK_CLOEXEC']])] : [])].join('|')
    }
  }
}

/** `name(arguments)`, without the result. */
export function formatCall(event: SyscallEvent): string {
  let kinds = SIGNATURES[event.name]
  // Like strace: open's mode only means something when the call may create a file.
  const flagsAt = kinds?.indexOf('oflags') ?? -1
  if (flagsAt >= 0 && (int32(event.args[flagsAt]!) & CREATES) === 0) kinds = kinds!.slice(0, flagsAt + 1)
  const args = kinds ? kinds.map((kind, i) => argument(kind, event.args[i]!, event)) : event.args.map(hex)
  return `${event.name}(${args.join(', ')})`
}

/** `= 3`, `= 0x7f12...`, `= -1 ENOENT`, or `= ?` for a call that never returns. */
export function formatResult(event: SyscallEvent): string {
  if (event.ret === undefined) return '= ?'
  if (event.errno !== undefined) return `= -1 ${event.errno}`
  return `= ${RETURNS_ADDRESS.has(event.name) ? hex(BigInt.asUintN(64, event.ret)) : event.ret.toString()}`
}
