/**
 * Every failure usdtrace can explain carries one of these codes; the message names the cause and
 * the fix, so a CLI can print it as one line and a library can branch on `code`.
 */
export type TraceErrorCode =
  | 'NO_SUCH_PROCESS'
  | 'PERMISSION_DENIED'
  | 'NO_PROBES'
  | 'PROBE_UNAVAILABLE'
  | 'NOT_PYTHON'
  | 'PROBE_CONFLICT'
  | 'MALFORMED_ELF'
  | 'INVALID_ARGUMENT'
  | 'ATTACH_FAILED'
  | 'UNKNOWN_PROBE'

export class TraceError extends Error {
  readonly code: TraceErrorCode

  constructor(code: TraceErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'TraceError'
    this.code = code
  }
}

const privilegeFix =
  'run as root, or grant CAP_BPF and CAP_PERFMON (e.g. `sudo setcap cap_bpf,cap_perfmon+ep $(which node)`)'

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
