/**
 * USDT probes attached our way: each site's argument spec string ("8@%rbp -4@-20(%rbp)") is
 * parsed here into the `usdt_spec` that bpf/usdt_args.bpf.h reads, written into the object's
 * `usdt_specs` map, and the site is attached as a plain uprobe whose cookie is the spec's slot.
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
  /** The register, as its word in the user `struct pt_regs` (0 for a constant). */
  reg: number
  /** The constant, or the displacement added to the register (0 for a register). */
  value: bigint
  size: 1 | 2 | 4 | 8
  signed: boolean
}

/** x86-64's registers by every name of theirs, as words of struct pt_regs (r15 first). */
const X86_64_REGISTERS: Record<string, number> = {}
for (const [word, names] of [
  [0, 'r15 r15d r15w r15b'],
  [1, 'r14 r14d r14w r14b'],
  [2, 'r13 r13d r13w r13b'],
  [3, 'r12 r12d r12w r12b'],
  [4, 'rbp ebp bp bpl'],
  [5, 'rbx ebx bx bl'],
  [6, 'r11 r11d r11w r11b'],
  [7, 'r10 r10d r10w r10b'],
  [8, 'r9 r9d r9w r9b'],
  [9, 'r8 r8d r8w r8b'],
  [10, 'rax eax ax al'],
  [11, 'rcx ecx cx cl'],
  [12, 'rdx edx dx dl'],
  [13, 'rsi esi si sil'],
  [14, 'rdi edi di dil'],
  [19, 'rsp esp sp spl'],
] as const) {
  for (const name of names.split(' ')) X86_64_REGISTERS[name] = word
}

const SIZED = /^(-?\d+)@(.+)$/
const CONSTANT = /^\$(-?(?:0x[0-9a-f]+|\d+))$/i
const REGISTER = /^%(\w+)$/
const MEMORY = /^(-?(?:0x[0-9a-f]+|\d+))?\(%(\w+)\)$/i

const READABLE_FORMS = 'registers (8@%rax, -4@%r12d), memory at a register (8@-24(%rbp), 8@(%rdi)) and constants (4@$1)'

/**
 * The first `count` arguments of a probe site (all of them by default), as its note spells them:
 * `SIZE@OPERAND`, a negative SIZE for a signed value, or an old-style bare `%reg` (8 bytes).
 */
export function parseUsdtArgs(probe: UsdtProbe, count?: number): UsdtArgSpec[] {
  const specs = probe.args.trim() === '' ? [] : probe.args.trim().split(/\s+/)
  return specs.slice(0, count ?? specs.length).map((spec, i) => parseArg(probe, spec, i))
}

function parseArg(probe: UsdtProbe, spec: string, index: number): UsdtArgSpec {
  const sized = SIZED.exec(spec)
  const bytes = sized ? Math.abs(Number(sized[1])) : 8
  const operand = sized ? sized[2]! : spec
  const unreadable = (why: string) => unreadableArg(probe, spec, index, why)
  if (bytes !== 1 && bytes !== 2 && bytes !== 4 && bytes !== 8) throw unreadable(`a ${bytes}-byte value`)
  const size = bytes
  const signed = sized !== null && sized[1]!.startsWith('-')
  const register = (name: string) => {
    const word = X86_64_REGISTERS[name.toLowerCase()]
    if (word === undefined) throw unreadable(`register %${name} is not one usdtrace reads`)
    return word
  }
  let match = CONSTANT.exec(operand)
  if (match) return { kind: 'const', reg: 0, value: BigInt.asIntN(64, parseInteger(match[1]!)), size, signed }
  match = REGISTER.exec(operand)
  if (match) return { kind: 'reg', reg: register(match[1]!), value: 0n, size, signed }
  match = MEMORY.exec(operand)
  if (match) {
    return { kind: 'deref', reg: register(match[2]!), value: parseInteger(match[1] ?? '0'), size, signed }
  }
  throw unreadable(
    operand.includes('(%rip)')
      ? 'an address relative to the instruction pointer (a global variable), which would need its symbol resolved in every process'
      : 'an addressing form usdtrace does not read (index registers or a symbol)',
  )
}

function parseInteger(text: string): bigint {
  return text.startsWith('-') ? -BigInt(text.slice(1)) : BigInt(text)
}

function unreadableArg(probe: UsdtProbe, spec: string, index: number, why: string): TraceError {
  return new TraceError(
    'PROBE_UNAVAILABLE',
    `${probe.provider}:${probe.name} in ${probe.object} passes argument ${index + 1} as ${JSON.stringify(spec)}: ` +
      `${why}. usdtrace reads ${READABLE_FORMS}; read only the ${index} argument${index === 1 ? '' : 's'} before it, ` +
      'or trace another probe',
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
