/**
 * What a CPython process offers for tracing: where its probes live, which version it is, and
 * which kinds of events (capabilities) its build can deliver, each with a reason when it can't.
 */
import { basename } from 'node:path'
import { TraceError } from '../errors.js'
import { type PythonVersion, type UsdtProbe, coldCodeOffsets, isProgram, neededLibrary, readPythonVersion, readUsdtProbes } from './elf.js'
import { executablePath, mappedObjects } from './probes.js'
import { stackReadingOrReason } from '../cpython/runtime.js'

/**
 * The kinds of events a CPython build can deliver: each through its own probes, and `stacks`
 * (sampled or dumped) by reading the interpreter's frames, probes or not.
 */
export type CapabilityName = 'calls' | 'gc' | 'imports' | 'audit' | 'line' | 'stacks'

/**
 * Whether a capability can be traced: through its probes (`native`), through the line probe's
 * semaphore with its `cost` (calls on 3.11), for stacks by a frame layout the interpreter states
 * itself (`debug-offsets`, 3.13 on) or usdtrace's table for its version (`version-table`), or not
 * at all, with the `reason` and its fix.
 */
export type Capability = ProbeCapability | StacksCapability

/** How a probe capability is traced: natively, through the line semaphore, or not at all. */
export type ProbeCapability =
  | { available: true; mode: 'native' }
  | { available: true; mode: 'line-semaphore'; cost: string }
  | { available: false; mode: 'unavailable'; reason: string }

/** How stacks are read: from the interpreter's own `_Py_DebugOffsets`, from usdtrace's table, or not at all. */
export type StacksCapability =
  | { available: true; mode: 'debug-offsets' | 'version-table' }
  | { available: false; mode: 'unavailable'; reason: string }

/** Each capability of a build: the probe ones, and stacks. */
export type Capabilities = { [Name in Exclude<CapabilityName, 'stacks'>]: ProbeCapability } & {
  /** How the interpreter's stacks are read. */
  stacks: StacksCapability
}

/** What a CPython process (or, from `{ binary }`, every process of an interpreter file) offers. */
export interface Inspection {
  /** The process, or -1 for every process of `executable`. */
  pid: number
  /** The runtime found: CPython. */
  runtime: 'python'
  /** From `Py_Version`, else the file name; null when neither says. */
  version: PythonVersion | null
  /** /proc/PID/exe's target as we can open it (under /proc/PID/root for another mount namespace) */
  executable: string
  /** the object holding the python provider's probes: libpython for shared builds, else the executable */
  probeObject: string | null
  /** the python provider's probes in probeObject */
  probes: UsdtProbe[]
  /** where the interpreter lives (libpython for shared builds and embedders, else the executable), probes or not */
  interpreterObject: string
  /** What this build can trace, each capability with its mode or the reason it can't. */
  capabilities: Capabilities
}

/** Measured by bench/run.js: bench/RESULTS.md's row '3.11 line semaphore raised, no probe attached'. */
export const LINE_SEMAPHORE_COST =
  "function__entry fires only while the line probe's semaphore is raised, which puts every bytecode on " +
  "the interpreter's tracing path: measured about 9x slower on a call-heavy loop before any probe fires; " +
  'use { entries: false } to trace returns without it'

const PROVIDER = 'python'

type ProbeCapabilityName = Exclude<CapabilityName, 'stacks'>

const CAPABILITY_PROBES: Record<ProbeCapabilityName, readonly string[]> = {
  calls: ['function__entry', 'function__return'],
  gc: ['gc__start', 'gc__done'],
  imports: ['import__find__load__start', 'import__find__load__done'],
  audit: ['audit'],
  line: ['line'],
}

/** The CPython 3.x minor version that introduced each capability's probes (3.6 brought the first). */
const ADDED_IN_MINOR: Record<ProbeCapabilityName, number> = { calls: 6, gc: 6, imports: 7, audit: 8, line: 6 }
const FIRST_PROBES_MINOR = 6

/** Minor versions of 3.x without function__entry/return and line (gh-104280). */
const CALL_PROBES_REMOVED = { from: 12, until: 14 }

const PROBE_ENABLED_PYTHON =
  'use a probe-enabled CPython: Debian/Ubuntu python3.X packages, Fedora python3, or a build with ./configure --with-dtrace'

/**
 * What a running CPython process offers for tracing, without attaching anything: its version,
 * where its probes live and which capabilities its build has.
 */
