/**
 * USDT argument specs, read once for everything that needs them: `usdtrace probes` shows them,
 * traceUsdt counts them, and attaching parses each site's spec ("8@%rbp -4@-20(%rbp)" on
 * x86-64, "8@x19 -4@[sp, 60]" on AArch64) into the `usdt_spec` that bpf/usdt_args.bpf.h reads,
 * writes it into the object's `usdt_specs` map, and attaches the site as a plain uprobe whose
 * cookie is the spec's slot. A spec is read in the registers of the file's own machine, so a
 * listing of another architecture's file is right; attaching needs the host's.
 */
import type { SessionWith } from './binding.js'
import type { UsdtProbe } from '../process/elf.js'
import { TraceError } from '../errors.js'
import {
  USDT_ARG_CONST,
  USDT_ARG_REG,
  USDT_ARG_REG_DEREF,
  USDT_ARG_SPEC,
  USDT_MAX_ARGS,
  USDT_SPEC,
  USDT_SPECS_MAX,
} from './abi.js'

/** How one argument is read when the probe fires. */
export interface UsdtArgSpec {
  kind: 'const' | 'reg' | 'deref'
  /** The register, as its word in the architecture's user `struct pt_regs` (0 for a constant). */
  reg: number
  /** The constant, or the displacement added to the register (0 for a register). */
  value: bigint
  size: 1 | 2 | 4 | 8
  signed: boolean
}

/** One argument as the probe's note spells it: `[-]SIZE@OPERAND`, or an old-style bare operand (8 bytes). */
export interface UsdtArgument {
  /** As the note spells it, e.g. `-4@-20(%rbp)`. */
  spec: string
  /** In bytes; a negative SIZE in the note means signed. */
  size: number
  signed: boolean
  /** Where the value is, as the note spells it: `%rbp`, `-20(%rbp)`, `$1`; on AArch64 `x0`, `[sp, 16]`, `5`. */
  operand: string
  /** How bpf/usdt_args.bpf.h reads it, or why it cannot. */
  read: UsdtArgSpec | { unreadable: string }
}

/** How one architecture spells operands, and the words of its user `struct pt_regs` they name. */
interface Architecture {
  name: string
  /** process.arch of a host of this architecture */
  nodeArch: string
  /** The operands usdtrace reads, with examples, for an error's fix. */
  forms: string
  /** How BPF reads the operand, or why it cannot. */
  operand(text: string): Omit<UsdtArgSpec, 'size' | 'signed'> | string
}

/** Names → word: `groups[i]` lists the names of word i (undefined: a word no operand names). */
function registerWords(groups: (string | undefined)[]): Map<string, number> {
  const words = new Map<string, number>()
  groups.forEach((names, word) => names?.split(' ').forEach((name) => words.set(name, word)))
  return words
}

const INTEGER = '-?(?:0x[0-9a-f]+|\\d+)'

function parseInteger(text: string): bigint {
  return text.startsWith('-') ? -BigInt(text.slice(1)) : BigInt(text)
}

// struct pt_regs: r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di orig_ax ip cs flags sp ss.
const X86_64_REGISTERS = registerWords([
  'r15 r15d r15w r15b',
  'r14 r14d r14w r14b',
  'r13 r13d r13w r13b',
  'r12 r12d r12w r12b',
  'rbp ebp bp bpl',
  'rbx ebx bx bl',
  'r11 r11d r11w r11b',
  'r10 r10d r10w r10b',
  'r9 r9d r9w r9b',
  'r8 r8d r8w r8b',
  'rax eax ax al',
  'rcx ecx cx cl',
  'rdx edx dx dl',
  'rsi esi si sil',
  'rdi edi di dil',
  undefined,
  undefined,
  undefined,
  undefined,
  'rsp esp sp spl',
])

const X86_64: Architecture = {
  name: 'x86-64',
  nodeArch: 'x64',
  forms: 'registers (8@%rax, -4@%r12d), memory at a register (8@-24(%rbp), 8@(%rdi)) and constants (4@$1)',
  operand(text) {
    const register = (name: string) => X86_64_REGISTERS.get(name.toLowerCase()) ?? `register %${name} is not one usdtrace reads`
    let match = new RegExp(`^\\$(${INTEGER})$`, 'i').exec(text)
    if (match) return { kind: 'const', reg: 0, value: BigInt.asIntN(64, parseInteger(match[1]!)) }
    match = /^%(\w+)$/.exec(text)
    if (match) {
      const reg = register(match[1]!)
      return typeof reg === 'string' ? reg : { kind: 'reg', reg, value: 0n }
    }
    match = new RegExp(`^(${INTEGER})?\\(%(\\w+)\\)$`, 'i').exec(text)
    if (match) {
      const reg = register(match[2]!)
      return typeof reg === 'string' ? reg : { kind: 'deref', reg, value: parseInteger(match[1] ?? '0') }
    }
    return text.includes('(%rip)')
      ? 'an address relative to the instruction pointer (a global variable), which would need its symbol resolved in every process'
      : 'an addressing form usdtrace does not read (index registers or a symbol)'
  },
}

