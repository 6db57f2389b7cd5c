// traceLibraryCalls: libc's write and getpid under python3.11, whose calls the workloads make
// known, read both ways, as events and as batches (test/fixtures/readers.ts); the arguments,
// which come with events only; and the recursion and longjmp of a library built here, per pid
// and per file.
import { execFileSync } from 'node:child_process'
import { readFileSync, realpathSync } from 'node:fs'
import { join } from 'node:path'
import { once } from 'node:events'
import t, { type Test } from 'tap'
import { traceLibraryCalls, type LibraryCallEvent, type LibraryCallTrace } from '../src/index.js'
import { DEBIAN_PYTHON, startReady } from './fixtures/processes.js'
import { eachReader } from './fixtures/readers.js'
import { compile, tmpDir } from './programs/tools.js'
import { startWorkload, rejection } from './targets.js'

async function collect(trace: LibraryCallTrace): Promise<LibraryCallEvent[]> {
  const events: LibraryCallEvent[] = []
  for await (const event of trace) events.push(event)
  return events
}

/** The libc /proc/PID/maps shows (read here, not through src/). */
function mappedLibc(pid: number): string {
  const line = readFileSync(`/proc/${pid}/maps`, 'utf8')
    .split('\n')
    .find((l) => /\/libc\.so\.6$/.test(l))!
  return line.slice(line.indexOf('/'))
}

const WRITES = 20
const FAILING = 3

/**
 * The writes workload under a trace of libc's write, going: WRITES one-byte os.write calls to a
 * fd it prints first, then FAILING more once that is closed. `fdLine` is the printed fd.
 */
async function traceWrites(t: Test) {
  const target = await startWorkload(t, ['writes', String(WRITES), String(FAILING)])
  let output = ''
  target.stdout!.on('data', (chunk: Buffer) => (output += chunk))
  // The trace can end before the last of the output is read: wait for all of it. The first
  // line with something on it: a newline left over from "ready" may come first.
  const fdLine = once(target.stdout!, 'end').then(() => output.split('\n').find((line) => line !== '' && line !== 'ready')!)
  // Both names of one function: one probe, so one call each, named as first asked.
  const trace = traceLibraryCalls(target.pid, { library: 'libc', symbols: ['write', '__write'] })
  await trace.ready
  target.go()
  return { trace, pid: target.pid, libc: mappedLibc(target.pid), fdLine }
}

t.test("N os.write calls are N calls of libc's write: return values, bytes and failures", (t) =>
  eachReader(t, async (t, reader) => {
    const { trace, pid, libc, fdLine } = await traceWrites(t)
    const { rows } = await reader.libraryCalls(trace)
    const mine = rows.filter((e) => e.tid === pid)
    t.same(new Set(mine.map((e) => `${e.symbol} ${e.library}`)), new Set([`write ${libc}`]), 'every row is a call of write in the libc mapped')
    // However python buffers it, printing the fd writes exactly its digits and a newline.
    const written = mine.reduce((sum, e) => (e.returnValue > 0n ? sum + e.returnValue : sum), 0n)
    t.equal(written, BigInt(WRITES + `${await fdLine}\n`.length), 'the bytes written: one per os.write, and the printed fd')
    t.equal(mine.filter((e) => e.returnValue === -1n).length, FAILING, 'one call returning -1 per write to the closed fd')
    for (const row of mine) {
      t.equal(row.pid, pid)
      t.equal(row.depth, 0, 'write calls no traced function')
      t.ok(row.durationNs > 0n, 'a duration')
    }
    t.equal(trace.lost, 0, 'nothing lost')
  }),
)

t.test("events carry write's arguments: the fd and the count", async (t) => {
  const { trace, pid, libc, fdLine } = await traceWrites(t)
  const events = await collect(trace)
  const fd = BigInt(await fdLine)
  const mine = events.filter((e) => e.tid === pid && e.args[0] === fd)
  t.equal(mine.length, WRITES + FAILING, 'one event per os.write on the fd')
  t.same(
    mine.map((e) => [e.symbol, e.library, e.args[2], e.returnValue]),
    [
      ...Array.from({ length: WRITES }, () => ['write', libc, 1n, 1n]),
      ...Array.from({ length: FAILING }, () => ['write', libc, 1n, -1n]),
    ],
    'write(fd, buf, 1) returns 1, then -1 once the fd is closed',
  )
  const toStdout = events.filter((e) => e.tid === pid && e.args[0] === 1n)
  t.equal(
    toStdout.reduce((sum, e) => sum + e.returnValue, 0n),
    BigInt(`${fd}\n`.length),
    'the print of the fd is traced too',
  )
})