export async function inspect(pid: number): Promise<Inspection> {
  const executable = await executablePath(pid)
  const objects = await mappedObjects(pid)
  const pypy = [executable, ...objects].find((path) => /^(?:lib)?pypy/.test(basename(path)))
  if (pypy) {
    throw new TraceError(
      'UNSUPPORTED_PYTHON',
      `process ${pid} runs PyPy (${pypy}): usdtrace reads CPython, through its USDT probes and its frames, and PyPy has ` +
        'neither; run the program under CPython to trace it',
    )
  }
  const libpythons = objects.filter(isLibpython)
  const looksPython = libpythons.length > 0 || /^python\d/.test(basename(executable))
  const carrier = findProbeCarrier([...libpythons, executable], looksPython)
  if (!carrier && !looksPython) throw notPython(pid, executable)
  const interpreterObject = carrier?.object ?? libpythons[0] ?? executable
  const version = readPythonVersion(interpreterObject)
  const probes = carrier?.probes ?? []
  return {
    pid,
    runtime: 'python',
    version,
    executable,
    probeObject: carrier?.object ?? null,
    probes,
    interpreterObject,
    capabilities: capabilities(probes, version, interpreterObject),
  }
}

/**
 * What every process running `path` (a python executable or libpython) offers: the same report
 * as inspect(), from the file alone, with pid -1 standing for all of them, present and future.
 */
export function inspectBinary(path: string): Inspection {
  const probes = pythonProbesIfReadable(path)
  // A shared build's program keeps the interpreter in the libpython it loads.
  const interpreterObject = (isProgram(path) && neededLibrary(path, LIBPYTHON)) || path
  const version = readPythonVersion(path) ?? readPythonVersion(interpreterObject)
  if (probes.length === 0 && !version) {
    throw new TraceError(
      'NOT_PYTHON',
      `${path} is not CPython (no python probes, no version); listProbes('${path}') shows its USDT probes`,
    )
  }
  return {
    pid: -1,
    runtime: 'python',
    version,
    executable: path,
    probeObject: probes.length > 0 ? path : null,
    probes,
    interpreterObject,
    capabilities: capabilities(probes, version, interpreterObject),
  }
}

/** What a message needs to name the processes a trace follows. */
export type TraceSubject = Pick<Inspection, 'pid' | 'interpreterObject'>

/** How messages name what an inspection describes. */
export function subjectOf(insp: TraceSubject): string {
  return insp.pid > 0 ? `process ${insp.pid}` : `processes of ${insp.interpreterObject}`
}

// libpython3.so is only the stable-ABI forwarding stub, hence major.minor.
const LIBPYTHON = /^libpython\d+\.\d+[a-z]*\.so(\.|$)/

function isLibpython(path: string): boolean {
  return LIBPYTHON.test(basename(path))
}

/**
 * The first object carrying python probes. A statically linked embedder with an unusual name is
 * CPython too if it has them; but when nothing else says python, an unreadable executable just
 * means "not python" rather than an error.
 */
function findProbeCarrier(objects: string[], strict: boolean): { object: string; probes: UsdtProbe[] } | undefined {
  for (const object of objects) {
    const probes = strict ? pythonProbes(object) : pythonProbesIfReadable(object)
    if (probes.length > 0) return { object, probes }
  }
  return undefined
}

function pythonProbes(object: string): UsdtProbe[] {
  return readUsdtProbes(object).filter((p) => p.provider === PROVIDER)
}

function pythonProbesIfReadable(object: string): UsdtProbe[] {
  try {
    return pythonProbes(object)
  } catch (err) {
    if (err instanceof TraceError) return []
    throw err
  }
}

function notPython(pid: number, executable: string): TraceError {
  return new TraceError(
    'NOT_PYTHON',
    `process ${pid} runs ${executable}, which is not CPython (neither a python executable nor a libpython user); ` +
      `usdtrace traces CPython processes; listProbes(${pid}) shows the USDT probes of any other process`,
  )
}

function capabilities(
  probes: UsdtProbe[],
  version: PythonVersion | null,
  object: string,
): Capabilities {
  const names = new Set(probes.map((p) => p.name))
  const reading = stackReadingOrReason({ interpreterObject: object, version })
  const result = {
    stacks: typeof reading === 'string' ? { available: false, mode: 'unavailable', reason: reading } : { available: true, mode: reading.source },
  } as Capabilities
  for (const cap of Object.keys(CAPABILITY_PROBES) as ProbeCapabilityName[]) {
    const missing = CAPABILITY_PROBES[cap].find((probe) => !names.has(probe))
    result[cap] =
      missing === undefined
        ? availableMode(cap, version)
        : { available: false, mode: 'unavailable', reason: unavailableReason(cap, missing, probes, version, object) }
  }
  return result
}

function availableMode(cap: ProbeCapabilityName, version: PythonVersion | null): ProbeCapability {
  // 3.11 only fires function__entry while tracing is on, which raising the line semaphore turns on.
  if (cap === 'calls' && version?.major === 3 && version.minor === 11) {
    return { available: true, mode: 'line-semaphore', cost: LINE_SEMAPHORE_COST }
  }
  return { available: true, mode: 'native' }
}

