import {
  binding,
  isNativeError,
  type BpfObjectName,
  type BpfSession,
  type SessionOptions,
  type SessionWith,
} from './binding.js'
import { requireKernelSupport } from './doctor.js'
import { TraceError, noSuchProcess, permissionDenied } from '../errors.js'
import { findLineSemaphore, subjectOf, type Inspection, type TraceSubject } from '../process/inspect.js'
import type { UsdtProbe } from '../process/elf.js'
import type { CodeDeallocHooks } from '../cpython/layout.js'
import { attachUsdtSites, encodeUsdtSpec, parseUsdtArgs, type UsdtSession } from './usdt-args.js'

/**
 * Opening BPF objects and attaching them to Python processes, with every kernel refusal turned
 * into the TraceError that names its cause and fix.
 */

function openSession<O extends BpfObjectName, M extends object, C extends object>(
  options: SessionOptions<O, M, C>,
  targets: TraceSubject[],
): BpfSession<O> {
  requireKernelSupport()
  try {
    return new binding.Session(options)
  } catch (error) {
    throw explainNativeError(error, targets[0]!, 'loading the BPF programs')
  }
}

/**
 * Opens a session for `targets` and runs `attach` on it; if attaching fails, the session is
 * closed again before the error goes on, so no probe outlives a failed start.
 */
export async function openAttached<O extends BpfObjectName, M extends object, C extends object>(
  options: SessionOptions<O, M, C>,
  targets: TraceSubject[],
  attach: (session: BpfSession<O>) => void,
): Promise<BpfSession<O>> {
  const session = openSession(options, targets)
  try {
    attach(session)
  } catch (error) {
    await session.close()
    throw error
  }
  return session
}

function pythonSites(target: Inspection, probe: string) {
  return target.probes.filter((p) => p.provider === 'python' && p.name === probe)
}

/**
 * The `<program>_spec` constants (bpf/usdt_args.bpf.h) of the programs, each attached to the
 * named python probe, whose every site in every target passes its arguments alike: those
 * programs read their arguments with no lookup. Any other program keeps reading its spec per
 * attachment, and an unreadable spec is left for the attach to report.
 */
export function fixedPythonSpecs<Program extends string>(
  targets: Inspection[],
  probeOfProgram: Record<Program, string>,
): { [P in Program as `${P}_spec`]?: Uint8Array } {
  const constants: Record<string, Uint8Array> = {}
  for (const [program, probe] of Object.entries<string>(probeOfProgram)) {
    const sites = targets.flatMap((target) => pythonSites(target, probe))
    if (sites.length === 0 || sites.some((site) => site.args !== sites[0]!.args)) continue
    try {
      constants[`${program}_spec`] = encodeUsdtSpec(parseUsdtArgs(sites[0]!), 0n)
    } catch {
      // Unreadable: the attach reports it.
    }
  }
  return constants as { [P in Program as `${P}_spec`]?: Uint8Array }
}

/** Attaches `program` to the python provider's `probe` in the target's probe object. */
export function attachPythonProbe<Program extends string>(
  session: UsdtSession<Program>,
  target: Inspection,
  program: NoInfer<Program>,
  probe: string,
): void {
  try {
    const sites = pythonSites(target, probe)
    if (sites.length === 0) {
      throw new TraceError(
        'PROBE_UNAVAILABLE',
        `${target.probeObject} has no python:${probe} probe; inspect(pid).capabilities says what this build can trace`,
      )
    }
    attachUsdtSites(session, program, target.pid, sites)
  } catch (error) {
    throw explainProbeAttachError(error, target, `python:${probe} in ${target.probeObject}`, pythonSites(target, probe))
  }
}

/**
 * Why attaching `what` (a probe, and where) to `sites` failed. The kernel keeps one
 * ref_ctr_offset per probed location, so EINVAL at a probe with a semaphore means another tracer
 * registered it with another.
 */
export function explainProbeAttachError(error: unknown, target: TraceSubject, what: string, sites: UsdtProbe[]): unknown {
  if (isNativeError(error) && error.code === 'EINVAL' && sites.some((site) => site.semaphoreFileOffset !== 0n)) {
    return probeConflict(target, what, error)
  }
  return explainNativeError(error, target, `attaching to ${what}`)
}

/**
 * Parks a uprobe on code the interpreter never runs again (DT_FINI, else DT_INIT) with the line
 * probe's semaphore as its ref_ctr_offset: the kernel raises the semaphore for as long as the
 * link lives and lowers it when the link goes, even when the tracer is killed. Nothing fires per
 * line. Another tracer may already hold that address with another ref_ctr_offset (the kernel
 * keeps one per location and answers EINVAL), so the next cold address is tried.
 */
export function raiseLineSemaphore<Program extends string>(session: SessionWith<Program>, target: Inspection, program: NoInfer<Program>): void {
  const line = findLineSemaphore(target)
  let conflict: unknown
  for (const offset of line.coldCodeOffsets) {
    try {
      const site = { fileOffset: offset, refCtrOffset: line.semaphoreFileOffset, cookie: 0n }
      session.attachUprobes(program, target.pid, line.object, [site], false)
      return
    } catch (error) {
      if (!isNativeError(error) || error.code !== 'EINVAL') {
        throw explainNativeError(error, target, 'raising the line semaphore')
      }
      conflict = error
    }
  }
  throw probeConflict(target, `the line semaphore holder (its _fini and _init code) in ${line.object}`, conflict)
}

/** Attaches `program` to code_dealloc in every target (bpf/python_names.bpf.h). */
export function attachCodeDeallocHooks<Program extends string>(
  session: SessionWith<Program>,
  hooks: CodeDeallocHooks,
  program: NoInfer<Program>,
): void {
  for (const { target, fileOffset } of hooks.sites) {
    try {
      session.attachUprobes(program, target.pid, target.probeObject!, [{ fileOffset, refCtrOffset: 0n, cookie: 0n }], false)
    } catch (error) {
      throw explainNativeError(error, target, 'attaching to code_dealloc')
    }
  }
}

/**
 * Attaches the object's forget_thread program (bpf/thread_state.bpf.h) to sched_process_exit, so
 * that whatever the kernel keeps for a thread goes as the thread exits.
 */
export function attachThreadExit(session: SessionWith<'forget_thread'>, target: TraceSubject): void {
  try {
    session.attachRawTracepoint('forget_thread', 'sched_process_exit')
  } catch (error) {
    throw explainNativeError(error, target, 'attaching to the sched_process_exit tracepoint')
  }
}

function probeConflict(target: TraceSubject, what: string, cause: unknown): TraceError {
  return new TraceError(
    'PROBE_CONFLICT',
    `cannot attach to ${what} (${subjectOf(target)}): another tracer holds ` +
      'that location with a different semaphore offset (the kernel keeps one per probe and logs ' +
      "`ref_ctr_offset mismatch`; bcc's python tools register a wrong one). Stop the other tracer " +
      '(e.g. pythoncalls, pythonflow, ucalls) and try again.',
    { cause },
  )
}

export function explainNativeError(error: unknown, target: TraceSubject, what: string): unknown {
  if (!isNativeError(error)) return error
  if (error.code === 'EPERM' || error.code === 'EACCES') return permissionDenied(what, error)
  if (error.code === 'ESRCH' && target.pid > 0) return noSuchProcess(target.pid)
  return new TraceError('ATTACH_FAILED', `${what} for ${subjectOf(target)} failed: ${error.message}`, { cause: error })
}
