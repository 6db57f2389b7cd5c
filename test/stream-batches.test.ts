// trace.batches() of traceGC, traceImports, traceAudit and traceUsdt against real processes: the
// rows counted from the columns match what the targets did (gc.collect() calls and what they
// returned, modules written here and imported, sys.audit() calls of known names, throws and
// calls that fire USDT probes), and the names behind ids hold for the life of the trace.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import t, { type Test } from 'tap'
import { traceAudit, traceGC, traceImports, traceUsdt } from '../src/index.js'
import { startReady } from './fixtures/processes.js'
import { LIBSTDCXX, buildThrower, thrown } from './fixtures/thrower.js'
import { tmpDir } from './programs/tools.js'
import { WORKLOADS, startWorkload, writeImportPackage } from './targets.js'

/** The `stats` workload doing only gc.collect()s and imports of modules written here; it prints the sum of what gc.collect() returned. */
async function collectAndImport(t: Test, collections: number, modules: number) {
  const dir = tmpDir(t, 'stream-batches')
  for (let i = 0; i < modules; i++) writeFileSync(join(dir, `stats_module_${i}.py`), 'VALUE = 1\n')
  const target = await startWorkload(t, ['stats', '0', String(collections), dir, String(modules), '0'])
  let output = ''
  target.stdout!.on('data', (chunk: Buffer) => (output += chunk))
  return Object.assign(target, { printed: () => Number(output.replace(/^ready\n/, '').trim()) })
}

t.test('GC through batches: N gc.collect() calls are N rows of generation 2, collected adding up to what they returned', async (t) => {
  const collections = 40
  const target = await collectAndImport(t, collections, 0)
  const trace = traceGC(target.pid)
  await trace.ready
  const before = process.hrtime.bigint()
  target.go()
  let rows = 0
  let collected = 0
  let ordered = true
  let previousEnd = 0n
  const generations = new Set<number>()
  let mine = true
  let durationsRight = true
  for await (const batch of trace.batches()) {
    t.equal(batch.generation.length, batch.length, "every column has the batch's length")
    for (let i = 0; i < batch.length; i++, rows++) {
      generations.add(batch.generation[i]!)
      collected += batch.collected[i]!
      mine &&= batch.pid[i] === target.pid && batch.tid[i] === target.pid
      durationsRight &&= batch.durationNs[i]! > 0 && Number.isInteger(batch.durationNs[i])
      ordered &&= batch.startNs[i]! >= previousEnd && batch.startNs[i]! >= before
      previousEnd = batch.startNs[i]! + BigInt(batch.durationNs[i]!)
    }
  }
  t.equal(rows, collections, 'one row per gc.collect()')
  t.same([...generations], [2], 'gc.collect() collects the oldest generation')
  t.equal(collected, target.printed(), 'collected adds up to what the gc.collect() calls returned in the target')
  t.ok(mine, 'every row from the main thread of the target')
  t.ok(durationsRight, 'every duration a positive whole number of ns')
  t.ok(ordered, 'collections in order, none overlapping the one before, none before go')
  t.equal(trace.lost, 0, 'nothing lost')
})

t.test('GC through batches: gc.collect(g) for g = 0, 1, 2, and the cycles a collection found', async (t) => {
  const generations = await startWorkload(t, ['gc_generations'])
  const trace = traceGC(generations.pid)
  await trace.ready
  generations.go()
  const seen: number[] = []
  for await (const batch of trace.batches()) seen.push(...batch.generation)
  t.same(seen, [0, 1, 2], 'one row per collection, with its generation')

  // Two instances in a cycle are two GC-tracked objects in 3.11 (see test/gc.test.ts).
  const cycles = 300
  const target = await startWorkload(t, ['gc_cycles', String(cycles), 'plain'])
  let output = ''
  target.stdout!.on('data', (chunk: Buffer) => (output += chunk))
  const cyclesTrace = traceGC(target.pid)
  await cyclesTrace.ready
  target.go()
  const collected: number[] = []
  for await (const batch of cyclesTrace.batches()) collected.push(...batch.collected)
  t.equal(collected.length, 2, 'a collection to start clean, then the one that finds the cycles')
  t.equal(collected[1], 2 * cycles, 'two objects per cycle')
  t.equal(collected[1], Number(output.replace(/^ready\n/, '').trim()), 'what gc.collect() returned in the target')
})

