// traceImports against real python3.11 processes importing packages the test writes into a tmp
// dir (so no other process has them cached in sys.modules, and their import really loads).
import t from 'tap'
import { traceImports, type ImportEvent } from '../src/index.js'
import { tmpDir } from './programs/tools.js'
import { collect, startWorkload, writeImportPackage } from './targets.js'

t.test('a package whose __init__ imports two submodules: three loads, the submodules nested', async (t) => {
  const dir = tmpDir(t, 'imports')
  const pkg = `usdtrace_pkg_${process.pid}`
  writeImportPackage(dir, pkg)

  const target = await startWorkload(t, ['import_package', dir, pkg])
  const trace = traceImports(target.pid)
  await trace.ready
  target.go()
  const events: ImportEvent[] = await collect(trace)
  // A load is reported when it ends, so the submodules, which end inside the package's load, come first.
  t.same(
    events.map((e) => [e.module, e.depth, e.found]),
    [
      [`${pkg}.alpha`, 1, true],
      [`${pkg}.beta`, 1, true],
      [pkg, 0, true],
    ],
  )
  t.ok(events.every((e) => e.pid === target.pid && e.tid === target.pid), 'pid and tid of the main thread')
  t.ok(events.every((e) => e.durationNs !== undefined && e.durationNs > 0n), 'durations are positive')
  const [alpha, beta, parent] = events as [ImportEvent, ImportEvent, ImportEvent]
  const end = (e: ImportEvent) => e.startNs! + e.durationNs!
  for (const child of [alpha, beta]) {
    t.ok(parent.startNs! <= child.startNs! && end(child) <= end(parent), `the package's load covers ${child.module}'s`)
  }
  t.ok(end(alpha) <= beta.startNs!, 'alpha is loaded before beta starts')
  t.equal(trace.lost, 0)
})

t.test('a module that does not exist: one load, not found', async (t) => {
  const dir = tmpDir(t, 'imports-missing')
  const missing = `usdtrace_missing_${process.pid}`
  const target = await startWorkload(t, ['import_package', dir, missing])
  const trace = traceImports({ pid: target.pid })
  await trace.ready
  target.go()
  const events = await collect(trace)
  t.same(
    events.map((e) => [e.module, e.depth, e.found]),
    [[missing, 0, false]],
  )
})
