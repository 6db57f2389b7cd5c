/**
 * Every failure usdtrace can explain carries one of these codes; the message names the cause and
 * the fix, so a CLI can print it as one line and a library can branch on `code`.
 */
export type TraceErrorCode =
  /** No process has that pid, or it exited while attaching. */
  | 'NO_SUCH_PROCESS'
  /** Loading or attaching BPF without root or CAP_BPF + CAP_PERFMON; reading another user's /proc/PID. */
  | 'PERMISSION_DENIED'
  /** The interpreter was built without `--with-dtrace` (pyenv builds, docker `python:*` images). */
  | 'NO_PROBES'
  /** The build has probes, but not the ones needed (3.12–3.14 calls; a version that predates a probe). */
  | 'PROBE_UNAVAILABLE'
  /** The process is neither a python executable nor a libpython user. */
  | 'NOT_PYTHON'
  /** Another tracer holds the probe with a different semaphore offset (bcc's pythoncalls, pythonflow, ucalls). */
  | 'PROBE_CONFLICT'
  /** The interpreter or library file is not a well-formed ELF file. */
  | 'MALFORMED_ELF'
  /** A bad pid, option or path. */
  | 'INVALID_ARGUMENT'
  /** Any other failure loading or attaching the BPF programs; the message carries the kernel's error and libbpf's log. */
  | 'ATTACH_FAILED'
  /** No probe of that provider and name, no library of that name mapped, or no exported function matching a name. */
  | 'UNKNOWN_PROBE'
  /** The kernel lacks something usdtrace needs: Linux 5.15+ (5.18+ to read stacks), BTF or the uprobe PMU (see `doctor()`). */
  | 'UNSUPPORTED_KERNEL'
  /**
   * The interpreter's stacks cannot be read: older than CPython 3.10, a free-threaded build,
   * PyPy, or a layout usdtrace cannot verify against the running interpreter.
   */
  | 'UNSUPPORTED_PYTHON'
  /** A trace read both as events and through `batches()`: each trace is read one way. */
  | 'ALREADY_CONSUMED'

/** A failure usdtrace can explain: branch on `code`, show `message` (cause and fix) to people. */
export class TraceError extends Error {
  /** Which failure this is. */
  readonly code: TraceErrorCode

  constructor(code: TraceErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'TraceError'
    this.code = code
  }
}

// Linux 6.16 (and the stable updates of July 2025) require CAP_SYS_ADMIN for uprobes again.
export const privilegeFix =
  'run as root, or grant CAP_BPF and CAP_PERFMON, plus CAP_SYS_ADMIN where the kernel requires it for uprobes ' +
  '(Linux 6.16 on; `usdtrace doctor` tells), e.g. `sudo setcap cap_bpf,cap_perfmon,cap_sys_admin+ep $(which node)`'

export function permissionDenied(what: string, cause?: unknown): TraceError {
  return new TraceError('PERMISSION_DENIED', `${what}: permission denied; ${privilegeFix}`, { cause })
}

export function noSuchProcess(pid: number): TraceError {
  return new TraceError(
    'NO_SUCH_PROCESS',
    `no process with pid ${pid}; check the pid with \`usdtrace ps\` or \`pgrep -a python\``,
  )
}

/**
 * Reading another user's /proc/PID/{exe,maps,root} needs ptrace-read access (same uid, or
 * CAP_SYS_PTRACE), which CAP_BPF and CAP_PERFMON alone do not give.
 */
export function processAccessDenied(pid: number, path: string, cause?: unknown): TraceError {
  return new TraceError(
    'PERMISSION_DENIED',
    `cannot read ${path}: permission denied (process ${pid} belongs to another user or is not dumpable); ` +
      'run as root, or as its owner with CAP_BPF and CAP_PERFMON, or add CAP_SYS_PTRACE',
    { cause },
  )
}