t.test("a glob: 'getpid*' traces every libc function it matches", (t) =>
  eachReader(t, async (t, reader) => {
    const CALLS = 15
    const target = await startWorkload(t, ['getpid', String(CALLS)])
    const libc = mappedLibc(target.pid)
    // What readelf says the glob covers: the distinct addresses of the getpid* FUNC symbols.
    const matched = execFileSync('readelf', ['--dyn-syms', '-W', libc], { encoding: 'utf8' })
      .split('\n')
      .map((line) => /^\s*\d+:\s+([0-9a-f]+)\s+\d+\s+FUNC\s+\S+\s+\S+\s+\d+\s+(getpid[^@\s]*)/.exec(line))
      .filter((m): m is RegExpExecArray => m !== null)
    t.same([...new Set(matched.map((m) => m[2]))], ['getpid'], 'libc has one getpid* function')

    const trace = traceLibraryCalls({ pid: target.pid, library: 'libc.so.6', symbols: 'getpid*' })
    await trace.ready
    target.go()
    const { rows } = await reader.libraryCalls(trace)
    const calls = rows.filter((e) => e.tid === target.pid)
    t.equal(calls.length, CALLS, 'one call per os.getpid()')
    t.same(new Set(calls.map((e) => `${e.symbol} ${e.returnValue}`)), new Set([`getpid ${target.pid}`]), 'each names getpid and returns the pid')
  }),
)

/** libnesting.so and a program calling escape(N) then countdown(N) from it after a line on stdin. */
function buildNesting(dir: string): { library: string; program: string } {
  const library = compile('nesting.c', join(dir, 'libnesting.so'), ['-O0', '-shared', '-fPIC'])
  const program = compile('nesting_main.c', join(dir, 'nesting'), ['-L', dir, '-lnesting', `-Wl,-rpath,${dir}`])
  return { library, program }
}

t.test('nesting: a call longjmp abandons is dropped, recursion gives each level its argument, result and depth', async (t) => {
  const N = 6
  const { library, program } = buildNesting(tmpDir(t, 'nesting'))
  const target = await startReady(t, program, [String(N)])
  const trace = traceLibraryCalls(target.pid, { library, symbols: ['escape', 'abandon', 'countdown'] })
  await trace.ready
  target.stdin!.write('go\n')
  const events = await collect(trace)
  // escape(N) returns N though abandon() never returns; then countdown(n) returns n, nested in
  // N - n traced calls, innermost first.
  const levels = Array.from({ length: N + 1 }, (_, i) => i)
  t.same(
    events.map((e) => [e.symbol, e.args[0], e.returnValue, e.depth]),
    [['escape', BigInt(N), BigInt(N), 0], ...levels.map((n) => ['countdown', BigInt(n), BigInt(n), N - n])],
  )
  t.same(new Set(events.map((e) => e.library)), new Set([realpathSync(library)]))
  const countdowns = events.slice(1)
  for (let i = 1; i < countdowns.length; i++) {
    const inner = countdowns[i - 1]!
    const outer = countdowns[i]!
    t.ok(
      outer.timestampNs <= inner.timestampNs &&
        outer.timestampNs + outer.durationNs >= inner.timestampNs + inner.durationNs,
      `countdown(${i}) spans countdown(${i - 1})`,
    )
  }
  t.equal(trace.lost, 0)
})

t.test('{ binary }: a library followed into a process started after the trace', async (t) => {
  const N = 3
  const { library, program } = buildNesting(tmpDir(t, 'nesting'))
  const trace = traceLibraryCalls({ binary: library, symbols: ['countdown'] })
  t.teardown(() => trace.close())
  await trace.ready
  const target = await startReady(t, program, [String(N)])
  target.stdin!.write('go\n')
  const events: LibraryCallEvent[] = []
  for await (const event of trace) if (events.push(event) === N + 1) break
  t.same(
    events.map((e) => [e.pid, e.args[0]]),
    [0n, 1n, 2n, 3n].map((n) => [target.pid, n]),
  )
})


t.test('unknown libraries, functions matching nothing and IFUNCs are TraceErrors saying what exists', async (t) => {
  const target = await startReady(t, DEBIAN_PYTHON, ['-c', 'import sys; print("ready", flush=True); sys.stdin.read()'])
  const pid = target.pid

  const library = await rejection(traceLibraryCalls(pid, { library: 'libfoo', symbols: 'x' }))
  t.equal(library.code, 'UNKNOWN_PROBE')
  t.match(library.message, `process ${pid} has no library libfoo mapped; the files it has mapped are: `)
  t.match(library.message, /python3\.11, .*libc\.so\.6/)

  const glob = await rejection(traceLibraryCalls(pid, { library: 'libc', symbols: ['write', 'pthread_mutex_lockz*'] }))
  t.equal(glob.code, 'UNKNOWN_PROBE')
  t.match(glob.message, /no function exported by \S+libc\.so\.6 matches "pthread_mutex_lockz\*"/)
  t.match(glob.message, /similar names: .*pthread_mutex_lock/)

  const ifunc = await rejection(traceLibraryCalls(pid, { library: 'libc', symbols: 'memcpy' }))
  t.equal(ifunc.code, 'PROBE_UNAVAILABLE')
  t.match(ifunc.message, 'memcpy in')
  t.match(ifunc.message, 'is a GNU indirect function (IFUNC)')

  const both = await rejection(traceLibraryCalls({ binary: DEBIAN_PYTHON, library: 'libc', symbols: 'x' }))
  t.equal(both.code, 'INVALID_ARGUMENT')
  t.match(both.message, 'leave out `library`')

  const none = await rejection(traceLibraryCalls(pid, { library: 'libc', symbols: [] }))
  t.equal(none.code, 'INVALID_ARGUMENT')
  t.match(none.message, 'symbols must name functions of the library')
})