function unavailableReason(
  cap: ProbeCapabilityName,
  missing: string,
  probes: UsdtProbe[],
  version: PythonVersion | null,
  object: string,
): string {
  if (version && predates(version, ADDED_IN_MINOR[cap])) {
    return `CPython ${versionText(version)} predates the ${missing} probe (added in 3.${ADDED_IN_MINOR[cap]})`
  }
  if (probes.length === 0) return noProbesExplanation(object, version)
  if (version && (cap === 'calls' || cap === 'line') && inCallProbeGap(version)) return callProbesRemoved(version)
  return `probe ${PROVIDER}:${missing} not found in ${object}`
}

function predates(version: PythonVersion, minor: number): boolean {
  return version.major < 3 || (version.major === 3 && version.minor < minor)
}

function versionText(version: PythonVersion): string {
  return `${version.major}.${version.minor}`
}

function inCallProbeGap(version: PythonVersion): boolean {
  return version.major === 3 && version.minor >= CALL_PROBES_REMOVED.from && version.minor <= CALL_PROBES_REMOVED.until
}

/** What works without probes: reading the interpreter's frames. */
const SAMPLING_WORKS =
  'its stacks can still be sampled, which needs no probes: `usdtrace top PID`, `usdtrace dump PID`, ' +
  '`usdtrace record PID --sample`, or sampleStacks() / stackProfile() / dumpStacks()'

function callProbesRemoved(version: PythonVersion): string {
  return (
    `this is CPython ${versionText(version)}: 3.12 removed the function__entry, function__return and line probes (gh-104280) ` +
    `and 3.15 restores them; gc, imports and audit still work (try \`usdtrace gc\` or \`usdtrace stat\`), and ${SAMPLING_WORKS}`
  )
}

function noProbesExplanation(object: string, version: PythonVersion | null): string {
  if (version && predates(version, FIRST_PROBES_MINOR)) {
    return `${object} is CPython ${versionText(version)}, older than any CPython with USDT probes (3.${FIRST_PROBES_MINOR}); ${PROBE_ENABLED_PYTHON}`
  }
  return (
    `${object} has no python USDT probes: it was built without --with-dtrace ` +
    `(as pyenv builds and the docker \`python\` images are); ${PROBE_ENABLED_PYTHON}; ${SAMPLING_WORKS}`
  )
}

/**
 * Throws the TraceError that explains why `cap` can't be traced in this process, if it can't;
 * without `cap`, only that it has no python probes at all.
 */
export function requireProbes(insp: Inspection, cap?: CapabilityName): void {
  if (cap === 'stacks') {
    const stacks = insp.capabilities.stacks
    if (!stacks.available) throw new TraceError('UNSUPPORTED_PYTHON', `cannot read the Python stacks of ${subjectOf(insp)}: ${stacks.reason}`)
    return
  }
  if (insp.probes.length === 0) {
    throw new TraceError(
      'NO_PROBES',
      `cannot trace ${subjectOf(insp)}: ${noProbesExplanation(insp.interpreterObject, insp.version)}`,
    )
  }
  if (cap === undefined) return
  const capability = insp.capabilities[cap]
  if (!capability.available) {
    throw new TraceError('PROBE_UNAVAILABLE', `cannot trace ${cap} in ${subjectOf(insp)}: ${capability.reason}`)
  }
}

export interface LineSemaphore {
  /** the object to attach to (probeObject) */
  object: string
  /** the line probe, whose semaphore turns on 3.11's call probes */
  probe: UsdtProbe
  /** the kernel's ref_ctr_offset for that semaphore */
  semaphoreFileOffset: bigint
  /** where to park a uprobe that only raises the semaphore, best first (see coldCodeOffsets) */
  coldCodeOffsets: bigint[]
}

/** What raising the line probe's semaphore without tracing lines takes; throws if it is impossible. */
export function findLineSemaphore(insp: Inspection): LineSemaphore {
  requireProbes(insp, 'line')
  const object = insp.probeObject!
  const probe = insp.probes.find((p) => p.name === 'line')!
  const unavailable = (why: string) =>
    new TraceError('PROBE_UNAVAILABLE', `cannot raise the line semaphore in ${subjectOf(insp)}: ${why}`)
  if (probe.semaphoreFileOffset === 0n) throw unavailable(`the line probe in ${object} has no semaphore`)
  const cold = coldCodeOffsets(object)
  if (cold.length === 0) throw unavailable(`${object} has no _fini or _init code to park the uprobe on`)
  return { object, probe, semaphoreFileOffset: probe.semaphoreFileOffset, coldCodeOffsets: cold }
}
