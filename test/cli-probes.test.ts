// `usdtrace probes` lists what readelf -n lists: for a file, for a running process, filtered by a
// glob, as bpftrace names them and as JSON; argument sizes and signs decoded from the notes.
import { join } from 'node:path'
import t from 'tap'
import { DEBIAN_PYTHON, PYTHON_WAIT, startReady } from './fixtures/processes.js'
import { ARM64_LIBPYTHON, notes, type ReadelfProbe } from './fixtures/readelf.js'
import { compile, tmpDir } from './programs/tools.js'
import { runCli, runCliPiped, tableAfter } from './cli.js'

/** "8@%rax -4@%edx" (AArch64: "8@x0 -4@[sp, 132]") → "arg0:u64 arg1:i32", worked out here from readelf's text. */
function argumentTypes(spec: string): string {
  if (spec === '') return '-'
  return [...spec.matchAll(/(-?\d+)@/g)]
    .map(([, size], i) => `arg${i}:${Number(size) < 0 ? 'i' : 'u'}${Math.abs(Number(size)) * 8}`)
    .join(' ')
}

const expectedRows = (probes: ReadelfProbe[], object: string) =>
  probes.map((p) => [`${p.provider}:${p.name}`, argumentTypes(p.args), p.semaphore === 0n ? 'no' : 'yes', object])

t.test('probes PATH: every note of the file, with decoded arguments', async (t) => {
  const cli = runCli(t, ['probes', DEBIAN_PYTHON])
  t.equal(await cli.exited, 0)
  const rows = tableAfter(cli.text, /^PROBE\s+ARGUMENTS\s+SEMAPHORE\s+OBJECT$/).filter((r) => r.length === 4)
  const readelf = notes(DEBIAN_PYTHON)
  t.same(rows, expectedRows(readelf, DEBIAN_PYTHON), `the ${readelf.length} probes readelf -n finds, in note order`)
  t.match(cli.text, new RegExp(`usdtrace: ${readelf.length} probes in 1 file`))
})

t.test("probes PATH of another architecture: Debian's arm64 libpython3.11, read in its own registers", async (t) => {
  const cli = runCli(t, ['probes', ARM64_LIBPYTHON, 'python:*'])
  t.equal(await cli.exited, 0)
  const rows = tableAfter(cli.text, /^PROBE\s+ARGUMENTS\s+SEMAPHORE\s+OBJECT$/).filter((r) => r.length === 4)
  const readelf = notes(ARM64_LIBPYTHON).filter((p) => p.provider === 'python')
  t.same(rows, expectedRows(readelf, ARM64_LIBPYTHON), `the ${readelf.length} python probes readelf -n finds`)

  const json = await runCliPiped(t, ['probes', ARM64_LIBPYTHON, 'python:gc__start', '--json']).done
  const [gcStart] = json.stdout.trim().split('\n').map((line) => JSON.parse(line))
  const spec = readelf.find((p) => p.name === 'gc__start')!.args
  t.same(gcStart.args, [{ type: 'i32', location: spec.slice(spec.indexOf('@') + 1) }], `gc__start passes ${spec}: one operand, spaces and all`)
})

t.test('probes PID PATTERN, --bpftrace and --json', async (t) => {
  const app = compile('usdt-app.c', join(tmpDir(t, 'probes'), 'demo-app'))
  const target = await startReady(t, app, [])
  const demo = notes(app).filter((p) => p.provider === 'demoapp')
  t.equal(demo.length, 2, 'readelf: the program has two demoapp probes')

  const cli = runCli(t, ['probes', String(target.pid), 'demoapp:*'])
  t.equal(await cli.exited, 0)
  const rows = tableAfter(cli.text, /^PROBE\s+ARGUMENTS/).filter((r) => r.length === 4)
  t.same(rows, expectedRows(demo, app), 'the process: only its demoapp probes, through the glob')

  const bpftrace = await runCliPiped(t, ['probes', app, '--bpftrace']).done
  const ours = bpftrace.stdout.split('\n').filter((line) => line.includes(':demoapp:'))
  t.same(ours, demo.map((p) => `usdt:${app}:demoapp:${p.name}`), 'bpftrace -l names')

  const python = await startReady(t, DEBIAN_PYTHON, ['-c', PYTHON_WAIT])
  const json = await runCliPiped(t, ['probes', String(python.pid), 'python:function__*', '--json']).done
  const probes = json.stdout.trim().split('\n').map((line) => JSON.parse(line))
  const expected = notes(DEBIAN_PYTHON).filter((p) => p.provider === 'python' && p.name.startsWith('function__'))
  t.same(
    probes.map((p) => [p.name, p.object, p.spec, p.semaphore, p.args.length]),
    expected.map((p) => [p.name, DEBIAN_PYTHON, p.args, `0x${p.semaphore.toString(16)}`, p.args.split(' ').length]),
    'names, object, raw spec, semaphore and argument count as readelf has them',
  )
  t.same(probes[0].args[2], { type: 'i32', location: expected[0]!.args.split(' ')[2]!.split('@')[1] }, 'the line number: a signed 32-bit argument')
})

t.test('probes on a file that is not ELF: one line naming the cause, exit 1', async (t) => {
  const cli = runCli(t, ['probes', join(import.meta.dirname ?? '.', 'cli-probes.test.ts')])
  t.equal(await cli.exited, 1)
  const lines = cli.text.trim().split('\n')
  t.equal(lines.length, 1, 'one line')
  t.match(lines[0], /^usdtrace: .*cli-probes\.test\.ts.*ELF/, 'names the file and what it should be')
})
