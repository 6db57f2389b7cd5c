// usdtrace reads USDT arguments itself (src/kernel/usdt-args.ts, bpf/usdt_args.bpf.h): the spec
// parser against argument strings as readelf shows them on this machine and in Debian's arm64
// libpython3.11 (against the types CPython declares), and the BPF reader against probes whose
// values are known from elsewhere: a constant and a memory operand in PostgreSQL, checked
// against what SQL reports.
import t from 'tap'
import { traceUsdt, type UsdtEvent, type UsdtTrace } from '../src/index.js'
import { readUsdtProbes, type UsdtProbe } from '../src/process/elf.js'
import { parseUsdtArgs, usdtArguments } from '../src/kernel/usdt-args.js'
import { startCluster } from './fixtures/postgres.js'
import { ARM64_LIBPYTHON, machine, notes } from './fixtures/readelf.js'
import { rejection } from './targets.js'

// e_machine of x86-64 and AArch64, from the ELF specification.
const EM_X86_64 = 62
const EM_AARCH64 = 183

function probe(args: string, machine = EM_X86_64): UsdtProbe {
  return {
    provider: 'test',
    name: 'probe',
    object: '/test/object',
    address: 0n,
    fileOffset: 0n,
    semaphore: 0n,
    semaphoreFileOffset: 0n,
    args,
    machine,
  }
}

// Words of x86-64's struct pt_regs: r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di orig_ax ip cs flags sp ss.
const R13 = 2
const R12 = 3
const RBP = 4
const RBX = 5
const RAX = 10
const RSI = 13
const RDI = 14

t.test('the spec parser, on argument strings readelf -n shows here', async (t) => {
  t.same(
    parseUsdtArgs(probe('8@%rbp 8@%r12 -4@%eax')),
    [
      { kind: 'reg', reg: RBP, value: 0n, size: 8, signed: false },
      { kind: 'reg', reg: R12, value: 0n, size: 8, signed: false },
      { kind: 'reg', reg: RAX, value: 0n, size: 4, signed: true },
    ],
    "python3.11's function__entry: two pointers and a signed 32-bit line",
  )
  t.same(
    parseUsdtArgs(probe('-4@-136(%rbp) 4@-132(%rbp) 4@0(%r13) 4@4(%r13) 4@8(%r13) -4@12(%r13) 1@$0 1@$1')),
    [
      { kind: 'deref', reg: RBP, value: -136n, size: 4, signed: true },
      { kind: 'deref', reg: RBP, value: -132n, size: 4, signed: false },
      { kind: 'deref', reg: R13, value: 0n, size: 4, signed: false },
      { kind: 'deref', reg: R13, value: 4n, size: 4, signed: false },
      { kind: 'deref', reg: R13, value: 8n, size: 4, signed: false },
      { kind: 'deref', reg: R13, value: 12n, size: 4, signed: true },
      { kind: 'const', reg: 0, value: 0n, size: 1, signed: false },
      { kind: 'const', reg: 0, value: 1n, size: 1, signed: false },
    ],
    "postgres's buffer__read__done: memory at a register plus a displacement, and constants",
  )
  t.same(
    parseUsdtArgs(probe('4@(%r12) 2@12(%r12) 1@%dil 1@%sil -4@$1 -8@%rbx')),
    [
      { kind: 'deref', reg: R12, value: 0n, size: 4, signed: false },
      { kind: 'deref', reg: R12, value: 12n, size: 2, signed: false },
      { kind: 'reg', reg: RDI, value: 0n, size: 1, signed: false },
      { kind: 'reg', reg: RSI, value: 0n, size: 1, signed: false },
      { kind: 'const', reg: 0, value: 1n, size: 4, signed: true },
      { kind: 'reg', reg: RBX, value: 0n, size: 8, signed: true },
    ],
    "postgres's lock__wait__start and wal__insert forms: no displacement, byte registers",
  )
  t.same(
    parseUsdtArgs(probe('1@%r13b -2@%r13w 4@%r13d %r13')),
    [
      { kind: 'reg', reg: R13, value: 0n, size: 1, signed: false },
      { kind: 'reg', reg: R13, value: 0n, size: 2, signed: true },
      { kind: 'reg', reg: R13, value: 0n, size: 4, signed: false },
      { kind: 'reg', reg: R13, value: 0n, size: 8, signed: false },
    ],
    "libjvm's r13 by all its names, and an old-style bare register (8 bytes)",
  )
  t.same(parseUsdtArgs(probe('')), [], 'a probe without arguments')
  t.same(parseUsdtArgs(probe('-4@40+CheckpointStats(%rip) -4@NBuffers(%rip)'), 0), [], 'only the arguments asked for are parsed')

  const ripRelative = t.throws(() => parseUsdtArgs(probe('-4@%ebx -4@NBuffers(%rip)')))
  t.match(ripRelative, { code: 'PROBE_UNAVAILABLE' })
  t.match(ripRelative, { message: /test:probe in \/test\/object passes argument 2 as "-4@NBuffers\(%rip\)"/ }, 'names the probe and the spec')
  t.match(ripRelative, { message: /global variable/ }, 'says why')
  t.match(ripRelative, { message: /read only the 1 argument before it/ }, 'names the fix')
  t.match(t.throws(() => parseUsdtArgs(probe('8@(%rax,%rbx,8)'))), { code: 'PROBE_UNAVAILABLE', message: /addressing form/ })
  t.match(t.throws(() => parseUsdtArgs(probe('8@%ah'))), { code: 'PROBE_UNAVAILABLE', message: /register %ah/ })
  t.match(t.throws(() => parseUsdtArgs(probe('3@%rax'))), { code: 'PROBE_UNAVAILABLE', message: /a 3-byte value/ })
})

