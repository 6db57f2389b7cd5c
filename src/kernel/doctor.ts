/**
 * What usdtrace needs from the machine it runs on, checked one requirement at a time, each with
 * the fix when it is not met: `doctor()` for people (and `usdtrace doctor`), and the kernel part
 * again before any BPF object is loaded, so an old or stripped kernel gets a TraceError that says
 * so instead of a verifier or libbpf failure.
 */
import { existsSync, readFileSync } from 'node:fs'
import { constants, release } from 'node:os'
import { relative } from 'node:path'
import { binding } from './binding.js'
import { TraceError, privilegeFix } from '../errors.js'
import nativeAddon from './addon.cjs'

/** The requirements `doctor()` checks, in the order it reports them. */
export type DoctorCheckName = 'addon' | 'kernel' | 'btf' | 'uprobe' | 'privileges'

/** One requirement and how this machine meets it. */
export interface DoctorCheck {
  /** Which requirement. */
  name: DoctorCheckName
  /** What usdtrace needs, e.g. `Linux 5.15 or newer (BPF cookies on uprobes)`. */
  requirement: string
  /** Whether this machine meets it. */
  ok: boolean
  /** What was found: the kernel release, the missing capabilities, the addon's file... */
  found: string
  /** What to do about it; only when `ok` is false. */
  fix?: string
}

// BPF cookies on uprobes (bpf_get_attach_cookie), which tell a program its probe's argument spec.
const MINIMUM_KERNEL = { major: 5, minor: 15 }
const KERNEL_BTF = '/sys/kernel/btf/vmlinux'
const UPROBE_PMU = '/sys/bus/event_source/devices/uprobe/type'
// Bit numbers in /proc/PID/status's CapEff (linux/capability.h).
const CAP_SYS_ADMIN = 21
const CAP_PERFMON = 38
const CAP_BPF = 39
const CAPABILITIES = [
  ['CAP_BPF', CAP_BPF],
  ['CAP_PERFMON', CAP_PERFMON],
  ['CAP_SYS_ADMIN', CAP_SYS_ADMIN],
] as const

/**
 * Checks every requirement, in order: the native addon, the kernel version, BTF, the uprobe PMU
 * and the privileges of this process. Nothing is loaded into the kernel; a failed check names
 * its fix.
 */
export function doctor(): DoctorCheck[] {
  return [addonCheck(), ...kernelChecks(), privilegesCheck()]
}

/**
 * The checks as aligned lines for a terminal: what was found, and for a failed check what is
 * needed and the fix:
 *
 *     ok    kernel      Linux 6.1.0-18-amd64
 *     FAIL  privileges  uid 1000 without CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN; the kernel refuses uprobes
 *                       needs: root, or CAP_BPF and CAP_PERFMON, ...
 *                       fix: run as root, or ...
 */
export function formatDoctor(checks: readonly DoctorCheck[]): string {
  const nameWidth = Math.max(...checks.map((check) => check.name.length))
  const indent = ' '.repeat(6 + nameWidth + 2)
  const lines: string[] = []
  for (const check of checks) {
    lines.push(`${(check.ok ? 'ok' : 'FAIL').padEnd(6)}${check.name.padEnd(nameWidth + 2)}${check.found}`)
    if (!check.ok) lines.push(`${indent}needs: ${check.requirement}`, `${indent}fix: ${check.fix}`)
  }
  return lines.join('\n')
}

let kernelSupported = false

/**
 * Throws an UNSUPPORTED_KERNEL TraceError naming the first kernel requirement this machine
 * misses. Privileges are left to the kernel's own refusal, which names the same fix.
 */
export function requireKernelSupport(): void {
  if (kernelSupported) return
  const failed = kernelChecks().find((check) => !check.ok)
  if (failed) {
    throw new TraceError(
      'UNSUPPORTED_KERNEL',
      `usdtrace needs ${failed.requirement}; this machine has ${failed.found}. Fix: ${failed.fix}`,
    )
  }
  kernelSupported = true
}

function addonCheck(): DoctorCheck {
  // Loading usdtrace already loaded the addon (or threw saying how to build it): this only says which.
  return {
    name: 'addon',
    requirement: 'the native addon, prebuilt or built at install',
    ok: true,
    found: relative(nativeAddon.packageRoot, nativeAddon.addonPath),
  }
}

/** Whether the running kernel is `major`.`minor` or newer. */
function kernelAtLeast(major: number, minor: number): boolean {
  const [have = 0, haveMinor = 0] = release().split(/[.-]/).map(Number)
  return have > major || (have === major && haveMinor >= minor)
}