// struct user_pt_regs: x0 .. x30, sp, pc; w0 .. w30 are the low halves of x0 .. x30.
const AARCH64_REGISTERS = registerWords([...Array.from({ length: 31 }, (_, n) => `x${n} w${n}`), 'sp'])

const AARCH64: Architecture = {
  name: 'AArch64',
  nodeArch: 'arm64',
  forms: 'registers (8@x0, -4@w1), memory at a register (8@[sp, 16], 8@[x19]) and constants (4@5)',
  operand(text) {
    const register = (name: string) => AARCH64_REGISTERS.get(name.toLowerCase()) ?? `register ${name} is not one usdtrace reads`
    let match = new RegExp(`^#?(${INTEGER})$`, 'i').exec(text)
    if (match) return { kind: 'const', reg: 0, value: BigInt.asIntN(64, parseInteger(match[1]!)) }
    match = /^(\w+)$/.exec(text)
    if (match) {
      const reg = register(match[1]!)
      return typeof reg === 'string' ? reg : { kind: 'reg', reg, value: 0n }
    }
    match = new RegExp(`^\\[(\\w+)(?:,\\s*#?(${INTEGER}))?\\]$`, 'i').exec(text)
    if (match) {
      const reg = register(match[1]!)
      return typeof reg === 'string' ? reg : { kind: 'deref', reg, value: parseInteger(match[2] ?? '0') }
    }
    return 'an addressing form usdtrace does not read (an index register or a symbol)'
  },
}

/** By e_machine. */
const ARCHITECTURES = new Map<number, Architecture>([
  [62, X86_64],
  [183, AARCH64],
])

function machineName(machine: number): string {
  return ARCHITECTURES.get(machine)?.name ?? `e_machine ${machine}`
}

/** One argument per match: SIZE@ and an operand, AArch64's `[reg, offset]` with its space included. */
const ARGUMENT = /(?:(-?\d+)@)?(\[[^\]]*\]|[^\s[]\S*)/g

/** Every argument of a probe site, as its note spells it, read in the registers of the file's machine. */
export function usdtArguments(probe: UsdtProbe): UsdtArgument[] {
  const architecture = ARCHITECTURES.get(probe.machine)
  return [...probe.args.matchAll(ARGUMENT)].map((match) => {
    const bytes = match[1] === undefined ? 8 : Math.abs(Number(match[1]))
    const signed = match[1]?.startsWith('-') ?? false
    const operand = match[2]!
    const argument = { spec: match[0], size: bytes, signed, operand }
    if (bytes !== 1 && bytes !== 2 && bytes !== 4 && bytes !== 8) return { ...argument, read: { unreadable: `a ${bytes}-byte value` } }
    if (!architecture) {
      return { ...argument, read: { unreadable: `an operand of ${machineName(probe.machine)}, whose registers usdtrace does not know` } }
    }
    const read = architecture.operand(operand)
    return { ...argument, read: typeof read === 'string' ? { unreadable: read } : { ...read, size: bytes, signed } }
  })
}

/**
 * How BPF reads the first `count` arguments of a probe site (all of them by default). The file
 * must be of the host's architecture: a probe's registers are those of the CPU it runs on.
 */
export function parseUsdtArgs(probe: UsdtProbe, count?: number): UsdtArgSpec[] {
  const host = [...ARCHITECTURES.entries()].find(([, architecture]) => architecture.nodeArch === process.arch)
  if (host?.[0] !== probe.machine) {
    throw new TraceError(
      'PROBE_UNAVAILABLE',
      `${probe.provider}:${probe.name} in ${probe.object} is built for ${machineName(probe.machine)}, and this host is ` +
        `${host?.[1].name ?? process.arch}: its arguments are in registers this CPU does not have. Trace it on a ` +
        `${machineName(probe.machine)} host (a program of another architecture that runs here under emulation cannot be traced)`,
    )
  }
  return usdtArguments(probe)
    .slice(0, count)
    .map((argument, index) => {
      if ('unreadable' in argument.read) throw unreadableArg(probe, argument, index, host[1])
      return argument.read
    })
}