t.test('AArch64 specs: registers, memory at a register and constants, as words of user_pt_regs', async (t) => {
  // struct user_pt_regs: x0 .. x30, sp, pc, pstate; a wN register is the low half of xN.
  const SP = 31
  t.same(
    usdtArguments(probe('8@x19 -4@w1 8@[sp, 16] 8@[x19] -8@[x0, -8] 4@5 -4@-3 8@sp', EM_AARCH64)).map((a) => [a.size, a.signed, a.operand, a.read]),
    [
      [8, false, 'x19', { kind: 'reg', reg: 19, value: 0n, size: 8, signed: false }],
      [4, true, 'w1', { kind: 'reg', reg: 1, value: 0n, size: 4, signed: true }],
      [8, false, '[sp, 16]', { kind: 'deref', reg: SP, value: 16n, size: 8, signed: false }],
      [8, false, '[x19]', { kind: 'deref', reg: 19, value: 0n, size: 8, signed: false }],
      [8, true, '[x0, -8]', { kind: 'deref', reg: 0, value: -8n, size: 8, signed: true }],
      [4, false, '5', { kind: 'const', reg: 0, value: 5n, size: 4, signed: false }],
      [4, true, '-3', { kind: 'const', reg: 0, value: -3n, size: 4, signed: true }],
      [8, false, 'sp', { kind: 'reg', reg: SP, value: 0n, size: 8, signed: false }],
    ],
  )
  t.match(usdtArguments(probe('8@[x1, x2]', EM_AARCH64))[0]!.read, { unreadable: /addressing form/ }, 'an index register')
  t.match(usdtArguments(probe('8@x31', EM_AARCH64))[0]!.read, { unreadable: /register x31/ }, 'no x31: that encoding is sp or xzr')
  t.match(usdtArguments(probe('8@%rax', EM_AARCH64))[0]!.read, { unreadable: /addressing form/ }, "x86-64's names mean nothing here")
  t.match(usdtArguments(probe('8@x0', EM_X86_64))[0]!.read, { unreadable: /addressing form/ }, "nor AArch64's on x86-64")
})

t.test('a file of another architecture: listed by its own registers, refused at attach', async (t) => {
  const arm64 = probe('8@x19 -4@[sp, 60]', EM_AARCH64)
  const host = process.arch === 'x64' ? EM_X86_64 : EM_AARCH64
  const foreign = host === EM_X86_64 ? arm64 : probe('8@%rbp -4@-20(%rbp)', EM_X86_64)
  t.equal(usdtArguments(foreign).length, 2, 'its arguments are read in its own registers')
  const refused = t.throws(() => parseUsdtArgs(foreign))
  t.match(refused, { code: 'PROBE_UNAVAILABLE' })
  t.match(refused, { message: host === EM_X86_64 ? /built for AArch64, and this host is x86-64/ : /built for x86-64, and this host is AArch64/ })
  t.match(refused, { message: /Trace it on a/ }, 'names the fix')

  const riscv = probe('8@a0 -4@8(sp)', 243)
  t.same(
    usdtArguments(riscv).map((a) => [a.size, a.signed, a.operand]),
    [[8, false, 'a0'], [4, true, '8(sp)']],
    'an architecture usdtrace has no registers for still lists sizes and operands',
  )
  t.match(usdtArguments(riscv)[0]!.read, { unreadable: /e_machine 243/ })
})

// The python provider's probes as CPython 3.11 declares them (Include/pydtrace.d): a pointer is an
// unsigned 8-byte value in the notes, an int a signed 4-byte one, a long a signed 8-byte one.
const POINTER = { size: 8, signed: false }
const INT = { size: 4, signed: true }
const LONG = { size: 8, signed: true }
const PYTHON_PROBES: Record<string, { size: number; signed: boolean }[]> = {
  function__entry: [POINTER, POINTER, INT],
  function__return: [POINTER, POINTER, INT],
  line: [POINTER, POINTER, INT],
  gc__start: [INT],
  gc__done: [LONG],
  import__find__load__start: [POINTER],
  import__find__load__done: [POINTER, INT],
  audit: [POINTER, POINTER],
}