t.test('GC and audit with stack: true have no batches, and say why', async (t) => {
  const target = await startWorkload(t, ['lines'])
  for (const trace of [traceGC(target.pid, { stack: true }), traceAudit(target.pid, { stack: true })]) {
    t.throws(() => trace.batches(), { name: 'TraceError', code: 'INVALID_ARGUMENT', message: /stack: true has no batches/ })
    await trace.close()
  }
})

t.test('imports through batches: N fresh modules, each once under its own id, found, at depth 0, timed', async (t) => {
  const modules = 60
  const target = await collectAndImport(t, 0, modules)
  const trace = traceImports(target.pid)
  await trace.ready
  target.go()
  const rowsByModule = new Map<string, number>()
  const idByModule = new Map<string, number>()
  let right = true
  let last
  for await (const batch of trace.batches()) {
    last = batch
    for (let i = 0; i < batch.length; i++) {
      const module = batch.module(batch.moduleId[i]!)
      rowsByModule.set(module, (rowsByModule.get(module) ?? 0) + 1)
      idByModule.set(module, batch.moduleId[i]!)
      right &&= batch.found[i] === 1 && batch.depth[i] === 0 && batch.truncated[i] === 0
      right &&= batch.pid[i] === target.pid && batch.tid[i] === target.pid
      right &&= batch.startNs[i]! > 0n && batch.durationNs[i]! > 0
    }
  }
  const expected = Array.from({ length: modules }, (_, i) => `stats_module_${i}`)
  t.same([...rowsByModule.keys()].sort(), [...expected].sort(), 'one row per module written here, nothing else')
  t.ok([...rowsByModule.values()].every((rows) => rows === 1), 'each loaded once')
  t.same(new Set(idByModule.values()).size, modules, 'a distinct id per module')
  t.ok(right, 'every row found, at depth 0, on the main thread, with a start and a duration')
  t.equal(last!.moduleCount, modules, 'moduleCount: the ids are dense from 0')
  t.throws(() => last!.module(modules), { name: 'TraceError', code: 'INVALID_ARGUMENT' }, 'an id never handed out is a TraceError')
  t.equal(trace.lost, 0, 'nothing lost')
})

t.test('imports through batches: a package loads after its submodules; a missing module is not found', async (t) => {
  const dir = tmpDir(t, 'stream-batches-package')
  const pkg = `usdtrace_batch_pkg_${process.pid}`
  const missing = `usdtrace_batch_missing_${process.pid}`
  writeImportPackage(dir, pkg, `try:\n    import ${missing}\nexcept ImportError:\n    pass\n`)
  const target = await startWorkload(t, ['import_package', dir, pkg])
  const trace = traceImports(target.pid)
  await trace.ready
  target.go()
  const rows: [string, number, number][] = []
  const spans = new Map<string, [bigint, number]>()
  for await (const batch of trace.batches()) {
    for (let i = 0; i < batch.length; i++) {
      rows.push([batch.module(batch.moduleId[i]!), batch.depth[i]!, batch.found[i]!])
      spans.set(batch.module(batch.moduleId[i]!), [batch.startNs[i]!, batch.durationNs[i]!])
    }
  }
  // A load ends (and is reported) after the loads it made.
  t.same(rows, [
    [`${pkg}.alpha`, 1, 1],
    [`${pkg}.beta`, 1, 1],
    [missing, 1, 0],
    [pkg, 0, 1],
  ])
  const [parentStart, parentDuration] = spans.get(pkg)!
  for (const child of [`${pkg}.alpha`, `${pkg}.beta`, missing]) {
    const [start, duration] = spans.get(child)!
    t.ok(start >= parentStart && Number(start - parentStart) + duration <= parentDuration, `the package's load covers ${child}'s`)
  }
})

