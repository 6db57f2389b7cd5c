/**
 * `usdtrace ps`: the Python processes (and other runtimes with USDT probes) as a tree, like
 * `pstree -p` with a table: version, what call tracing can do there, whether its stacks can be
 * sampled, threads, CPU% over a short sample, resident memory.
 */
import { flag, seconds, type ParsedArgs } from './args.js'
import type { Command } from './command.js'
import { UsageError } from './errors.js'
import { CLOCK_TICKS_PER_SECOND, readCpuTicks, readProcesses, readRssBytes, readThreads, type ProcessInfo, type ThreadInfo } from './procfs.js'
import { count, type Run } from './run.js'
import { RuntimeDetector, type ProbeStatus, type Runtime } from './runtimes.js'
import { cut, formatTable, type Column } from './table.js'

const NAME = 'ps'

const HELP = `usdtrace ps [PATTERN] [options]

Lists the Python processes, and other programs whose executable or runtime library carries
USDT probes (PostgreSQL, a JVM, ...), as a process tree: each under its nearest listed
ancestor. For each: the runtime and version, what call tracing can do there, whether its
stacks can be read, threads, CPU% (measured over -i), resident memory and the command line.

PROBES says what \`usdtrace calls/flow\` can do:
  calls native              function entry and return probes fire by themselves (3.6-3.10, 3.15+)
  calls via line semaphore  3.11: entries need the line probe's semaphore (slower while traced)
  calls unavailable         3.12-3.14 removed the call probes; gc, import and audit probes remain
  no probes                 built without --with-dtrace (pyenv, docker python images)
  N probes                  another runtime's probes (\`usdtrace probes PID\` lists them)

STACKS says whether \`usdtrace top\`, \`dump\` and \`record --sample\` can read its Python stacks,
which needs no probes:
  yes                       CPython 3.10 or later, from its own debug offsets (3.13+) or
                            usdtrace's table for its version
  no                        older than 3.10, free-threaded, or without the symbols it needs
                            (\`usdtrace dump PID\` says why)

PATTERN is a regular expression matched like pgrep: against the process name, or the whole
command line with -f.

Options:
  -f, --full             match PATTERN against the whole command line
  -x, --exact            PATTERN must match the whole name (or command line)
  -a, --all              every process, with or without probes
  -t, --threads          list each process's threads under it, with their CPU%
  -i, --interval SECS    how long to measure CPU% (default 0.5)
      --json             one JSON object per process (see docs/cli.md for the schema)
      --debug            stack traces on errors

Examples:
  usdtrace ps                       # every Python process
  usdtrace ps -f gunicorn -t        # gunicorn's processes and their threads
  usdtrace ps -a                    # everything, as a tree`

export const ps: Command = {
  name: NAME,
  summary: 'list Python processes as a tree: version, probes, stacks, threads, CPU%, RSS',
  help: HELP,
  options: {
    full: { type: 'boolean', short: 'f' },
    exact: { type: 'boolean', short: 'x' },
    all: { type: 'boolean', short: 'a' },
    threads: { type: 'boolean', short: 't' },
    interval: { type: 'string', short: 'i' },
  },
  run: runPs,
}

interface Row {
  process: ProcessInfo
  runtime: Runtime | undefined
  cpuPercent: number | undefined
  rssBytes: number | undefined
  threads: (ThreadInfo & { cpuPercent: number | undefined })[]
  children: Row[]
}

