// `usdtrace gc` and `usdtrace stat` against real python3.11 workloads: the generations of
// gc.collect(0), (1), (2) in order, the objects a collection found, and pythonstat's per-process
// counts adding up exactly; a 3.12-like build shows what it cannot count.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { startReady } from './fixtures/processes.js'
import { compile, tmpDir } from './programs/tools.js'
import { startWorkload } from './targets.js'
import { runCli, runCliPiped, tableAfter } from './cli.js'

t.test('gc PID: each collection with its generation, in order', async (t) => {
  const target = await startWorkload(t, ['gc_generations'])
  const cli = runCli(t, ['gc', String(target.pid)])
  await cli.waitFor(/tracing garbage collections in/)
  target.go()
  t.equal(await cli.exited, 0)
  const rows = tableAfter(cli.text, /^\s+START\(s\)\s+TIME\(us\)\s+TID\s+DESCRIPTION$/).filter((r) => r.length === 4)
  t.same(rows.map((r) => r[3]!.replace(/collected \d+ objects?/, 'collected N objects')), ['gen 0 GC collected N objects', 'gen 1 GC collected N objects', 'gen 2 GC collected N objects'], 'generations 0, 1, 2')
  t.ok(rows.every((r) => r[2] === String(target.pid)), 'on the main thread')
  t.ok(rows.every((r) => /^\d+\.\d{2}$/.test(r[1]!)), 'durations in µs')
  t.match(cli.text, /3 collections in .*0 events lost/)
})

t.test('gc --json -m: the objects a collection found, as gc.collect() returned them', async (t) => {
  const target = await startWorkload(t, ['gc_cycles', '50', 'plain'])
  let printed = ''
  target.stdout!.on('data', (d: Buffer) => (printed += d))
  const run = runCliPiped(t, ['gc', String(target.pid), '--json', '-m'])
  await run.stderrMatch(/tracing garbage collections/)
  target.go()
  const { code, stdout } = await run.done
  t.equal(code, 0)
  const events = stdout.trim().split('\n').map((line) => JSON.parse(line))
  t.equal(events.length, 2, 'two collections: before and after making the cycles')
  t.match(events[1], { type: 'gc', pid: target.pid, generation: 2, collected: Number(printed.trim()), durationNs: Number })
  t.equal(events[1].collected, 100, '50 cycles of two instances: 100 objects')
})

t.test('stat PID PID --json: the counts of each process add up exactly', async (t) => {
  const dir = tmpDir(t, 'stat')
  const modules = 3
  for (let i = 0; i < modules; i++) writeFileSync(join(dir, `stats_module_${i}.py`), 'VALUE = 1\n')
  const calls = 3000
  const caller = await startWorkload(t, ['stats', String(calls), '0', dir, '0', '0'])
  const busy = await startWorkload(t, ['stats', '0', '2', dir, String(modules), '2'])
  let found = ''
  busy.stdout!.on('data', (d: Buffer) => (found += d))
  const run = runCliPiped(t, ['stat', String(caller.pid), String(busy.pid), '--json', '-i', '0.2'])
  await run.stderrMatch(/tracing counts in 2 processes/)
  caller.go()
  busy.go()
  const { code, stdout } = await run.done
  t.equal(code, 0, 'exit 0 once both exited')
  const tables = stdout.trim().split('\n').map((line) => JSON.parse(line))
  t.ok(tables.every((table) => table.type === 'stat' && table.seconds > 0), 'a stat object per table')
  const sum = new Map<number, Record<string, number>>()
  for (const table of tables) {
    for (const row of table.processes) {
      const totals = sum.get(row.pid) ?? {}
      for (const column of ['calls', 'gcRuns', 'gcCollected', 'imports', 'threads']) totals[column] = (totals[column] ?? 0) + row[column]
      sum.set(row.pid, totals)
    }
  }
  t.same(sum.get(caller.pid), { calls, gcRuns: 0, gcCollected: 0, imports: 0, threads: 0 }, 'the caller: its leaf() calls and nothing else')
  t.match(sum.get(busy.pid), { gcRuns: 2, gcCollected: Number(found.trim()), imports: modules, threads: 2 }, 'the busy one')
})

t.test('stat on a terminal: the table, and "-" where a 3.12 build cannot count', async (t) => {
  const python312 = compile('python312.c', join(tmpDir(t, 'stat312'), 'python3.12'), ['-rdynamic'])
  const old = await startReady(t, python312, [])
  const cli = runCli(t, ['stat', String(old.pid), '-n', '1', '-i', '0.2', '-C'])
  t.equal(await cli.exited, 0, '-n 1: one table, then exit 0')
  t.match(cli.text, /^\d\d:\d\d:\d\d loadavg: /m, 'the time and load average')
  const rows = tableAfter(cli.text, /^\s*PID\s+CALLS\/s\s+GC\/s\s+COLLECTED\/s\s+IMPORTS\/s\s+THREADS\/s\s+COMMAND$/)
  t.match(rows, [[String(old.pid), '-', '0.0', '0.0', '0.0', /./, python312]], 'calls: -, the rest counted')
  t.match(cli.text, /unavailable calls: .*3\.12/, 'a note says why')
})