t.test('imports through batches: a load already under way when the trace attaches has no start: 0 and NaN', async (t) => {
  const dir = tmpDir(t, 'stream-batches-paused')
  const pkg = `usdtrace_batch_paused_${process.pid}`
  mkdirSync(join(dir, pkg))
  // The package's load waits for a line before importing its submodule: the trace attaches in between.
  writeFileSync(join(dir, pkg, '__init__.py'), `import sys\nprint("loading", flush=True)\nsys.stdin.buffer.readline()\nimport ${pkg}.inner\n`)
  writeFileSync(join(dir, pkg, 'inner.py'), 'VALUE = 1\n')
  const target = await startWorkload(t, ['import_package', dir, pkg])
  const lines = createInterface({ input: target.stdout! })[Symbol.asyncIterator]()
  target.go()
  t.equal((await lines.next()).value, 'loading', 'the package is loading')
  const trace = traceImports(target.pid)
  await trace.ready
  target.stdin!.write('\n')
  const rows: { module: string; found: number; startNs: bigint; durationNs: number }[] = []
  for await (const batch of trace.batches()) {
    for (let i = 0; i < batch.length; i++) {
      rows.push({ module: batch.module(batch.moduleId[i]!), found: batch.found[i]!, startNs: batch.startNs[i]!, durationNs: batch.durationNs[i]! })
    }
  }
  t.same(rows.map((row) => [row.module, row.found]), [[`${pkg}.inner`, 1], [pkg, 1]], 'the submodule, then the package it ends inside')
  t.ok(rows[0]!.startNs > 0n && rows[0]!.durationNs > 0, 'the submodule began under the trace: a start and a duration')
  t.same([rows[1]!.startNs, rows[1]!.durationNs], [0n, NaN], 'the package began before it: startNs 0, durationNs NaN')
})

t.test('audit through batches: N sys.audit() calls of known names, each name one id for the life of the trace', async (t) => {
  const count = 20_000
  const distinct = 7
  const target = await startWorkload(t, ['audit_events', String(count), String(distinct)])
  const trace = traceAudit(target.pid)
  await trace.ready
  target.go()
  const rowsById = new Map<number, number>()
  const truncatedIds: number[] = []
  let batches = 0
  let ordered = true
  let previous = 0n
  let last
  for await (const batch of trace.batches()) {
    last = batch
    batches++
    for (let i = 0; i < batch.length; i++) {
      rowsById.set(batch.nameId[i]!, (rowsById.get(batch.nameId[i]!) ?? 0) + 1)
      if (batch.nameTruncated[i]) truncatedIds.push(batch.nameId[i]!)
      ordered &&= batch.timestampNs[i]! >= previous && batch.pid[i] === target.pid
      previous = batch.timestampNs[i]!
    }
  }
  const ours = [...rowsById].filter(([id]) => last!.name(id).startsWith('usdtrace.batch_'))
  t.equal(ours.length, distinct, `one id per name (${distinct}), across ${batches} batches`)
  for (const [id, rows] of ours) {
    const k = Number(last!.name(id).slice('usdtrace.batch_'.length))
    // sys.audit(f"usdtrace.batch_{i % distinct}") for i below count.
    t.equal(rows, Math.ceil((count - k) / distinct), `usdtrace.batch_${k}: every event under its one id`)
  }
  // The kernel side keeps 62 bytes of a name (AUDIT_NAME_MAX).
  t.same(truncatedIds.map((id) => last!.name(id)), [`usdtrace.${'n'.repeat(80)}`.slice(0, 62)], 'the long name, cut to 62 bytes and flagged')
  t.ok(ordered, 'in the order they happened, all from the target')
  t.equal(last!.nameCount, rowsById.size, 'nameCount: the ids are dense from 0')
  t.equal(trace.lost, 0, 'nothing lost')
})

t.test("audit through batches: customEvents let exactly the application's events through", async (t) => {
  const count = 50
  const target = await startWorkload(t, ['audit_events', String(count), '3'])
  const trace = traceAudit(target.pid, { customEvents: ['usdtrace.batch_1'] })
  await trace.ready
  target.go()
  const names: string[] = []
  for await (const batch of trace.batches()) for (const id of batch.nameId) names.push(batch.name(id))
  // i % 3 === 1 for i below 50: 1, 4, ..., 49.
  t.same(names, Array.from({ length: 17 }, () => 'usdtrace.batch_1'), 'every usdtrace.batch_1 event, nothing else')
})

const THROWS = 7