function unreadableArg(probe: UsdtProbe, argument: UsdtArgument, index: number, architecture: Architecture): TraceError {
  return new TraceError(
    'PROBE_UNAVAILABLE',
    `${probe.provider}:${probe.name} in ${probe.object} passes argument ${index + 1} as ${JSON.stringify(argument.spec)}: ` +
      `${'unreadable' in argument.read ? argument.read.unreadable : ''}. usdtrace reads ${architecture.forms}; ` +
      `read only the ${index} argument${index === 1 ? '' : 's'} before it, or trace another probe`,
  )
}

/** The `usdt_spec` value (bpf/usdtrace.h) holding `args` and the caller's cookie. */
export function encodeUsdtSpec(args: UsdtArgSpec[], cookie: bigint): Uint8Array {
  if (args.length > USDT_MAX_ARGS) throw new RangeError(`a USDT probe has at most ${USDT_MAX_ARGS} arguments`)
  const bytes = new Uint8Array(USDT_SPEC.size)
  const view = new DataView(bytes.buffer)
  view.setBigUint64(USDT_SPEC.fields.cookie, cookie, true)
  view.setUint32(USDT_SPEC.fields.arg_count, args.length, true)
  const fields = USDT_ARG_SPEC.fields
  args.forEach((arg, i) => {
    const at = USDT_SPEC.fields.args + i * USDT_ARG_SPEC.size
    view.setBigInt64(at + fields.value, arg.value, true)
    view.setUint8(at + fields.kind, arg.kind === 'const' ? USDT_ARG_CONST : arg.kind === 'reg' ? USDT_ARG_REG : USDT_ARG_REG_DEREF)
    view.setUint8(at + fields.reg, arg.reg)
    view.setUint8(at + fields.size, arg.size)
    view.setUint8(at + fields.is_signed, arg.signed ? 1 : 0)
  })
  return bytes
}

/** A session whose object has `Program` and reads its USDT arguments through usdt_specs (bpf/usdt_args.bpf.h). */
export type UsdtSession<Program extends string> = SessionWith<Program, 'usdt_specs'>

/** Per session, the usdt_specs slot of each distinct spec written so far (by its bytes). */
const slotsBySession = new WeakMap<object, Map<string, number>>()

function specSlot(session: UsdtSession<never>, spec: Uint8Array, probe: UsdtProbe): number {
  let slots = slotsBySession.get(session)
  if (!slots) slotsBySession.set(session, (slots = new Map()))
  const key = Buffer.from(spec).toString('latin1')
  let slot = slots.get(key)
  if (slot !== undefined) return slot
  slot = slots.size
  if (slot >= USDT_SPECS_MAX) {
    throw new TraceError(
      'INVALID_ARGUMENT',
      `attaching ${probe.provider}:${probe.name} in ${probe.object} would need more than ${USDT_SPECS_MAX} distinct ` +
        'USDT argument layouts in one trace; split the targets over several traces',
    )
  }
  const slotKey = new Uint8Array(4)
  new DataView(slotKey.buffer).setUint32(0, slot, true)
  session.updateMap('usdt_specs', slotKey, spec)
  slots.set(key, slot)
  return slot
}

export interface UsdtAttachOptions {
  /** What usdt_cookie() returns in the program. */
  cookie?: bigint
  /** How many arguments the program reads; all by default. */
  argCount?: number
}

/**
 * Attaches `program` to every site in `sites` (one probe's notes in one object; their
 * semaphores are raised while attached) in process `pid`, or every process of the object (-1).
 * Native errors are thrown as they are, for the caller to explain.
 */
export function attachUsdtSites<Program extends string>(
  session: UsdtSession<Program>,
  program: NoInfer<Program>,
  pid: number,
  sites: UsdtProbe[],
  options: UsdtAttachOptions = {},
): void {
  const uprobes = sites.map((site) => {
    const spec = encodeUsdtSpec(parseUsdtArgs(site, options.argCount), options.cookie ?? 0n)
    return { fileOffset: site.fileOffset, refCtrOffset: site.semaphoreFileOffset, cookie: BigInt(specSlot(session, spec, site)) }
  })
  session.attachUprobes(program, pid, sites[0]!.object, uprobes, false)
}