t.test("Debian's arm64 libpython3.11: every python probe's arguments, against readelf -n", async (t) => {
  t.equal(machine(ARM64_LIBPYTHON), EM_AARCH64, 'readelf -h: an AArch64 file')
  const probes = readUsdtProbes(ARM64_LIBPYTHON).filter((p) => p.provider === 'python')
  const readelf = notes(ARM64_LIBPYTHON).filter((p) => p.provider === 'python')
  t.same(probes.map((p) => p.name).sort(), Object.keys(PYTHON_PROBES).sort(), 'the probes CPython 3.11 declares')
  t.ok(readelf.some((p) => p.args.includes('[sp, ')), 'one of them passes an argument on the stack')
  // readelf's operands, read by hand: xN or wN is word N of user_pt_regs, sp word 31, [REG, N] memory at REG + N.
  const word = (register: string) => (register === 'sp' ? 31 : Number(/^[xw](\d+)$/.exec(register)![1]))
  for (const probe of probes) {
    const operands = [...readelf.find((p) => p.name === probe.name)!.args.matchAll(/@(\[[^\]]*\]|\S+)/g)].map((m) => m[1]!)
    const expected = PYTHON_PROBES[probe.name]!.map(({ size, signed }, i) => {
      const memory = /^\[(\w+), (-?\d+)\]$/.exec(operands[i]!)
      return memory
        ? { kind: 'deref', reg: word(memory[1]!), value: BigInt(memory[2]!), size, signed }
        : { kind: 'reg', reg: word(operands[i]!), value: 0n, size, signed }
    })
    t.same(
      usdtArguments(probe).map((argument) => argument.read),
      expected,
      `${probe.name} (${probe.args}): the declared sizes and signs, in the registers readelf names`,
    )
  }
})

t.test('attaching to the arm64 libpython3.11 on this x86-64 host is refused, naming both machines', async (t) => {
  const error = await rejection(traceUsdt({ binary: ARM64_LIBPYTHON, provider: 'python', name: 'gc__start', args: ['i32'] }), t)
  t.equal(error.code, 'PROBE_UNAVAILABLE')
  t.match(error.message, /python:gc__start in .*libpython3\.11\.so\.1\.0 is built for AArch64, and this host is x86-64/)
})

/** Events of `trace` until one satisfies `last`, inclusive. */
async function until(trace: UsdtTrace, last: (event: UsdtEvent) => boolean): Promise<UsdtEvent[]> {
  const events: UsdtEvent[] = []
  for await (const event of trace) {
    events.push(event)
    if (last(event)) break
  }
  return events
}

t.test('postgres probes read in the kernel: a constant and a memory operand, against SQL', async (t) => {
  const cluster = await startCluster(t)

  t.test('clog__checkpoint__start (-4@$1): CheckPointCLOG passes true', async (t) => {
    const trace = traceUsdt({ binary: cluster.postgres, provider: 'postgresql', name: 'clog__checkpoint__start', args: ['i32'] })
    t.teardown(() => trace.close())
    await trace.ready
    cluster.query('CHECKPOINT')
    const [event] = await until(trace, () => true)
    t.same(event!.args, [1], 'the constant 1')
  })

  t.test('transaction__start (4@%ebx) and transaction__commit (4@60(%rax)): the local transaction id', async (t) => {
    const probeTrace = (name: string) =>
      traceUsdt({ binary: cluster.postgres, provider: 'postgresql', name, args: ['u32'] })
    const starts = probeTrace('transaction__start')
    const commits = probeTrace('transaction__commit')
    t.teardown(() => Promise.all([starts.close(), commits.close()]))
    await Promise.all([starts.ready, commits.ready])
    // A virtual transaction id is "backend id/local transaction id".
    const [backend, virtualxid] = cluster
      .query("SELECT pg_backend_pid(), virtualtransaction FROM pg_locks WHERE locktype = 'virtualxid' AND pid = pg_backend_pid()")
      .split('|')
    const pid = Number(backend)
    const lxid = Number(virtualxid!.split('/')[1])
    t.ok(lxid > 0, `the query ran as local transaction ${lxid} of backend ${pid}`)
    const ofQuery = (event: UsdtEvent) => event.pid === pid && event.args[0] === lxid
    t.ok((await until(starts, ofQuery)).some(ofQuery), 'its start carries it, from a register')
    t.ok((await until(commits, ofQuery)).some(ofQuery), 'its commit carries it, read from memory')
  })

  t.test('an argument at a global variable is a TraceError naming the probe and the fix', async (t) => {
    const error = await rejection(
      traceUsdt({ binary: cluster.postgres, provider: 'postgresql', name: 'checkpoint__done', args: ['i32'] }),
      t,
    )
    t.equal(error.code, 'PROBE_UNAVAILABLE')
    t.match(error.message, 'postgresql:checkpoint__done')
    t.match(error.message, '"-4@40+CheckpointStats(%rip)"')
    t.match(error.message, /read only the 0 arguments before it/)
  })
})