async function runPs(run: Run, args: ParsedArgs): Promise<void> {
  const { values, positionals } = args
  if (positionals.length > 1) throw new UsageError(`one PATTERN only, got ${positionals.join(' ')}`, NAME)
  const matches = matcher(positionals[0], flag(values, 'full'), flag(values, 'exact'))
  const all = flag(values, 'all')
  const withThreads = flag(values, 'threads')
  const intervalMs = (seconds(NAME, values, 'interval') ?? 0.5) * 1000

  run.status.progress('reading processes...')
  const sampledAt = process.hrtime.bigint()
  const table = await readProcesses()
  const candidates = [...table.values()].filter((p) => p.pid !== process.pid && matches(p))
  const detector = new RuntimeDetector()
  const runtimes = new Map<number, Runtime | undefined>()
  await Promise.all(
    candidates.filter((p) => !p.kernelThread).map(async (p) => runtimes.set(p.pid, await detector.detect(p.pid))),
  )
  const shown = candidates.filter((p) => all || runtimes.get(p.pid) !== undefined)
  const threadsBefore = new Map<number, ThreadInfo[]>()
  if (withThreads) await Promise.all(shown.map(async (p) => threadsBefore.set(p.pid, await readThreads(p.pid))))

  run.status.progress(`measuring CPU for ${intervalMs / 1000} s...`)
  await run.sleep(intervalMs)
  run.status.clear()
  if (run.reason !== undefined) return
  const seconds_ = Number(process.hrtime.bigint() - sampledAt) / 1e9
  const percent = (before: number, after: number | undefined) =>
    after === undefined ? undefined : (100 * (after - before)) / (CLOCK_TICKS_PER_SECOND * seconds_)

  const rows = new Map<number, Row>()
  await Promise.all(
    shown.map(async (p) => {
      const [ticks, rssBytes, threadsAfter] = await Promise.all([
        readCpuTicks(`/proc/${p.pid}/stat`),
        readRssBytes(p.pid),
        withThreads ? readThreads(p.pid) : Promise.resolve([]),
      ])
      if (ticks === undefined) return // exited meanwhile
      const before = new Map((threadsBefore.get(p.pid) ?? []).map((t) => [t.tid, t.cpuTicks]))
      rows.set(p.pid, {
        process: p,
        runtime: runtimes.get(p.pid),
        cpuPercent: percent(p.cpuTicks, ticks),
        rssBytes,
        threads: threadsAfter.map((t) => ({ ...t, cpuPercent: before.has(t.tid) ? percent(before.get(t.tid)!, t.cpuTicks) : undefined })),
        children: [],
      })
    }),
  )
  const roots = buildTree(rows, table)

  if (run.json) {
    for (const row of walk(roots)) run.out.json(jsonRow(row.row, row.parent, withThreads))
  } else if (rows.size > 0) {
    render(run, roots, withThreads)
  }
  if (rows.size === 0) run.status.note(all ? 'no process matches' : 'no Python process (nor other runtime with USDT probes) found; -a lists every process')
  if (detector.unreadable.size > 0) {
    const fix = process.geteuid?.() === 0 ? '' : '; run as root to see them'
    const named = [...detector.unreadable].map(([pid, why]) => `${pid} ${table.get(pid)?.comm ?? '?'} (${why})`)
    run.status.note(`could not read ${count(named.length, 'process', 'processes')}: ${named.slice(0, 10).join(', ')}${named.length > 10 ? ', ...' : ''}${fix}`)
  }
}

function matcher(pattern: string | undefined, full: boolean, exact: boolean): (p: ProcessInfo) => boolean {
  if (pattern === undefined) return () => true
  let regex: RegExp
  try {
    regex = new RegExp(exact ? `^(?:${pattern})$` : pattern)
  } catch (error) {
    throw new UsageError(`PATTERN '${pattern}' is not a regular expression: ${(error as Error).message}`, NAME)
  }
  return (p) => regex.test(full ? p.argv.join(' ') || p.comm : p.comm)
}

/** Each row under its nearest shown ancestor; roots and children in pid order. */
function buildTree(rows: Map<number, Row>, table: Map<number, ProcessInfo>): Row[] {
  const roots: Row[] = []
  for (const row of [...rows.values()].sort((a, b) => a.process.pid - b.process.pid)) {
    let parent: Row | undefined
    const seen = new Set<number>()
    for (let ppid = row.process.ppid; ppid > 0 && !seen.has(ppid); ppid = table.get(ppid)?.ppid ?? 0) {
      seen.add(ppid)
      parent = rows.get(ppid)
      if (parent) break
    }
    ;(parent ? parent.children : roots).push(row)
  }
  return roots
}

function* walk(rows: Row[], parent?: Row): Generator<{ row: Row; parent: Row | undefined }> {
  for (const row of rows) {
    yield { row, parent }
    yield* walk(row.children, row)
  }
}

const PROBE_TEXT: Record<ProbeStatus, string> = {
  native: 'calls native',
  'line-semaphore': 'calls via line semaphore',
  unavailable: 'calls unavailable',
  'no-probes': 'no probes',
}

const PROBE_STYLE = { native: 'green', 'line-semaphore': 'yellow', unavailable: 'yellow', 'no-probes': 'red' } as const

