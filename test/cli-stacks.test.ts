// The sampling commands against pyenv's Pythons (no USDT probes): `usdtrace dump` against the
// target's own sys._current_frames(), `record --sample` and `flame --sample` on a thread spinning
// in one function and another sleeping in another, `top` piped, `ps`'s STACKS column, and the
// calls commands pointing at the sampling ones where a Python has no probes.
import { chmodSync, copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import t from 'tap'
import { PYENV } from './fixtures/processes.js'
import { STACKS_TARGET, startStacksTarget as start, threadGone } from './fixtures/stacks.js'
import Ajv from 'ajv'
import { XMLParser } from 'fast-xml-parser'
import { pprofTop } from './fixtures/pprof.js'
import { loadSpeedscopeImporter, speedscopeSchema } from './fixtures/speedscope.js'
import { tmpDir } from './programs/tools.js'
import { ROOT, runCli, runCliPiped, tableAfter } from './cli.js'

const PYTHON_312 = `${PYENV}/3.12.1/bin/python3.12`
/** 3.10 names frames by co_name alone (no co_qualname). */
const PYTHON_310 = `${PYENV}/3.10.13/bin/python3.10`
/** The deepest stack a dump carries (STACK_FRAMES_MAX in bpf/usdtrace.h). */
const FRAMES_KEPT = 127
/** The names test/targets/stacks.py gives its threads in the blocked mode. */
const BLOCKED_NAMES = ['MainThread', 'stack-0', 'stack-1', 'stack-2']

type Triple = [string, string, number]

/** `usdtrace dump` prints, per thread, a `Thread TID "NAME" (...)` line and its frames under it. */
function parseDump(text: string): Map<number, { name: string; frames: string[]; more: boolean }> {
  const threads = new Map<number, { name: string; frames: string[]; more: boolean }>()
  let current: { name: string; frames: string[]; more: boolean } | undefined
  for (const line of text.split('\n')) {
    const thread = /^Thread (\d+) "([^"]*)" \((on|off) CPU\)/.exec(line)
    if (thread) threads.set(Number(thread[1]), (current = { name: thread[2]!, frames: [], more: false }))
    else if (current && line.startsWith('    ... ')) current.more = true
    else if (current && line.startsWith('    ')) current.frames.push(line.slice(4))
  }
  return threads
}

for (const python of [PYTHON_310, PYTHON_312]) {
  t.test(`dump ${python}: every thread as the target's own sys._current_frames() says`, async (t) => {
    const { pid, report } = await start(t, python, ['blocked', '200'])
    await threadGone(pid, report.reporter as number)
    const expected = report.stacks as Record<string, Triple[]>

    const text = await runCliPiped(t, ['dump', String(pid)]).done
    t.equal(text.code, 0, 'exit status 0')
    t.match(text.stdout, new RegExp(`^Process ${pid} \\(python 3\\.`), 'a header names the process and its version')
    const threads = parseDump(text.stdout)
    t.same([...threads.keys()].map(String).sort(), Object.keys(expected).sort(), 'every Python thread, and only those')
    t.same([...threads.values()].map((thread) => thread.name).sort(), BLOCKED_NAMES, 'named as threading names them')
    for (const [tid, thread] of threads) {
      const frames = expected[tid]!
      const kept = frames.slice(0, FRAMES_KEPT)
      t.equal(thread.more, frames.length > FRAMES_KEPT, `thread ${tid}: says so exactly when outer frames are missing`)
      t.equal(thread.frames.length, kept.length, `thread ${tid}: ${kept.length} frames`)
      thread.frames.forEach((printed, i) => {
        const [file, func, line] = kept[i]!
        const match = /^(.+) \((.+):(\d+)\)$/.exec(printed)
        // The target's own file relative to the command's cwd; any other (threading.py) as a tail of its path.
        const shown = file.startsWith(`${ROOT}`) ? relative(ROOT, file) : match?.[2]
        t.ok(match && match[1] === func && Number(match[3]) === line && match[2] === shown && file.endsWith(`/${shown}`), `thread ${tid} frame ${i}: ${printed} is ${func} (${file}:${line})`)
      })
    }

    const json = await runCliPiped(t, ['dump', String(pid), '--json']).done
    t.equal(json.code, 0)
    const rows = json.stdout.trim().split('\n').map((line) => JSON.parse(line) as { type: string; pid: number; tid: number; frames: { file: string; func: string; line: number }[]; truncated: boolean; onCpu: boolean })
    t.same(rows.map((row) => String(row.tid)).sort(), Object.keys(expected).sort(), '--json: one object per thread')
    for (const row of rows) {
      t.equal(row.type, 'thread')
      t.equal(row.pid, pid)
      t.notOk(row.onCpu, `${row.tid} is blocked`)
      t.same(row.frames.map((frame) => [frame.file, frame.func, frame.line]), expected[row.tid]!.slice(0, FRAMES_KEPT), `--json ${row.tid}: the frames, full paths`)
    }
  })
}

