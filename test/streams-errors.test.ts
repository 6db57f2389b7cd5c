// What traceGC, traceImports, traceAudit and stats reject, and with which TraceError: misspelt or
// malformed options against a real python3.11, and CPython stand-ins that lack probes.
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { TraceError, inspect, stats, traceAudit, traceGC, traceImports, type Trace } from '../src/index.js'
import { startReady } from './fixtures/processes.js'
import { compile, tmpDir } from './programs/tools.js'
import { collect, startWorkload, rejection } from './targets.js'


/** A stand-in interpreter (test/programs/python-old.c) named `name`, running. */
async function standIn(t: Test, name: string, flags: string[]) {
  const python = compile('python-old.c', join(tmpDir(t, name), name), flags)
  return startReady(t, python, [])
}

t.test('unknown options: INVALID_ARGUMENT naming the option and listing the real ones', async (t) => {
  const target = await startWorkload(t, ['calls', '1'])
  const cases: [Trace<unknown>, string, string[]][] = [
    [traceGC(target.pid, { minDuration: 5 } as object), 'minDuration', ['minDurationNs', 'ringBufferBytes', 'pids']],
    [traceImports({ pid: target.pid, ringbufferBytes: 4096 } as object), 'ringbufferBytes', ['ringBufferBytes', 'signal']],
    [traceAudit(target.pid, { event: ['open'] } as object), 'event', ['events', 'customEvents']],
    [stats(target.pid, { interval: 10 } as object), 'interval', ['intervalMs', 'maxProcesses', 'binary']],
  ]
  for (const [trace, option, listed] of cases) {
    const error = await rejection(trace)
    t.equal(error.code, 'INVALID_ARGUMENT', option)
    t.match(error.message, `no option "${option}"`, 'names the option')
    for (const real of listed) t.match(error.message, real, `lists ${real}`)
  }
})

t.test('malformed option values: INVALID_ARGUMENT saying what is expected', async (t) => {
  const target = await startWorkload(t, ['calls', '1'])
  const cases: [Trace<unknown>, RegExp][] = [
    [traceGC(target.pid, { minDurationNs: -1 }), /minDurationNs must be a non-negative integer/],
    [traceImports(target.pid, { ringBufferBytes: 5000 }), /ringBufferBytes must be a power of two/],
    [stats(target.pid, { intervalMs: 0 }), /intervalMs must be a positive integer/],
    [stats(target.pid, { maxProcesses: 1.5 }), /maxProcesses must be a positive integer/],
    [traceAudit(target.pid, { events: 'open' as unknown as string[] }), /events must be an array of event names/],
    [traceAudit(target.pid, { events: ['opne'] }), /"opne" is not a CPython audit event.*subprocess\.Popen.*customEvents/s],
    [traceAudit(target.pid, { events: ['socket.conect'] }), /did you mean .*socket\.connect/],
    [traceAudit(target.pid, { customEvents: ['x'.repeat(63)] }), /longer than 62 bytes/],
  ]
  for (const [trace, message] of cases) {
    const error = await rejection(trace)
    t.equal(error.code, 'INVALID_ARGUMENT')
    t.match(error.message, message)
  }
  // Nothing else was wrong: the same target traces with valid options.
  const trace = traceAudit(target.pid, { events: ['open'], customEvents: ['x'.repeat(62)] })
  await trace.ready
  await trace.close()
})

t.test('CPython 3.6 and 3.7 stand-ins: inspect tells what each lacks, and those traces reject', async (t) => {
  const py36 = await standIn(t, 'python3.6', [])
  const py37 = await standIn(t, 'python3.7', ['-DIMPORT_PROBES'])
  const [i36, i37] = [await inspect(py36.pid), await inspect(py37.pid)]
  t.same(i36.capabilities.gc, { available: true, mode: 'native' }, '3.6: gc')
  t.match(i36.capabilities.imports, { available: false, reason: /3\.6 predates .*added in 3\.7/ }, '3.6: no imports')
  t.match(i36.capabilities.audit, { available: false, reason: /3\.6 predates .*added in 3\.8/ }, '3.6: no audit')
  t.same(i37.capabilities.imports, { available: true, mode: 'native' }, '3.7: imports')
  t.match(i37.capabilities.audit, { available: false, reason: /3\.7 predates .*added in 3\.8/ }, '3.7: no audit')

  for (const [trace, version] of [
    [traceImports(py36.pid), '3.6'],
    [traceAudit(py36.pid), '3.6'],
    [traceAudit(py37.pid), '3.7'],
  ] as const) {
    const error = await rejection(trace)
    t.equal(error.code, 'PROBE_UNAVAILABLE')
    t.match(error.message, `CPython ${version} predates`)
  }

  // What they have works: a gc on 3.6, an import on 3.7 (each fired once per read of stdin).
  const gc = traceGC(py36.pid)
  const imports = traceImports(py37.pid)
  await Promise.all([gc.ready, imports.ready])
  py36.stdin!.end('go\n')
  py37.stdin!.end('go\n')
  t.match(await collect(gc), [{ pid: py36.pid, generation: 2, collected: 0 }])
  t.match(await collect(imports), [{ pid: py37.pid, module: 'sys', found: true, depth: 0 }])
})

t.test('stats on a 3.6 stand-in: imports and threads are unavailable, gc is counted', async (t) => {
  const py36 = await standIn(t, 'python3.6', [])
  const trace = stats(py36.pid, { intervalMs: 3_600_000 })
  await trace.ready
  py36.stdin!.end('go\n')
  const snapshots = await collect(trace)
  t.same(
    snapshots.map((s) => s.processes),
    [[{ pid: py36.pid, gcRuns: 1, gcCollected: 0 }]],
  )
  t.same(Object.keys(snapshots[0]!.unavailable).sort(), ['calls', 'exceptions', 'imports', 'threads'])
  t.match(snapshots[0]!.unavailable.imports, /3\.6 predates/)
})

t.test('NO_PROBES: an interpreter built without --with-dtrace, for every function', async (t) => {
  const target = await standIn(t, 'python3.11', ['-DNO_PROBES'])
  for (const trace of [traceGC(target.pid), traceImports(target.pid), traceAudit(target.pid), stats(target.pid)]) {
    const error = await rejection(trace)
    t.equal(error.code, 'NO_PROBES')
    t.match(error.message, /--with-dtrace/)
  }
})
