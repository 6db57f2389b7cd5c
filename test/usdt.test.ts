// traceUsdt on probes no one here wrote: PostgreSQL's query__start, libstdc++'s throw and
// CPython's function__return, in the executable and in libpython, per process and per file; and
// 3.11's function__entry, which fires only while the trace holds the line probe's semaphore up.
import { execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { TraceError, traceUsdt, type UsdtEvent, type UsdtTrace } from '../src/index.js'
import { binding } from '../src/kernel/binding.js'
import { startCluster } from './fixtures/postgres.js'
import { DEBIAN_PYTHON, privatePython, startReady } from './fixtures/processes.js'
import { codeFileOffset, compile, copyExecutable, dynamicEntry, holdUprobe, probeOffsets, tmpDir } from './programs/tools.js'
import { LIBSTDCXX, buildThrower, lines, thrown } from './fixtures/thrower.js'
import { readSemaphores } from './semaphores.js'
import { WORKLOADS, fibonacci, startWorkload, rejection } from './targets.js'

async function collect(trace: UsdtTrace): Promise<UsdtEvent[]> {
  const events: UsdtEvent[] = []
  for await (const event of trace) events.push(event)
  return events
}

/** Events until `done` says the last one has come; then the trace is closed. */
async function collectUntil(trace: UsdtTrace, done: (event: UsdtEvent) => boolean): Promise<UsdtEvent[]> {
  const events: UsdtEvent[] = []
  for await (const event of trace) {
    events.push(event)
    if (done(event)) break
  }
  return events
}

const THROWS = 7

t.test('libstdcxx:throw in a C++ process: exactly N events, object and type_info as pointers and as narrow integers', async (t) => {
  const thrower = buildThrower(t)
  const child = await startReady(t, thrower, [String(THROWS)])

  const pointers = traceUsdt({ pid: child.pid, provider: 'libstdcxx', name: 'throw', args: ['ptr', 'ptr'] })
  // The same probe in the object named by path, read as a u16 and an i8: the low bytes, widened.
  const narrow = traceUsdt({ pid: child.pid, path: LIBSTDCXX, provider: 'libstdcxx', name: 'throw', args: ['u16', 'i8'] })
  await Promise.all([pointers.ready, narrow.ready])
  const printed = thrown(child, THROWS)
  child.stdin!.write('go\n')
  const [wide, low, { typeinfo, objects }] = await Promise.all([collect(pointers), collect(narrow), printed])

  t.equal(wide.length, THROWS, 'one event per throw')
  t.same(
    wide.map((e) => e.args),
    objects.map((object) => [object, typeinfo]),
    'args: the thrown object, as the catch saw it, and typeid(Thrown)',
  )
  const lowByte = Number(typeinfo & 0xffn)
  t.same(
    low.map((e) => e.args),
    objects.map((object) => [Number(object & 0xffffn), lowByte >= 0x80 ? lowByte - 0x100 : lowByte]),
    'u16 and i8 are the low 16 bits and the sign-extended low byte',
  )
  for (const event of [...wide, ...low]) {
    t.equal(event.pid, child.pid)
    t.equal(event.tid, child.pid, 'thrown on the main thread')
    t.equal(event.provider, 'libstdcxx')
    t.equal(event.name, 'throw')
    t.equal(event.truncated, false)
  }
  t.equal(pointers.lost + narrow.lost, 0)
})

t.test('{ pids }: each process its own throws, the trace ending when both have exited', async (t) => {
  const thrower = buildThrower(t)
  const counts = [2, 5]
  const children = await Promise.all(counts.map((count) => startReady(t, thrower, [String(count)])))
  const trace = traceUsdt({ pids: children.map((c) => c.pid), provider: 'libstdcxx', name: 'throw', args: ['ptr'] })
  await trace.ready
  const printed = children.map((child, i) => thrown(child, counts[i]!))
  for (const child of children) child.stdin!.write('go\n')
  const events = await collect(trace)
  const objects = await Promise.all(printed)
  children.forEach((child, i) => {
    t.same(
      events.filter((e) => e.pid === child.pid).map((e) => e.args[0]),
      objects[i]!.objects,
      `process ${i}: its ${counts[i]} throws`,
    )
  })
  t.equal(events.length, counts[0]! + counts[1]!, 'nothing else')
})

t.test('{ path } follows every process of a file, including one started after the trace', async (t) => {
  const dir = tmpDir(t, 'libstdcxx')
  // A private copy of libstdc++ (its own inode): the probe is attached to whoever maps it.
  const library = copyExecutable(LIBSTDCXX, dir, 'libstdc++.so.6')
  const thrower = buildThrower(t)
  const trace = traceUsdt({ path: library, provider: 'libstdcxx', name: 'throw', args: ['ptr', 'ptr'] })
  t.teardown(() => trace.close())
  await trace.ready

  const child = await startReady(t, thrower, [String(THROWS)], {
    env: { ...process.env, LD_LIBRARY_PATH: dir },
  })
  const maps = readFileSync(`/proc/${child.pid}/maps`, 'utf8')
  t.ok(maps.includes(library), 'the program runs with the copy of libstdc++')
  const printed = thrown(child, THROWS)
  child.stdin!.write('go\n')
  let seen = 0
  const events = await collectUntil(trace, () => ++seen === THROWS)
  const { typeinfo, objects } = await printed
  t.same(
    events.map((e) => [e.pid, ...e.args]),
    objects.map((object) => [child.pid, object, typeinfo]),
    'every throw of the new process, in order',
  )
})

t.test('python:function__return of python3.11 decoded as str, str, i32: file, function, line', async (t) => {
  const CALLS = 25
  const target = await startWorkload(t, ['calls', String(CALLS)])
  const trace = traceUsdt({
    pid: target.pid,
    provider: 'python',
    name: 'function__return',
    args: ['str', 'str', 'i32'],
  })
  await trace.ready
  target.go()
  const events = await collect(trace)
  // leaf() is `def leaf():` then `return 1`: it returns from the line after its def.
  const source = readFileSync(WORKLOADS, 'utf8').split('\n')
  const leafReturnLine = source.indexOf('def leaf():') + 2
  t.equal(source[leafReturnLine - 1], '    return 1', 'the line leaf returns from')
  const leaves = events.filter((e) => e.args[1] === 'leaf')
  t.equal(leaves.length, CALLS, 'one return per call of leaf')
  t.same(new Set(leaves.map((e) => JSON.stringify(e.args))), new Set([JSON.stringify([WORKLOADS, 'leaf', leafReturnLine])]))
  const runCalls = events.filter((e) => e.args[1] === 'run_calls')
  t.equal(runCalls.length, 1, 'run_calls returned once')
  t.same(runCalls[0]!.args.slice(0, 1), [WORKLOADS])
})

t.test('python:function__entry of python3.11 { pid }: every call, the line semaphore raised while traced', async (t) => {
  const n = 12
  const target = await startWorkload(t, ['fib', String(n)])
  t.equal(readSemaphores(target.pid).line, 0, 'untraced, the line semaphore is down')
  const trace = traceUsdt({ pid: target.pid, provider: 'python', name: 'function__entry', args: ['str', 'str', 'i32'] })
  await trace.ready
  t.equal(readSemaphores(target.pid).line, 1, 'tracing function__entry raised it')
  target.go()
  const events = await collect(trace)
  // An entry reports the function's first line: its def.
  const fibLine = readFileSync(WORKLOADS, 'utf8').split('\n').indexOf('def fib(n):') + 1
  const fib = events.filter((e) => e.args[1] === 'fib')
  t.equal(fib.length, 2 * fibonacci(n + 1) - 1, 'fib(n) calls fib 2F(n+1) - 1 times: one entry each')
  t.same(new Set(fib.map((e) => JSON.stringify(e.args))), new Set([JSON.stringify([WORKLOADS, 'fib', fibLine])]))
  t.equal(events.filter((e) => e.args[1] === 'run_fib').length, 1, 'and run_fib once')
  t.equal(trace.lost, 0)
})

t.test('python:function__entry of a python3.11 { binary }: a process started later, the semaphore lowered at close', async (t) => {
  const CALLS = 40
  const python = privatePython(t)
  const script = [
    'import sys',
    'def leaf(): return 1',
    'def done(): pass',
    'print("ready", flush=True)',
    'sys.stdin.buffer.readline()',
    `for _ in range(${CALLS}): leaf()`,
    'done()',
    'sys.stdin.buffer.readline()',
    '',
  ].join('\n')
  const trace = traceUsdt({ binary: python, provider: 'python', name: 'function__entry', args: ['str', 'str'] })
  t.teardown(() => trace.close())
  await trace.ready
  const child = await startReady(t, python, ['-c', script])
  t.equal(readSemaphores(child.pid).line, 1, 'the process started after the trace has the line semaphore raised')
  child.stdin!.write('go\n')
  // One thread: its entries arrive in order, so done() comes after every leaf().
  const events = await collectUntil(trace, (e) => e.pid === child.pid && e.args[1] === 'done')
  t.same(
    events.filter((e) => e.pid === child.pid && e.args[1] === 'leaf').map((e) => e.args),
    Array.from({ length: CALLS }, () => ['<string>', 'leaf']),
    'one entry per call of leaf',
  )
  t.equal(readSemaphores(child.pid).line, 0, 'closed, the trace lowered the semaphore again')
})

t.test('python:function__entry of python3.11 where another tracer holds it or the line semaphore\'s places: PROBE_CONFLICT', async (t) => {
  const python = copyExecutable(DEBIAN_PYTHON, tmpDir(t, 'usdt-conflict'), 'python3.11')
  const target = await startWorkload(t, ['fib', '5'], python)
  // What another tracer (bcc's python tools) does: a uprobe at the same place with another semaphore.
  const squatter = new binding.Session({ object: 'calls' })
  t.teardown(() => squatter.close())
  const other = probeOffsets(python, 'python', 'gc__start').semaphoreFileOffset
  const traceEntries = () => rejection(traceUsdt({ pid: target.pid, provider: 'python', name: 'function__entry' }), t)

  // Both places the line semaphore can be raised from: DT_FINI's code, then DT_INIT's.
  for (const tag of ['FINI', 'INIT']) holdUprobe(squatter, -1, python, codeFileOffset(python, dynamicEntry(python, tag)), other)
  const line = await traceEntries()
  t.equal(line.code, 'PROBE_CONFLICT')
  t.match(line.message, `the line semaphore holder (its _fini and _init code) in ${python}`, 'names what could not be attached, and where')
  t.match(line.message, /Stop the other tracer/i, 'says how to fix it')

  // function__entry itself, attached before the semaphore is raised.
  holdUprobe(squatter, -1, python, probeOffsets(python, 'python', 'function__entry').fileOffset, other)
  const entry = await traceEntries()
  t.equal(entry.code, 'PROBE_CONFLICT')
  t.match(entry.message, `python:function__entry in ${python} (process ${target.pid})`, 'names the probe, the object and the process')
  t.match(entry.message, /Stop the other tracer/i, 'says how to fix it')

  t.equal(readSemaphores(target.pid).line, 0, 'nothing left raised')
  // function__return, a place no one holds, still traces.
  const returns = traceUsdt({ pid: target.pid, provider: 'python', name: 'function__return', args: ['str', 'str'] })
  await returns.ready
  target.go()
  t.equal((await collect(returns)).filter((e) => e.args[1] === 'fib').length, 2 * fibonacci(6) - 1, 'every fib return')
})

t.test('a string argument longer than 512 bytes arrives cut to 512 and flagged', async (t) => {
  const target = await startWorkload(t, ['names', '700', '40'])
  const trace = traceUsdt({ pid: target.pid, provider: 'python', name: 'function__return', args: ['str', 'str'] })
  await trace.ready
  target.go()
  const events = await collect(trace)
  const long = events.filter((e) => (e.args[1] as string).startsWith('fff'))
  t.equal(long.length, 1)
  t.equal(long[0]!.args[1], 'f'.repeat(512))
  t.equal(long[0]!.args[0], `/${'p'.repeat(39)}`, 'the other string, after it, is whole')
  t.equal(long[0]!.truncated, true)
  t.ok(events.filter((e) => e !== long[0]).every((e) => !e.truncated), 'no other event is flagged')
})

t.test('python:function__return found in libpython for a program embedding it', async (t) => {
  const CALLS = 9
  const script = [
    'import sys',
    'def leaf():',
    '    return 7',
    'print("ready", flush=True)',
    'sys.stdin.readline()',
    `for _ in range(${CALLS}): leaf()`,
    '',
  ].join('\n')
  const embed = compile('embed.c', join(tmpDir(t, 'embed'), 'embed'), [
    ...execFileSync('/usr/bin/python3.11-config', ['--embed', '--cflags', '--ldflags'], { encoding: 'utf8' })
      .trim()
      .split(/\s+/),
  ])
  const target = await startReady(t, embed, [script])
  const trace = traceUsdt({ pid: target.pid, provider: 'python', name: 'function__return', args: ['str', 'str', 'i32'] })
  await trace.ready
  target.stdin!.write('go\n')
  const events = await collect(trace)
  // PyRun_SimpleString names its code "<string>"; leaf returns from the script's third line.
  t.same(
    events.filter((e) => e.args[1] === 'leaf').map((e) => e.args),
    Array.from({ length: CALLS }, () => ['<string>', 'leaf', 3]),
  )
})

t.test('postgresql:query__start gives the query text', async (t) => {
  const cluster = await startCluster(t)

  t.test('{ binary }: the backend psql -c starts after the trace', async (t) => {
    const trace = traceUsdt({ binary: cluster.postgres, provider: 'postgresql', name: 'query__start', args: ['str'] })
    t.teardown(() => trace.close())
    await trace.ready
    t.equal(cluster.query('SELECT 42'), '42')
    // A second session marks the end: everything the first one ran has arrived before it.
    t.equal(cluster.query('SELECT 43'), '43')
    const events = await collectUntil(trace, (e) => e.args[0] === 'SELECT 43')
    t.same(
      events.map((e) => e.args),
      [['SELECT 42'], ['SELECT 43']],
      'exactly the two queries, as sent',
    )
    t.not(events[0]!.pid, events[1]!.pid, 'each session has a backend of its own')
    t.ok(events.every((e) => e.pid !== cluster.pid && e.tid === e.pid), 'run by backends, not the postmaster')
  })

  t.test('{ pid } of a backend: its queries, ending when the session does', async (t) => {
    const psql = spawn(cluster.psql, cluster.psqlArgs, { stdio: ['pipe', 'pipe', 'inherit'] })
    t.teardown(async () => {
      if (psql.exitCode === null && psql.signalCode === null) {
        const exited = once(psql, 'exit')
        psql.kill('SIGKILL')
        await exited
      }
    })
    const read = lines(psql)
    psql.stdin.write('SELECT pg_backend_pid();\n')
    const backend = Number(await read())
    t.ok(backend > 0 && backend !== cluster.pid, `backend ${backend}`)

    const trace = traceUsdt({ pid: backend, provider: 'postgresql', name: 'query__start', args: ['str'] })
    await trace.ready
    psql.stdin.write("SELECT 'traced', 6 * 7;\n")
    t.equal(await read(), 'traced|42')
    psql.stdin.end()
    const events = await collect(trace)
    t.same(
      events.map((e) => [e.pid, e.args]),
      [[backend, ["SELECT 'traced', 6 * 7;"]]],
      'the one query sent while traced, then the end of the session ends the trace',
    )
  })
})


t.test('bad probes and types are TraceErrors that say what exists', async (t) => {
  const target = await startReady(t, DEBIAN_PYTHON, ['-c', 'import sys; print("ready", flush=True); sys.stdin.read()'])
  const pid = target.pid

  const unknown = await rejection(traceUsdt({ pid, provider: 'python', name: 'function__entr' }))
  t.equal(unknown.code, 'UNKNOWN_PROBE')
  t.match(unknown.message, `process ${pid} has no USDT probe python:function__entr`)
  t.match(unknown.message, /the probes it has are: .*python:function__entry, python:function__return/)

  const badType = await rejection(traceUsdt({ pid, provider: 'python', name: 'line', args: ['str', 'int' as 'i32'] }))
  t.equal(badType.code, 'INVALID_ARGUMENT')
  t.match(badType.message, 'args[1] is "int", which is not an argument type; use one of u8, i8, u16, i16, u32, i32, u64, i64, str, ptr')

  // readelf gives function__entry's argument count, independently of src/process/elf.ts.
  const spec = /Name: function__entry\n.*\n\s+Arguments: (.*)/.exec(
    execFileSync('readelf', ['-n', DEBIAN_PYTHON], { encoding: 'utf8', maxBuffer: 64 << 20 }),
  )![1]!
  const count = spec.trim().split(/\s+/).length
  const tooMany = await rejection(
    traceUsdt({ pid, provider: 'python', name: 'function__entry', args: Array(count + 1).fill('u64') }),
  )
  t.equal(tooMany.code, 'INVALID_ARGUMENT')
  t.match(tooMany.message, `has ${count} arguments`)
  t.match(tooMany.message, `but ${count + 1} types were declared; declare at most ${count}`)

  const noProbes = await rejection(traceUsdt({ path: '/bin/true', provider: 'x', name: 'y' }))
  t.equal(noProbes.code, 'NO_PROBES')
  t.match(noProbes.message, '/bin/true has no USDT probes at all')

  const unmapped = await rejection(traceUsdt({ pid, path: LIBSTDCXX, provider: 'libstdcxx', name: 'throw' }))
  t.equal(unmapped.code, 'INVALID_ARGUMENT')
  t.match(unmapped.message, `process ${pid} has not mapped ${LIBSTDCXX}`)

  const noName = await rejection(traceUsdt({ pid, provider: 'python' } as never))
  t.equal(noName.code, 'INVALID_ARGUMENT')
  t.match(noName.message, /name must be the probe's name/)
})