t.test('dump: usage errors', async (t) => {
  const none = await runCliPiped(t, ['dump']).done
  t.equal(none.code, 2, 'no PID: a usage error')
  t.match(none.stderr, /give the PIDs/)
})

/** test/targets/stacks.py's busy mode: a thread spinning in spin(), another in sleeper(), waking every 20 ms. */
async function busy(t: Parameters<typeof start>[0]) {
  const { pid } = await start(t, PYTHON_312, ['busy', '0.02'])
  return pid
}

/** A folded file's weight per innermost function: `outer (f:l);...;leaf (f:l) weight`. */
function leafWeights(folded: string): Map<string, number> {
  const weights = new Map<string, number>()
  for (const line of folded.trim().split('\n')) {
    const at = line.lastIndexOf(' ')
    const leaf = line.slice(0, at).split(';').at(-1)!.replace(/ \(.*$/, '')
    weights.set(leaf, (weights.get(leaf) ?? 0) + Number(line.slice(at + 1)))
  }
  return weights
}

const total = (weights: Map<string, number>) => [...weights.values()].reduce((sum, w) => sum + w, 0)

t.test('record --sample: the spinning function dominates; --off-cpu adds the sleeping one', async (t) => {
  const pid = await busy(t)
  const dir = tmpDir(t, 'sample')
  const onCpu = join(dir, 'on.folded')
  const run = await runCliPiped(t, ['record', String(pid), '--sample', '--hz', '199', '-d', '2', '-o', onCpu]).done
  t.equal(run.code, 0, `exit status 0 ${run.stderr}`)
  t.match(run.stderr, /tracing stacks in/, 'says it samples stacks')
  t.match(run.stderr, /next to nothing per call/, 'and what that costs')
  const weights = leafWeights(readFileSync(onCpu, 'utf8'))
  t.ok(weights.get('spin')! > 0.8 * total(weights), `spin() holds most of the time on CPU: ${JSON.stringify([...weights])}`)
  for (const line of readFileSync(onCpu, 'utf8').trim().split('\n').filter((l) => /spin \(/.test(l))) {
    t.match(line, /^Thread\._bootstrap \(threading\.py:\d+\);.*Thread\.run \(threading\.py:\d+\);spin \(test\/targets\/stacks\.py:\d+\) \d+$/, 'under its thread\'s run()')
  }

  const offCpu = join(dir, 'off.folded')
  const both = await runCliPiped(t, ['record', String(pid), '--sample', '--off-cpu', '-d', '2', '-o', offCpu]).done
  t.equal(both.code, 0, `exit status 0 ${both.stderr}`)
  const waits = leafWeights(readFileSync(offCpu, 'utf8'))
  t.ok(waits.get('sleeper')! > 0, `--off-cpu: sleeper() shows where its thread waits: ${JSON.stringify([...waits])}`)
  t.ok(waits.get('spin')! > 0, 'beside spin()')

  const ndjson = join(dir, 'samples.ndjson')
  const lines = await runCliPiped(t, ['record', String(pid), '--sample', '--off-cpu', '-d', '1', '-o', ndjson]).done
  t.equal(lines.code, 0)
  const samples = readFileSync(ndjson, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { type: string; pid: number; onCpu: boolean; offCpuNs: number | null; frames: { func: string }[] })
  t.ok(samples.every((sample) => sample.type === 'sample' && sample.pid === pid), 'ndjson: one "sample" object per sample')
  t.ok(samples.some((sample) => sample.onCpu && sample.offCpuNs === null && sample.frames[0]?.func === 'spin'), 'spin() on CPU')
  t.ok(samples.some((sample) => !sample.onCpu && sample.offCpuNs! > 0 && sample.frames[0]?.func === 'sleeper'), 'sleeper() off CPU, with how long it waited')
})

t.test('flame --sample shows waits; --no-idle leaves them out', async (t) => {
  const pid = await busy(t)
  const dir = tmpDir(t, 'flame')
  /** Each function's share of the graph, as its boxes' tooltips say. */
  const shares = async (args: string[]) => {
    const file = join(dir, `flame${args.join('')}.svg`)
    const run = await runCliPiped(t, ['flame', String(pid), '--sample', '-d', '2', '-o', file, ...args]).done
    t.equal(run.code, 0, `exit status 0 ${run.stderr}`)
    const svg = new XMLParser({ ignoreAttributes: false, isArray: (name) => name === 'g' }).parse(readFileSync(file, 'utf8'))
    const share = new Map<string, number>()
    for (const g of svg.svg.g as { title: string }[]) {
      const match = /^(\S+)(?: \(.*\))?: \S+ \S+ \(([\d.]+)%\)$/.exec(String(g.title))
      t.ok(match, `a box says its sampled time and share, no calls: ${g.title}`)
      if (match) share.set(match[1]!, (share.get(match[1]!) ?? 0) + Number(match[2]))
    }
    return share
  }
  const idle = await shares([])
  t.ok(idle.get('sleeper')! > 25, `by default the sleeping thread's wait is there (as long as the run, beside a spinning thread): ${JSON.stringify([...idle])}`)
  const busyOnly = await shares(['--no-idle'])
  t.ok((busyOnly.get('spin') ?? 0) > 80, `--no-idle: spin() nearly all of it: ${JSON.stringify([...busyOnly])}`)
  t.ok((busyOnly.get('sleeper') ?? 0) < 5, 'and the sleeper next to nothing')
})

t.test('sampling options: usage errors', async (t) => {
  for (const [args, message] of [
    [['flame', '1', '-o', 'x.svg', '--no-idle'], /--no-idle is for sampled profiles: add --sample/],
    [['record', '1', '-o', 'x.folded', '--hz', '50'], /--hz is for sampled profiles/],
    [['record', '1', '-o', 'x.folded', '--sample', '--weight', 'calls'], /--weight calls counts traced calls/],
    [['flame', '1', '-o', 'x.svg', '--sample', '--off-cpu'], /unknown option '--off-cpu'/],
  ] as const) {
    const run = await runCliPiped(t, [...args]).done
    t.equal(run.code, 2, `${args.join(' ')}: a usage error`)
    t.match(run.stderr, message)
    t.notOk(existsSync(join(ROOT, args[3])), 'before any file is opened')
  }
})

/** Every table `usdtrace top` printed: its rows as [OWN%, TOTAL%, OWN, TOTAL, FUNCTION]. */
function topTables(stdout: string): string[][][] {
  return stdout
    .split('\n\n')
    .filter((block) => /OWN%/.test(block))
    .map((block) => tableAfter(block, /^\s*OWN%\s+TOTAL%/).filter((row) => !row[0]!.startsWith('...')))
}

t.test('top piped: a table per interval, the spinning function with the largest own share', async (t) => {
  const pid = await busy(t)
  const run = await runCliPiped(t, ['top', String(pid), '-i', '1', '-d', '2']).done
  t.equal(run.code, 0, `exit status 0 ${run.stderr}`)
  t.notMatch(run.stdout, /\x1b\[/, 'no screen clearing into a pipe')
  const tables = topTables(run.stdout)
  t.ok(tables.length >= 2, `a table per interval: ${tables.length}`)
  for (const rows of tables) {
    const own = rows.map((row) => Number(row[0]))
    t.match(rows[0]![4], /^spin \(test\/targets\/stacks\.py\)$/, 'spin() first')
    t.equal(Math.max(...own), own[0], 'with the largest own share')
    t.ok(own.reduce((sum, share) => sum + share, 0) <= 100.5, 'own shares add up to at most 100%: each sample has one innermost frame')
    const runRow = rows.find((row) => row[4] === 'Thread.run (threading.py)')
    t.ok(runRow && Number(runRow[1]) >= own[0]! - 0.1, "Thread.run, spin's caller, has at least spin's share in total")
  }
})

t.test('top --off-cpu --json: the sleeping function gets its wait', async (t) => {
  const pid = await busy(t)
  const run = await runCliPiped(t, ['top', String(pid), '--off-cpu', '-n', '1', '--json']).done
  t.equal(run.code, 0, `exit status 0 ${run.stderr}`)
  const tables = run.stdout.trim().split('\n').map((line) => JSON.parse(line) as { type: string; totalNs: number; offCpuNs: number; functions: { func: string; ownNs: number; totalNs: number; ownPercent: number }[] })
  t.equal(tables.length, 1, '-n 1: one table')
  const [table] = tables
  t.equal(table!.type, 'top')
  const byName = new Map(table!.functions.map((f) => [f.func, f]))
  t.ok(byName.get('sleeper')!.ownNs > 0, 'sleeper() waits')
  t.ok(byName.get('spin')!.ownNs > 0, 'spin() runs')
  t.ok(table!.offCpuNs > 0, 'the table has waits')
  // The sleeper's own time is its waits plus its samples on a CPU, as it wakes (each weighs a whole
  // period): so it can pass the table's waits by a period or two, but a thread that runs for
  // microseconds per 20 ms sleep is waiting for far more than half of it.
  t.ok(table!.offCpuNs >= byName.get('sleeper')!.ownNs / 2, "the table's waits cover at least half of the sleeper's own time")
  for (const f of table!.functions) t.ok(f.totalNs >= f.ownNs, `${f.func}: total at least own`)
})

t.test('ps: pyenv Pythons have no probes, yet their stacks can be read', async (t) => {
  const started = await Promise.all([PYTHON_310, PYTHON_312].map((python) => start(t, python, ['idle'])))
  const run = await runCliPiped(t, ['ps', '-f', 'targets/stacks.py idle', '-i', '0.1']).done
  t.equal(run.code, 0, run.stderr)
  const rows = tableAfter(run.stdout, /^\s*PID\s+RUNTIME\s+PROBES\s+STACKS/)
  for (const [i, { pid }] of started.entries()) {
    // 3.10 has no Py_Version: its version comes from its name, python3.10.
    const version = /python(3\.\d+)$/.exec([PYTHON_310, PYTHON_312][i]!)![1]!
    t.match(rows.find((row) => row[0] === String(pid)), [String(pid), new RegExp(`^python ${version.replace('.', '\\.')}\\b`), 'no probes', 'yes'], `${version}: no probes, stacks readable`)
  }
  const json = await runCliPiped(t, ['ps', '-f', 'targets/stacks.py idle', '-i', '0.1', '--json']).done
  const processes = json.stdout.trim().split('\n').map((line) => JSON.parse(line) as { pid: number; calls: string; stacks: string })
  // 3.13 describes itself (_Py_DebugOffsets); 3.10 and 3.12 are read by usdtrace's table for their version.
  for (const { pid } of started) t.match(processes.find((p) => p.pid === pid), { calls: 'no-probes', stacks: 'version-table' }, `--json ${pid}: how its stacks are read`)
})

t.test('where a Python has no probes, the calls commands name the sampling ones', async (t) => {
  const { pid } = await start(t, PYTHON_312, ['idle'])
  const dir = tmpDir(t, 'noprobes')
  for (const args of [['calls', String(pid)], ['flow', String(pid)], ['record', String(pid), '-o', join(dir, 'calls.folded')], ['flame', String(pid), '-o', join(dir, 'calls.svg')]]) {
    const run = await runCliPiped(t, [...args, '-d', '1']).done
    t.equal(run.code, 1, `${args[0]}: an error`)
    t.match(run.stderr, /no python USDT probes/, 'says why')
    t.match(run.stderr, /`usdtrace top PID`, `usdtrace dump PID`, `usdtrace record PID --sample`/, 'and what works instead')
    t.notMatch(run.stderr, /sampleStacks\(\)/, "in the command's words, not the library's")
  }
  t.notOk(existsSync(join(dir, 'calls.svg')), 'the file a failed trace created is removed')
  const existing = join(dir, 'existing.folded')
  writeFileSync(existing, 'before\n')
  t.equal((await runCliPiped(t, ['record', String(pid), '-o', existing, '-d', '1']).done).code, 1)
  t.ok(existsSync(existing), 'one that was there before is left (never a device such as /dev/null, either)')
  const named = await runCliPiped(t, ['calls', '--name', `${STACKS_TARGET} idle`, '-d', '1']).done
  t.equal(named.code, 1)
  t.match(named.stderr, new RegExp(`left out ${pid} \\(python3\\.12: a CPython without probes; its stacks can be sampled instead: \`usdtrace top\`, \`usdtrace dump\`, \`usdtrace record --sample\`\\)`), '--name: the left-out process, and what works')

  const sampled = await runCliPiped(t, ['top', '--name', `${STACKS_TARGET} idle`, '-n', '1', '--off-cpu']).done
  t.equal(sampled.code, 0, `top --name takes the same probe-less process ${sampled.stderr}`)
  t.match(sampled.stderr, new RegExp(`tracing stacks in ${pid} `))
})

t.test('record --sample -- CMD: the program from its first line, without usdtrace bootstrap frames', async (t) => {
  const dir = tmpDir(t, 'spawned')
  const program = join(dir, 'job.py')
  writeFileSync(program, ['import time', '', 'def work():', '    end = time.monotonic() + 1', '    while time.monotonic() < end:', '        pass', '', 'work()', ''].join('\n'))
  const folded = join(dir, 'job.folded')
  const run = await runCliPiped(t, ['record', '--sample', '-o', folded, '--', PYTHON_312, program]).done
  t.equal(run.code, 0, `the program's exit status ${run.stderr}`)
  const lines = readFileSync(folded, 'utf8').trim().split('\n')
  t.ok(lines.length > 0, 'samples recorded')
  for (const line of lines) t.match(line, /^<module> \(job\.py:8\)(;work \(job\.py:[4-6]\))? \d+$/, `the program's own frames only: ${line}`)
})

t.test('top on a terminal: each table replaces the last', async (t) => {
  const pid = await busy(t)
  const cli = runCli(t, ['top', String(pid), '-n', '2', '-i', '0.5'])
  t.equal(await cli.exited, 0, cli.text)
  t.equal(cli.raw.split('\x1b[H\x1b[2J').length - 1, 2, 'the screen cleared before each of the 2 tables')
  t.match(cli.text, /spin \(test\/targets\/stacks\.py\)/)
})

t.test('top --binary: every process of a python executable', async (t) => {
  // A copy of its own (the same libpython): only this test's process runs it.
  const python = join(tmpDir(t, 'binary'), 'python3.12')
  copyFileSync(PYTHON_312, python)
  chmodSync(python, 0o755)
  const { pid } = await start(t, python, ['busy', '0.02'])
  const run = await runCliPiped(t, ['top', '--binary', python, '-n', '1']).done
  t.equal(run.code, 0, `exit status 0 ${run.stderr}`)
  t.match(run.stderr, `tracing stacks in every process of ${python}`)
  const [rows] = topTables(run.stdout)
  t.match(rows?.[0]?.[4], /^spin \(test\/targets\/stacks\.py\)$/, `spin() of ${pid} first`)
})

t.test('record --sample writes every format its readers accept, spin() the heaviest', async (t) => {
  const pid = await busy(t)
  const dir = tmpDir(t, 'formats')
  const record = async (file: string, ...args: string[]) => {
    const path = join(dir, file)
    const run = await runCliPiped(t, ['record', String(pid), '--sample', '-d', '1.5', '-o', path, ...args]).done
    t.equal(run.code, 0, `${file}: exit status 0 ${run.stderr}`)
    return path
  }

  const speedscope = JSON.parse(readFileSync(await record('s.speedscope.json'), 'utf8'))
  const validate = new Ajv({ allErrors: true, strict: false }).compile(speedscopeSchema)
  t.ok(validate(speedscope), `speedscope's schema accepts it ${JSON.stringify(validate.errors)}`)
  const selfTime = new Map<string, number>()
  for (const profile of loadSpeedscopeImporter()(speedscope).profiles) {
    const open: { name: string; at: number; child: number }[] = []
    profile.forEachCall(
      (node, at) => open.push({ name: node.frame.name, at, child: 0 }),
      (_node, at) => {
        const frame = open.pop()!
        const own = at - frame.at - frame.child
        selfTime.set(frame.name, (selfTime.get(frame.name) ?? 0) + own)
        if (open.length > 0) open.at(-1)!.child += at - frame.at
      },
    )
  }
  const heaviest = [...selfTime].sort((a, b) => b[1] - a[1])[0]
  t.equal(heaviest?.[0], 'spin', `speedscope's importer: spin() has the most self time ${JSON.stringify([...selfTime])}`)

  const chrome = JSON.parse(readFileSync(await record('p.json', '--format', 'perfetto'), 'utf8'))
  const stacks = new Map<string, string[]>()
  let unmatched = 0
  for (const event of chrome.traceEvents as { ph: string; pid: number; tid: number; name: string }[]) {
    if (event.ph === 'M') continue
    const stack = stacks.get(`${event.pid}/${event.tid}`) ?? []
    stacks.set(`${event.pid}/${event.tid}`, stack)
    if (event.ph === 'B') stack.push(event.name)
    else if (event.ph !== 'E' || stack.pop() !== event.name) unmatched++
  }
  t.equal(unmatched, 0, 'perfetto: every E closes the innermost open B of its thread')
  t.ok(chrome.traceEvents.some((e: { ph: string; name: string }) => e.ph === 'B' && e.name === 'spin'), 'with spin() in it')

  const pprof = await record('p.pb.gz')
  const cpu = pprofTop(pprof, 'cpu')
  t.match(cpu.header, /Type: cpu/, 'pprof: cpu time, not calls')
  const flat = [...cpu.rows].sort((a, b) => b[1].flat - a[1].flat)[0]
  t.equal(flat?.[0], 'spin', `go tool pprof -top: spin() flattest ${JSON.stringify([...cpu.rows])}`)
})
