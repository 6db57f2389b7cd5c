// traceSyscalls against real processes: exact counts, arguments and return values, errno names
// and paths, the name filter in the kernel, threads, a process that is not Python, bad input.
// Counts, return values and threads are read both ways, as events and as batches
// (test/fixtures/readers.ts); arguments and paths come with events only.
import { once } from 'node:events'
import t from 'tap'
import { TraceError, traceSyscalls, type SyscallEvent, type SyscallTrace } from '../src/index.js'
import { privatePython, startReady } from './fixtures/processes.js'
import { eachReader } from './fixtures/readers.js'
import { startWorkload } from './targets.js'

async function collect(trace: SyscallTrace): Promise<SyscallEvent[]> {
  const events: SyscallEvent[] = []
  for await (const event of trace) events.push(event)
  return events
}

/** The lines the target prints after its workload, once it has exited. */
async function outputOf(target: { stdout: NodeJS.ReadableStream | null; once(e: 'exit', f: () => void): unknown }) {
  let output = ''
  target.stdout!.on('data', (chunk: Buffer) => (output += chunk))
  await once(target as never, 'exit')
  return output.replace(/^ready\n/, '').trim()
}

const LIBPYTHON = '/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0'
const SEEK_SET = 0n
const AT_FDCWD = 2n ** 32n - 100n // openat's int dirfd, as the register holds it

t.test('N lseek and getppid calls give exactly N rows each, with their return values; exit_group last', (t) =>
  eachReader(t, async (t, reader) => {
    const n = 50
    const target = await startWorkload(t, ['syscalls', String(n), `/nonexistent/usdtrace-${process.pid}/missing.txt`])
    const trace = traceSyscalls(target.pid)
    await trace.ready
    target.go()
    const { rows } = await reader.syscalls(trace)

    const lseeks = rows.filter((e) => e.name === 'lseek')
    t.same(lseeks.map((e) => e.ret), Array.from({ length: n }, (_, offset) => BigInt(offset)), 'one lseek per call, each returning its offset, in order')
    t.ok(lseeks.every((e) => e.durationNs !== undefined), 'successes carry a duration')
    const getppids = rows.filter((e) => e.name === 'getppid')
    t.equal(getppids.length, n, 'one getppid per call')
    t.ok(getppids.every((e) => e.ret === BigInt(process.pid)), 'getppid returns the test runner, its parent')

    t.match(rows.at(-1), { name: 'exit_group', ret: undefined, durationNs: undefined }, 'the last row is exit_group, which never returns')
    t.ok(rows.every((e) => e.pid === target.pid && e.tid === target.pid), `one process, one thread (${rows.length} rows)`)
    t.ok(rows.every((e, i) => i === 0 || e.timestampNs >= rows[i - 1]!.timestampNs), 'one thread: in order of entry')
    t.equal(trace.lost, 0, 'nothing lost')
  }),
)

t.test('events carry the arguments, errno names and paths', async (t) => {
  const n = 50
  const missing = `/nonexistent/usdtrace-${process.pid}/missing.txt`
  const target = await startWorkload(t, ['syscalls', String(n), missing])
  const trace = traceSyscalls(target.pid)
  await trace.ready
  const output = outputOf(target)
  target.go()
  const events = await collect(trace)
  const fd = BigInt(await output)

  const lseeks = events.filter((e) => e.name === 'lseek')
  t.same(
    lseeks.map((e) => e.args.slice(0, 3)),
    Array.from({ length: n }, (_, offset) => [fd, BigInt(offset), SEEK_SET]),
    'each lseek carries (fd, offset, SEEK_SET) in order',
  )
  t.ok(lseeks.length === n && lseeks.every((e) => e.errno === undefined), 'successes carry no errno')

  const opens = events.filter((e) => e.path === missing)
  t.equal(opens.length, 1, 'the open of the missing file, once')
  t.match(opens[0], { name: 'openat', ret: -2n, errno: 'ENOENT', truncated: false }, 'openat fails with ENOENT')
  t.equal(opens[0]!.args[0], AT_FDCWD, 'relative to the working directory')

  const exit = events.at(-1)!
  t.equal(exit.name, 'exit_group', 'the last event is exit_group')
  t.equal(exit.args[0], 0n, 'with status 0')
})

t.test('names filter in the kernel: only the syscalls asked for arrive', async (t) => {
  const n = 20
  const target = await startWorkload(t, ['syscalls', String(n), '/nonexistent/usdtrace-filter'])
  const trace = traceSyscalls({ pid: target.pid, names: ['getppid', 'exit_group'] })
  await trace.ready
  target.go()
  const events = await collect(trace)
  const counts = new Map<string, number>()
  for (const e of events) counts.set(e.name, (counts.get(e.name) ?? 0) + 1)
  t.same(Object.fromEntries(counts), { getppid: n, exit_group: 1 }, 'getppid N times, exit_group once, nothing else')
})

