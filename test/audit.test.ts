// traceAudit against a real python3.11 process that opens a file, connects to a port this test
// listens on, runs /bin/true and raises events of its own; the expected argument summaries are
// written from the arguments CPython documents for each event (and checked against an audit
// hook in python3.11 itself, see the first test).
import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { once } from 'node:events'
import { createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { traceAudit, type AuditEvent } from '../src/index.js'
import { DEBIAN_PYTHON } from './fixtures/processes.js'
import { tmpDir } from './programs/tools.js'
import { collect, startWorkload } from './targets.js'

/** A file to open and a 127.0.0.1 port that accepts (and drops) connections, for one test. */
async function fixtures(t: Test): Promise<{ path: string; port: number }> {
  const path = join(tmpDir(t, 'audit'), 'opened.txt')
  writeFileSync(path, 'audited\n')
  const server = createServer((socket) => socket.destroy())
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { path, port: (server.address() as AddressInfo).port }
}

async function auditedRun(
  t: Test,
  { path, port }: { path: string; port: number },
  options: { events?: string[]; customEvents?: string[] } = {},
): Promise<AuditEvent[]> {
  const target = await startWorkload(t, ['audit', path, String(port)])
  const trace = traceAudit(target.pid, options)
  await trace.ready
  target.go()
  const events = await collect(trace)
  t.equal(trace.lost, 0, 'nothing lost')
  t.ok(events.every((e) => e.pid === target.pid), 'every event names the target pid')
  return events
}

const named = (events: AuditEvent[], name: string) => events.filter((e) => e.name === name)

t.test('open, socket.connect and subprocess.Popen arrive with their arguments', async (t) => {
  const { path, port } = await fixtures(t)
  const events = await auditedRun(t, { path, port })

  // open(path) in text mode: the path, the raw mode 'r' and the flags FileIO opens with.
  const openFlags = Number(
    execFileSync(DEBIAN_PYTHON, ['-c', 'import os; print(os.O_RDONLY | os.O_CLOEXEC)'], { encoding: 'utf8' }),
  )
  const opens = named(events, 'open').filter((e) => e.args?.[0]?.kind === 'str' && e.args[0].value === path)
  t.same(
    opens.map((e) => e.summary),
    [`'${path}', 'r', ${openFlags}`],
    'one open event for the file',
  )
  t.same(
    named(events, 'socket.connect').map((e) => e.summary),
    [`<socket>, ('127.0.0.1', ${port})`],
    'socket.connect: the socket (by type) and the address tuple',
  )
  t.same(
    named(events, 'subprocess.Popen').map((e) => e.summary),
    [`'/bin/true', ['/bin/true'], None, None`],
    'subprocess.Popen: executable, args, cwd, env',
  )
  t.ok(events.every((e) => e.tid === e.pid), 'all from the main thread')

  // The same three events as python3.11's own audit hook sees them, with repr() of each argument
  // (the socket, an object the kernel side names by type, is left out).
  const script = [
    'import socket, subprocess, sys',
    'seen = []',
    'sys.addaudithook(lambda name, args: seen.append((name, args)) if name in ("open", "socket.connect", "subprocess.Popen") else None)',
    `open(${JSON.stringify(path)}).close()`,
    `with socket.socket() as s: s.connect(("127.0.0.1", ${port}))`,
    'subprocess.run(["/bin/true"], check=True)',
    'for name, args in seen:',
    '    if name == "socket.connect": args = args[1:]',
    '    if name != "open" or args[0] == ' + JSON.stringify(path) + ': print(name, ", ".join(map(repr, args)))',
  ].join('\n')
  const reference = execFileSync(DEBIAN_PYTHON, ['-c', script], { encoding: 'utf8' }).trim().split('\n')
  const ours = [...opens, ...named(events, 'socket.connect'), ...named(events, 'subprocess.Popen')].map(
    (e) => `${e.name} ${e.name === 'socket.connect' ? e.summary!.replace('<socket>, ', '') : e.summary}`,
  )
  t.same(ours, reference, "the summaries are what python's repr() gives for the same arguments")
})

t.test('argument kinds, and what is cut', async (t) => {
  const events = await auditedRun(t, await fixtures(t), { customEvents: ['usdtrace.kinds', 'usdtrace.long'] })
  t.same(
    events.map((e) => e.name),
    ['usdtrace.kinds', 'usdtrace.long'],
    'customEvents let exactly the application-defined events through',
  )
  const [kinds, long] = events as [AuditEvent, AuditEvent]
  t.equal(kinds.summary, `42, True, None, b'\\x00ab', ('nested', -7, <str>), <int>`)
  t.same(kinds.args![0], { kind: 'int', value: 42 })
  t.same(kinds.args![3], { kind: 'bytes', value: Buffer.from([0, 0x61, 0x62]), cut: false })
  t.same(kinds.args![5], { kind: 'object', type: 'int' }, 'an int beyond 60 bits is named by its type')
  t.notOk(kinds.truncated)

  t.same(long.args![0], { kind: 'str', value: 'x'.repeat(256), cut: true }, 'a 300-character str is cut to 256')
  t.equal(long.args!.length, 6, 'six of the seven arguments are kept')
  t.equal(long.summary, `'${'x'.repeat(256)}'…, 1, 2, 3, 4, 5, …`)
  t.ok(long.truncated)
})

t.test("events: ['open'] lets only open events through, the same ones an unfiltered trace sees", async (t) => {
  const files = await fixtures(t)
  const all = await auditedRun(t, files)
  const opens = await auditedRun(t, files, { events: ['open'] })
  t.ok(opens.length > 0, 'open events arrive')
  t.ok(opens.every((e) => e.name === 'open'), 'nothing but open')
  const pathOf = (e: AuditEvent) => (e.args?.[0]?.kind === 'str' ? e.args[0].value : e.summary)
  t.same(
    opens.map(pathOf),
    named(all, 'open').map(pathOf),
    'the same files as the open events of an unfiltered run',
  )
})
