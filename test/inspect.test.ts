import { execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { copyFileSync, openSync, readFileSync, realpathSync, closeSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import t, { type Test } from 'tap'
import { TraceError } from '../src/errors.js'
import { type CapabilityName, LINE_SEMAPHORE_COST, findLineSemaphore, inspect, requireProbes } from '../src/process/inspect.js'
import {
  CONTAINER_PYTHON,
  DEBIAN_PYTHON,
  PYTHON_WAIT,
  deadPid,
  startContainerPython,
  startReady,
} from './fixtures/processes.js'
import { codeOffset, dynamicEntry, dynamicSymbol, expectedProbes, sections } from './fixtures/readelf.js'
import { NOBODY, staged } from './fixtures/staged.js'

const LIBPYTHON = realpathSync('/lib/x86_64-linux-gnu/libpython3.11.so.1.0')
const PYENV = '/root/.pyenv/versions'
const CAPABILITIES: CapabilityName[] = ['calls', 'gc', 'imports', 'audit', 'line']

function versionOf(python: string): { major: number; minor: number; micro: number } {
  const out = execFileSync(python, ['-c', 'import sys; print(*sys.version_info[:3])'], { encoding: 'utf8' })
  const [major, minor, micro] = out.trim().split(' ').map(Number) as [number, number, number]
  return { major, minor, micro }
}

function pythonProbes(object: string) {
  return expectedProbes(object).filter((p) => p.provider === 'python')
}

function catchTrace(fn: () => unknown): TraceError | undefined {
  try {
    fn()
  } catch (err) {
    if (err instanceof TraceError) return err
    throw err
  }
  return undefined
}

/**
 * The capabilities of a probe-enabled 3.11: calls via the line semaphore, the rest native, and
 * stacks read with the table for its version (3.11 does not describe its own layout).
 */
function assertPython311Capabilities(t: Test, capabilities: Record<CapabilityName, unknown>): void {
  t.same(capabilities, {
    calls: { available: true, mode: 'line-semaphore', cost: LINE_SEMAPHORE_COST },
    gc: { available: true, mode: 'native' },
    imports: { available: true, mode: 'native' },
    audit: { available: true, mode: 'native' },
    line: { available: true, mode: 'native' },
    stacks: { available: true, mode: 'version-table' },
  })
}

t.test("Debian's python3.11 has every probe; calls need the line semaphore", async (t) => {
  const child = await startReady(t, DEBIAN_PYTHON, ['-c', PYTHON_WAIT])
  const insp = await inspect(child.pid)
  t.match(insp, {
    pid: child.pid,
    runtime: 'python',
    version: versionOf(DEBIAN_PYTHON),
    executable: DEBIAN_PYTHON,
    probeObject: DEBIAN_PYTHON,
    interpreterObject: DEBIAN_PYTHON,
  })
  t.same(insp.probes, pythonProbes(DEBIAN_PYTHON))
  assertPython311Capabilities(t, insp.capabilities)
  for (const cap of CAPABILITIES) t.doesNotThrow(() => requireProbes(insp, cap), cap)

  const line = findLineSemaphore(insp)
  t.equal(line.object, DEBIAN_PYTHON)
  t.equal(line.probe.name, 'line')
  t.equal(line.semaphoreFileOffset, pythonProbes(DEBIAN_PYTHON).find((p) => p.name === 'line')!.semaphoreFileOffset)
  t.same(
    line.coldCodeOffsets,
    ['FINI', 'INIT'].map((tag) => codeOffset(DEBIAN_PYTHON, dynamicEntry(DEBIAN_PYTHON, tag)!)),
  )
})

const PYENV_311 = `${PYENV}/3.11.7/bin/python3.11`
const PYENV_310 = `${PYENV}/3.10.13/bin/python3.10`
const PYENV_27 = `${PYENV}/2.7.18/bin/python2.7`

t.test('a pyenv build (shared, without --with-dtrace) has no probes', async (t) => {
  const python = PYENV_311
  const child = await startReady(t, python, ['-c', PYTHON_WAIT])
  const insp = await inspect(child.pid)
  const libpython = realpathSync(`${PYENV}/3.11.7/lib/libpython3.11.so.1.0`)
  t.match(insp, {
    version: versionOf(python),
    executable: realpathSync(python),
    probeObject: null,
    interpreterObject: libpython,
  })
  t.same(insp.probes, [])
  for (const cap of CAPABILITIES) {
    t.match(insp.capabilities[cap], { available: false, mode: 'unavailable', reason: /--with-dtrace/ }, cap)
  }
  const err = catchTrace(() => requireProbes(insp, 'calls'))
  t.equal(err?.code, 'NO_PROBES')
  t.match(err?.message, libpython)
  t.match(err?.message, /--with-dtrace.*pyenv.*docker.*Debian\/Ubuntu/)
  t.equal(catchTrace(() => findLineSemaphore(insp))?.code, 'NO_PROBES')
})

t.test(
  'before Py_Version (3.11) the version comes from the libpython file name',
  async (t) => {
    const python = PYENV_310
    t.notOk(dynamicSymbol(`${PYENV}/3.10.13/lib/libpython3.10.so.1.0`, 'Py_Version'), 'readelf: no Py_Version')
    const child = await startReady(t, python, ['-c', PYTHON_WAIT])
    t.same((await inspect(child.pid)).version, { major: 3, minor: 10 })
  },
)

t.test('Python 2.7 predates USDT probes altogether', async (t) => {
  const child = await startReady(t, PYENV_27, [
    '-c',
    'import sys; print("ready"); sys.stdout.flush(); sys.stdin.read()',
  ])
  const insp = await inspect(child.pid)
  t.same(insp.version, { major: 2, minor: 7 })
  t.match(insp.capabilities.calls, { available: false, reason: /CPython 2\.7 predates the function__entry probe/ })
  const err = catchTrace(() => requireProbes(insp, 'gc'))
  t.equal(err?.code, 'NO_PROBES')
  t.match(err?.message, /CPython 2\.7, older than any CPython with USDT probes \(3\.6\)/)
})

t.test('a CPython 3.12 with probes explains that call and line probes are gone', async (t) => {
  const copy = await fakePython312(t)
  const child = await startReady(t, copy, ['-c', PYTHON_WAIT], { env: { ...process.env, PYTHONHOME: '/usr' } })
  const insp = await inspect(child.pid)
  t.same(insp.version, { major: 3, minor: 12, micro: 1 })
  t.equal(insp.probeObject, copy)
  for (const cap of ['calls', 'line'] as const) {
    t.match(insp.capabilities[cap], { available: false, reason: /3\.12 removed .*gh-104280.*3\.15/ }, cap)
  }
  for (const cap of ['gc', 'imports', 'audit'] as const)
    t.same(insp.capabilities[cap], { available: true, mode: 'native' })
  const err = catchTrace(() => requireProbes(insp, 'calls'))
  t.equal(err?.code, 'PROBE_UNAVAILABLE')
  t.match(err?.message, /gh-104280.*gc, imports and audit still work.*usdtrace gc.*usdtrace stat/)
  t.doesNotThrow(() => requireProbes(insp, 'gc'))
  t.equal(catchTrace(() => findLineSemaphore(insp))?.code, 'PROBE_UNAVAILABLE')
})

/**
 * A copy of Debian's python3.11 made to look like a probe-enabled 3.12: PY_VERSION_HEX says
 * 3.12.1 and the function__entry/return and line notes are renamed away, as 3.12 dropped them.
 */
async function fakePython312(t: Test): Promise<string> {
  const copy = join(t.testdir(), 'python3.12')
  copyFileSync(DEBIAN_PYTHON, copy)
  const fd = openSync(copy, 'r+')
  try {
    const version = dynamicSymbol(copy, 'Py_Version')!
    const rodata = sections(copy).find((s) => s.addr <= version.value && version.value < s.addr + s.size)!
    const hex = Buffer.alloc(4)
    hex.writeUInt32LE(0x030c01f0)
    writeSync(fd, hex, 0, 4, Number(version.value - rodata.addr + rodata.offset))

    const notes = sections(copy).find((s) => s.name === '.note.stapsdt')!
    const bytes = readFileSync(copy).subarray(Number(notes.offset), Number(notes.offset + notes.size))
    for (const name of ['function__entry', 'function__return', 'line']) {
      const at = bytes.indexOf(`\0${name}\0`)
      t.ok(at > 0, `found ${name} in the notes`)
      writeSync(fd, Buffer.from('x'), 0, 1, Number(notes.offset) + at + 1)
    }
  } finally {
    closeSync(fd)
  }
  return copy
}

t.test('a container python is inspected through /proc/PID/root', async (t) => {
  const child = await startContainerPython(t)
  const insp = await inspect(child.pid)
  const object = `/proc/${child.pid}/root${CONTAINER_PYTHON}`
  t.match(insp, { executable: object, probeObject: object, version: versionOf(DEBIAN_PYTHON) })
  t.same(insp.probes, pythonProbes(object))
  assertPython311Capabilities(t, insp.capabilities)
})

t.test('gdb embeds libpython: the library holds the probes', async (t) => {
  const child = await startReady(t, 'gdb', [
    ...['-q', '-nx', '-batch', '-ex'],
    'python import time; print("ready", flush=True); time.sleep(600)',
  ])
  const insp = await inspect(child.pid)
  t.match(insp, {
    executable: realpathSync('/usr/bin/gdb'),
    probeObject: LIBPYTHON,
    interpreterObject: LIBPYTHON,
    version: versionOf(DEBIAN_PYTHON),
  })
  t.same(insp.probes, pythonProbes(LIBPYTHON))
  assertPython311Capabilities(t, insp.capabilities)
  t.equal(findLineSemaphore(insp).object, LIBPYTHON)
})

t.test('node is NOT_PYTHON', async (t) => {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 1e6)'], { stdio: 'ignore' })
  t.teardown(() => {
    child.kill('SIGKILL')
  })
  await once(child, 'spawn')
  const err = await inspect(child.pid!).catch((e: unknown) => e)
  t.ok(err instanceof TraceError)
  t.match(err, { code: 'NOT_PYTHON', message: /node.*usdtrace traces CPython processes.*listProbes/ })
})

t.test('a dead pid is NO_SUCH_PROCESS', async (t) => {
  await t.rejects(inspect(await deadPid()), { code: 'NO_SUCH_PROCESS' })
})

t.test("an unprivileged user inspecting root's python gets PERMISSION_DENIED", async (t) => {
  const python = await startReady(t, DEBIAN_PYTHON, ['-c', PYTHON_WAIT])
  // The child runs the built package, staged where nobody can read it.
  const script = `
    const { inspect } = await import(${JSON.stringify(pathToFileURL(staged('dist/index.js')).href)})
    const result = await inspect(${python.pid}).then(() => ({ code: 'RESOLVED' }), (e) => ({ code: e.code, message: e.message }))
    console.log(JSON.stringify(result))`
  // `env -u NODE_OPTIONS`: tap's process-info hook, which it adds to every child's NODE_OPTIONS,
  // would try to write .tap/ as nobody.
  const out = execFileSync(
    'setpriv',
    [...NOBODY, 'env', '-u', 'NODE_OPTIONS', process.execPath, '--input-type=module', '-e', script],
    { cwd: '/', encoding: 'utf8' },
  )
  const result = JSON.parse(out) as { code: string; message: string }
  t.equal(result.code, 'PERMISSION_DENIED')
  t.match(result.message, new RegExp(`/proc/${python.pid}/exe.*another user`))
})