t.test('{ pids }: each process\'s calls under its own pid; ends when both have exited', async (t) => {
  const [a, b] = [await startWorkload(t, ['syscalls', '11', '/nonexistent/a']), await startWorkload(t, ['syscalls', '17', '/nonexistent/b'])]
  const trace = traceSyscalls({ pids: [a.pid, b.pid], names: ['getppid'] })
  await trace.ready
  a.go()
  b.go()
  const byPid = new Map<number, number>()
  for (const e of await collect(trace)) byPid.set(e.pid, (byPid.get(e.pid) ?? 0) + 1)
  t.same(Object.fromEntries(byPid), { [a.pid]: 11, [b.pid]: 17 }, 'exact counts per process')
})

t.test('each thread has its own tid, and every one of its calls', (t) =>
  eachReader(t, async (t, reader) => {
    const threads = 3
    const calls = 25
    const target = await startWorkload(t, ['syscall_threads', String(threads), String(calls)])
    const trace = traceSyscalls(target.pid, { names: ['getppid'] })
    await trace.ready
    const output = outputOf(target)
    target.go()
    const { rows } = await reader.syscalls(trace)
    const nativeIds = (await output).split(' ').map(Number)
    const byTid = new Map<number, number>()
    for (const e of rows) byTid.set(e.tid, (byTid.get(e.tid) ?? 0) + 1)
    t.same([...byTid.keys()].sort(), [...nativeIds].sort(), 'the tids are the threads\' native ids')
    t.notOk(byTid.has(target.pid), 'the main thread makes no getppid call')
    for (const [tid, count] of byTid) t.equal(count, calls, `thread ${tid}: every call`)
    t.ok(rows.every((e) => e.pid === target.pid), 'all under the process id')
  }),
)

t.test('any process, not only Python: a shell testing for a missing file', async (t) => {
  const missing = `/nonexistent/usdtrace-shell-${process.pid}`
  const shell = await startReady(t, '/bin/sh', ['-c', `echo ready; read line; [ -e ${missing} ]; exit 3`])
  const trace = traceSyscalls(shell.pid)
  await trace.ready
  shell.stdin!.write('go\n')
  const events = await collect(trace)
  const checks = events.filter((e) => e.path === missing)
  t.equal(checks.length, 1, 'one stat of the missing path')
  t.match(checks[0], { errno: 'ENOENT', ret: -2n }, 'ENOENT')
  t.match(events.at(-1), { name: 'exit_group', args: [3n] }, 'exit_group(3)')
})

t.test('bad input: unknown names list close matches, a shared library is no { binary }', async (t) => {
  const target = await startWorkload(t, ['calls', '1'])
  const unknown = traceSyscalls(target.pid, { names: ['lseeek'] })
  const error = await unknown.ready.then(() => undefined, (e: unknown) => e)
  t.type(error, TraceError)
  t.equal((error as TraceError).code, 'INVALID_ARGUMENT')
  t.match((error as TraceError).message, /no syscall named "lseeek".*lseek/, 'names the typo and the near match')

  const nothingClose = traceSyscalls(target.pid, { names: ['zzzzzzzzzz'] })
  const all = await nothingClose.ready.then(() => undefined, (e: unknown) => e)
  t.match((all as TraceError).message, /syscalls are: .*openat.*write/, 'lists every name when none is close')

  const library = traceSyscalls({ binary: LIBPYTHON })
  const refused = await library.ready.then(() => undefined, (e: unknown) => e)
  t.equal((refused as TraceError).code, 'INVALID_ARGUMENT')
  t.match((refused as TraceError).message, /shared library.*python executable|shared library.*\{ pid \}/, 'says why, and what to pass instead')
})

t.test('{ binary } follows every process running the program, started after the trace or not', async (t) => {
  // A copy of python3.11 (its own inode): the processes of the original must not be followed.
  const python = privatePython(t)

  const n = 20
  const missing = `/nonexistent/usdtrace-${process.pid}/binary.txt`
  const trace = traceSyscalls({ binary: python, names: ['getppid', 'exit_group'] })
  await trace.ready
  const other = await startWorkload(t, ['syscalls', String(n), missing])
  const otherDone = outputOf(other)
  other.go()
  await otherDone
  const copies = [await startWorkload(t, ['syscalls', String(n), missing], python), await startWorkload(t, ['syscalls', String(n), missing], python)]
  for (const copy of copies) copy.go()

  const events: SyscallEvent[] = []
  const exited = new Set<number>()
  for await (const event of trace) {
    events.push(event)
    if (event.name === 'exit_group') exited.add(event.pid)
    if (copies.every((copy) => exited.has(copy.pid))) break
  }
  for (const copy of copies) {
    t.equal(events.filter((e) => e.pid === copy.pid && e.name === 'getppid').length, n, `process ${copy.pid}: every getppid`)
  }
  t.notOk(events.some((e) => e.pid === other.pid), 'a process of another python3.11 file is not followed')
})