function render(run: Run, roots: Row[], withThreads: boolean): void {
  const columns: Column[] = [
    { title: 'PID', align: 'right' },
    { title: 'RUNTIME', align: 'left' },
    { title: 'PROBES', align: 'left' },
    { title: 'STACKS', align: 'left' },
    { title: 'THR', align: 'right' },
    { title: 'CPU%', align: 'right' },
    { title: 'RSS', align: 'right' },
    { title: 'COMMAND', align: 'left' },
  ]
  const cells: string[][] = []
  const styles: (ProbeStatus | undefined)[] = []
  const visit = (rows: Row[], prefix: string, depth: number) => {
    rows.forEach((row, i) => {
      const last = i === rows.length - 1
      const branch = depth === 0 ? '' : last ? '└─ ' : '├─ '
      const { process: p, runtime } = row
      cells.push([
        String(p.pid),
        runtime ? (runtime.version ? `${runtime.name} ${runtime.version}` : runtime.name) : '-',
        runtime ? (runtime.calls ? PROBE_TEXT[runtime.calls] : `${runtime.probes} probes`) : '-',
        runtime?.stacks === undefined ? '-' : runtime.stacks === 'unavailable' ? 'no' : 'yes',
        String(p.threads),
        cpu(row.cpuPercent),
        bytes(row.rssBytes),
        prefix + branch + commandOf(p),
      ])
      styles.push(runtime?.calls)
      const childPrefix = depth === 0 ? '' : prefix + (last ? '   ' : '│  ')
      if (withThreads) {
        const more = row.children.length > 0
        row.threads.forEach((t, j) => {
          const lastThread = j === row.threads.length - 1 && !more
          cells.push([String(t.tid), '', '', '', '', cpu(t.cpuPercent), '', `${childPrefix}${lastThread ? '└─ ' : '├─ '}{${t.comm}}`])
          styles.push(undefined)
        })
      }
      visit(row.children, childPrefix, depth + 1)
    })
  }
  visit(roots, '', 0)
  const width = run.out.isTTY ? process.stdout.columns : undefined
  const lines = formatTable(columns, cells)
  run.out.line(run.out.paint('bold', lines[0]!))
  lines.slice(1).forEach((line, i) => {
    let text = width ? cut(line, width) : line
    const status = styles[i]
    if (status) text = text.replace(PROBE_TEXT[status], run.out.paint(PROBE_STYLE[status], PROBE_TEXT[status]))
    run.out.line(text)
  })
}

function commandOf(p: ProcessInfo): string {
  if (p.argv.length === 0) return `[${p.comm}]`
  // One line per process: control characters (a -c program's newlines) shown escaped.
  return p.argv.join(' ').replace(/[\x00-\x1f\x7f]/g, (c) => (c === '\n' ? '\\n' : c === '\t' ? '\\t' : '?'))
}

function cpu(percent: number | undefined): string {
  return percent === undefined ? '-' : percent.toFixed(1)
}

function bytes(value: number | undefined): string {
  if (value === undefined) return '-'
  const units = ['B', 'K', 'M', 'G', 'T']
  let scaled = value
  let unit = 0
  while (scaled >= 1024 && unit < units.length - 1) {
    scaled /= 1024
    unit++
  }
  return `${scaled >= 100 || unit === 0 ? Math.round(scaled) : scaled.toFixed(1)}${units[unit]}`
}

function jsonRow(row: Row, parent: Row | undefined, withThreads: boolean) {
  const { process: p, runtime } = row
  return {
    type: 'process',
    pid: p.pid,
    ppid: p.ppid,
    parent: parent?.process.pid ?? null,
    name: p.comm,
    argv: p.argv,
    runtime: runtime?.name ?? null,
    version: runtime?.version ?? null,
    calls: runtime?.calls ?? null,
    stacks: runtime?.stacks ?? null,
    probes: runtime?.probes ?? 0,
    probeObject: runtime?.object ?? null,
    threads: p.threads,
    cpuPercent: row.cpuPercent === undefined ? null : Number(row.cpuPercent.toFixed(2)),
    rssBytes: row.rssBytes ?? null,
    ...(withThreads ? { threadList: row.threads.map((t) => ({ tid: t.tid, name: t.comm, cpuPercent: t.cpuPercent === undefined ? null : Number(t.cpuPercent.toFixed(2)) })) } : {}),
  }
}