t.test('USDT through batches: libstdcxx:throw N times, its pointers as u64 and i64 columns, narrow integers as doubles', async (t) => {
  const child = await startReady(t, buildThrower(t), [String(THROWS)])
  const pointers = traceUsdt({ pid: child.pid, provider: 'libstdcxx', name: 'throw', args: ['ptr', 'i64'] })
  // The same probe read as a u16 and an i8: the low bytes, widened.
  const narrow = traceUsdt({ pid: child.pid, path: LIBSTDCXX, provider: 'libstdcxx', name: 'throw', args: ['u16', 'i8'] })
  await Promise.all([pointers.ready, narrow.ready])
  const printed = thrown(child, THROWS)
  child.stdin!.write('go\n')
  const wide: [bigint, bigint][] = []
  const low: [number, number][] = []
  let identified = true
  const readWide = (async () => {
    for await (const batch of pointers.batches()) {
      const [object, typeinfo] = batch.args as [BigUint64Array, BigInt64Array]
      t.type(object, BigUint64Array, 'ptr is a BigUint64Array')
      t.type(typeinfo, BigInt64Array, 'i64 is a BigInt64Array')
      identified &&= batch.provider === 'libstdcxx' && batch.name === 'throw'
      for (let i = 0; i < batch.length; i++) {
        identified &&= batch.pid[i] === child.pid && batch.tid[i] === child.pid && batch.truncated[i] === 0
        wide.push([object[i]!, typeinfo[i]!])
      }
    }
  })()
  const readLow = (async () => {
    for await (const batch of narrow.batches()) {
      const [u16, i8] = batch.args as [Float64Array, Float64Array]
      t.type(u16, Float64Array, 'u16 is a Float64Array')
      for (let i = 0; i < batch.length; i++) low.push([u16[i]!, i8[i]!])
    }
  })()
  const [{ typeinfo, objects }] = await Promise.all([printed, readWide, readLow])
  t.same(wide, objects.map((object) => [object, BigInt.asIntN(64, typeinfo)]), 'each throw: the caught object, and typeid(Thrown) as a signed 64-bit value')
  const lowByte = Number(typeinfo & 0xffn)
  t.same(low, objects.map((object) => [Number(object & 0xffffn), lowByte >= 0x80 ? lowByte - 0x100 : lowByte]), 'u16 and i8: the low 16 bits and the sign-extended low byte')
  t.ok(identified, 'every row from the main thread, of libstdcxx:throw')
  t.equal(pointers.lost + narrow.lost, 0, 'nothing lost')
})

t.test('USDT through batches: python:function__return as str, str, i32, strings as ids', async (t) => {
  const calls = 25
  const target = await startWorkload(t, ['calls', String(calls)])
  const trace = traceUsdt({ pid: target.pid, provider: 'python', name: 'function__return', args: ['str', 'str', 'i32'] })
  await trace.ready
  target.go()
  const source = readFileSync(WORKLOADS, 'utf8').split('\n')
  // leaf() is `def leaf():` then `return 1`: it returns from the line after its def.
  const leafReturnLine = source.indexOf('def leaf():') + 2
  const leaves: string[] = []
  const leafIds = new Set<number>()
  let runCalls = 0
  for await (const batch of trace.batches()) {
    const [file, func, line] = batch.args as [Uint32Array, Uint32Array, Float64Array]
    for (let i = 0; i < batch.length; i++) {
      if (batch.string(func[i]!) === 'run_calls') runCalls++
      if (batch.string(func[i]!) !== 'leaf') continue
      leafIds.add(func[i]!)
      leaves.push(`${batch.string(file[i]!)}:${line[i]}`)
    }
  }
  t.same(leaves, Array.from({ length: calls }, () => `${WORKLOADS}:${leafReturnLine}`), 'one row per call of leaf: its file and the line it returns from')
  t.equal(leafIds.size, 1, "'leaf' is one id in every row")
  t.equal(runCalls, 1, 'run_calls returned once')
})

t.test('USDT through batches: a string cut to 512 bytes is flagged; bad types are a TraceError from batches()', async (t) => {
  const target = await startWorkload(t, ['names', '700', '40'])
  const trace = traceUsdt({ pid: target.pid, provider: 'python', name: 'function__return', args: ['str', 'str'] })
  await trace.ready
  target.go()
  const flagged: [string, string][] = []
  let rows = 0
  for await (const batch of trace.batches()) {
    const [file, func] = batch.args as [Uint32Array, Uint32Array]
    for (let i = 0; i < batch.length; i++, rows++) {
      if (batch.truncated[i]) flagged.push([batch.string(file[i]!), batch.string(func[i]!)])
    }
  }
  t.same(flagged, [[`/${'p'.repeat(39)}`, 'f'.repeat(512)]], 'only the 700-byte name, cut to 512; the other string whole')
  t.ok(rows > 1, 'among other rows, none flagged')

  const bad = traceUsdt({ pid: target.pid, provider: 'python', name: 'function__return', args: ['float' as 'u8'] })
  t.throws(() => bad.batches(), { name: 'TraceError', code: 'INVALID_ARGUMENT', message: /args\[0\]/ }, 'an unknown type')
  await bad.close()
})