/** UNSUPPORTED_KERNEL unless the kernel is `major`.`minor` or newer, which `what` needs. */
export function requireKernelVersion(major: number, minor: number, what: string): void {
  if (!kernelAtLeast(major, minor)) {
    throw new TraceError('UNSUPPORTED_KERNEL', `${what} needs Linux ${major}.${minor} or newer; this machine runs Linux ${release()}. Fix: upgrade the kernel`)
  }
}

function kernelChecks(): DoctorCheck[] {
  const kernel = release()
  const { major: needMajor, minor: needMinor } = MINIMUM_KERNEL
  const btf = existsSync(KERNEL_BTF)
  const uprobePmu = existsSync(UPROBE_PMU)
  return [
    {
      name: 'kernel',
      requirement: `Linux ${needMajor}.${needMinor} or newer (BPF cookies on uprobes)`,
      ...verdict(
        kernelAtLeast(needMajor, needMinor),
        `Linux ${kernel}`,
        `upgrade the kernel: BPF cookies on uprobes, through which usdtrace tells each probe how to read its arguments, arrived in Linux ${needMajor}.${needMinor}`,
      ),
    },
    {
      name: 'btf',
      requirement: `kernel BTF (${KERNEL_BTF})`,
      ...verdict(
        btf,
        btf ? KERNEL_BTF : `no ${KERNEL_BTF}`,
        'use a kernel built with CONFIG_DEBUG_INFO_BTF=y (the default of Debian 11, Ubuntu 20.10, Fedora 31, RHEL 8.2 and later): ' +
          "usdtrace's BPF programs are compiled once (CO-RE) and fitted to the running kernel through it",
      ),
    },
    {
      name: 'uprobe',
      requirement: `the perf uprobe PMU (${UPROBE_PMU})`,
      ...verdict(
        uprobePmu,
        uprobePmu ? UPROBE_PMU : `no ${UPROBE_PMU}`,
        'use a kernel built with CONFIG_UPROBE_EVENTS=y, and mount sysfs at /sys (in a container too)',
      ),
    },
  ]
}

function privilegesCheck(): DoctorCheck {
  const status = readFileSync('/proc/self/status', 'utf8')
  const uid = /^Uid:\s+\d+\s+(\d+)/m.exec(status)?.[1] ?? '?'
  const effective = BigInt(`0x${/^CapEff:\s+([0-9a-f]+)/m.exec(status)?.[1] ?? '0'}`)
  const has = (bit: number) => (effective & (1n << BigInt(bit))) !== 0n
  const held = CAPABILITIES.filter(([, bit]) => has(bit)).map(([name]) => name)
  const lacked = CAPABILITIES.filter(([, bit]) => !has(bit)).map(([name]) => name)
  // CAP_SYS_ADMIN stands in for both, as it did before Linux 5.8 split them off.
  const mayLoadBpf = (has(CAP_BPF) && has(CAP_PERFMON)) || has(CAP_SYS_ADMIN)
  const uprobes = uprobesAllowed()
  const capabilities = [
    ...(held.length > 0 ? [`with ${held.join(', ')}`] : []),
    ...(lacked.length > 0 ? [`without ${lacked.join(', ')}`] : []),
  ].join(', ')
  const uprobeText =
    uprobes === undefined ? 'uprobes not checked (no uprobe PMU)' : `the kernel ${uprobes ? 'allows' : 'refuses'} uprobes`
  return {
    name: 'privileges',
    requirement:
      'root, or CAP_BPF and CAP_PERFMON, plus CAP_SYS_ADMIN where the kernel requires it for uprobes ' +
      '(Linux 6.16 on, and stable kernels updated since July 2025)',
    ...verdict(mayLoadBpf && uprobes !== false, `uid ${uid} ${capabilities}; ${uprobeText}`, privilegeFix),
  }
}

/**
 * Asks the kernel (see native/uprobe_access.cc); undefined without a uprobe PMU to ask. Uprobe
 * multi links, where this process makes them, need only what loading BPF needs.
 */
function uprobesAllowed(): boolean | undefined {
  if (binding.uprobeMultiLinks()) return true
  let pmuType: number
  try {
    pmuType = Number(readFileSync(UPROBE_PMU, 'utf8'))
  } catch {
    return undefined
  }
  const errno = binding.uprobeAccess(pmuType)
  return errno !== constants.errno.EACCES && errno !== constants.errno.EPERM
}

function verdict(ok: boolean, found: string, fix: string): Pick<DoctorCheck, 'ok' | 'found' | 'fix'> {
  return ok ? { ok, found } : { ok, found, fix }
}
