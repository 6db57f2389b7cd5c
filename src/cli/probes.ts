/**
 * `usdtrace probes PID|PATH`: the USDT probes of a process or a file with their arguments, like
 * `bpftrace -l 'usdt:...'` or bcc's tplist -v.
 */
import { listProbes, type UsdtProbe } from '../index.js'
import { usdtArguments } from '../kernel/usdt-args.js'
import { flag, pid as parsePid, type ParsedArgs } from './args.js'
import type { Command } from './command.js'
import { UsageError } from './errors.js'
import { count, type Run } from './run.js'
import { formatTable } from './table.js'

const NAME = 'probes'

const HELP = `usdtrace probes PID|PATH [PATTERN] [options]

Lists the USDT probes of a running process (every file it has mapped) or of an ELF file, with
their arguments: size and signedness (u64, i32, ...) and where each is read from. PATTERN is
a glob on provider:name ("python:gc*", "*:function__*").

Options:
  -v, --verbose          the raw argument spec, address and semaphore address of each probe
      --bpftrace         one usdt:PATH:provider:name line per probe, as \`bpftrace -l\` prints them
      --json             one JSON object per probe (see docs/cli.md for the schema)
      --debug            stack traces on errors

Examples:
  usdtrace probes 4242                        # everything the process has mapped
  usdtrace probes /usr/bin/python3.11 'python:*'
  usdtrace probes /usr/lib/postgresql/15/bin/postgres 'postgresql:transaction*'`

export const probes: Command = {
  name: NAME,
  summary: 'list the USDT probes of a process or file, with their arguments',
  help: HELP,
  options: {
    verbose: { type: 'boolean', short: 'v' },
    bpftrace: { type: 'boolean' },
  },
  run: runProbes,
}

export interface ProbeArgument {
  /** u8 ... u64 for unsigned, i8 ... i64 for signed */
  type: string
  /** where the value is: a register, a memory operand or an $immediate */
  location: string
}

/** A probe's arguments, as its file's architecture spells them ("8@%rbp -4@%eax"; AArch64: "8@x0 -4@[sp, 16]"). */
export function probeArguments(probe: UsdtProbe): ProbeArgument[] {
  return usdtArguments(probe).map((argument) => ({
    type: `${argument.signed ? 'i' : 'u'}${argument.size * 8}`,
    location: argument.operand,
  }))
}

async function runProbes(run: Run, args: ParsedArgs): Promise<void> {
  const [subject, pattern, ...rest] = args.positionals
  if (subject === undefined) throw new UsageError('give a PID or the path of an ELF file', NAME)
  if (rest.length > 0) throw new UsageError(`one PID or PATH and one PATTERN at most, got ${args.positionals.join(' ')}`, NAME)
  const target = /^\d+$/.test(subject) ? parsePid(NAME, subject) : subject
  const matches = glob(pattern)
  const found = (await listProbes(target)).filter((p) => matches(`${p.provider}:${p.name}`))

  if (run.json) {
    for (const p of found) run.out.json(jsonProbe(p))
  } else if (flag(args.values, 'bpftrace')) {
    for (const p of found) run.out.line(`usdt:${p.object}:${p.provider}:${p.name}`)
  } else if (found.length > 0) {
    render(run, found, flag(args.values, 'verbose'))
  }
  const objects = new Set(found.map((p) => p.object)).size
  const what = typeof target === 'number' ? `process ${target}` : target
  if (found.length === 0) run.status.note(`no USDT probes${pattern ? ` match ${pattern}` : ''} in ${what}`)
  else run.status.note(`${count(found.length, 'probe')} in ${count(objects, 'file')}`)
}

function render(run: Run, found: UsdtProbe[], verbose: boolean): void {
  const columns = [
    { title: 'PROBE', align: 'left' as const },
    { title: 'ARGUMENTS', align: 'left' as const },
    { title: 'SEMAPHORE', align: 'left' as const },
    ...(verbose ? [{ title: 'ADDRESS', align: 'left' as const }, { title: 'SPEC', align: 'left' as const }] : []),
    { title: 'OBJECT', align: 'left' as const },
  ]
  const rows = found.map((p) => [
    `${p.provider}:${p.name}`,
    probeArguments(p)
      .map((a, i) => `arg${i}:${a.type}`)
      .join(' ') || '-',
    p.semaphore === 0n ? 'no' : verbose ? `0x${p.semaphore.toString(16)}` : 'yes',
    ...(verbose ? [`0x${p.address.toString(16)}`, p.args || '-'] : []),
    p.object,
  ])
  const [header, ...lines] = formatTable(columns, rows)
  run.out.line(run.out.paint('bold', header!))
  for (const line of lines) run.out.line(line)
}

function glob(pattern: string | undefined): (name: string) => boolean {
  if (pattern === undefined) return () => true
  const regex = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`)
  return (name) => regex.test(name)
}

function jsonProbe(p: UsdtProbe) {
  return {
    type: 'probe',
    provider: p.provider,
    name: p.name,
    object: p.object,
    address: `0x${p.address.toString(16)}`,
    fileOffset: `0x${p.fileOffset.toString(16)}`,
    semaphore: p.semaphore === 0n ? null : `0x${p.semaphore.toString(16)}`,
    args: probeArguments(p),
    spec: p.args,
  }
}
