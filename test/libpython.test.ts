// Processes whose interpreter lives in Debian's libpython3.11.so rather than in their executable:
// a C program embedding it (built here with python3.11-config --embed) and gdb. inspect must find
// the probes in the shared library and traceCalls must count every call.
import { execFileSync, spawnSync } from 'node:child_process'
import { readFileSync, realpathSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { inspect, traceCalls } from '../src/index.js'
import { startReady } from './fixtures/processes.js'
import { collect, fibonacci } from './targets.js'
import { compile, tmpDir } from './programs/tools.js'

// Debian's, not the pyenv shim PATH finds first.
const PYTHON_CONFIG = '/usr/bin/python3.11-config'
const MULTIARCH = execFileSync('gcc', ['-print-multiarch'], { encoding: 'utf8' }).trim()
const DEBIAN_LIBPYTHON = `/usr/lib/${MULTIARCH}/libpython3.11.so.1.0`
const LIBPYTHON_SONAME = 'libpython3.11.so.1.0'

const N = 12
/** Defines fib, says "ready", waits for a line on stdin, runs fib(N) and returns. */
const FIB_SCRIPT = [
  'import sys',
  'def fib(n):',
  '    return n if n < 2 else fib(n - 1) + fib(n - 2)',
  'print("ready", flush=True)',
  'sys.stdin.readline()',
  `fib(${N})`,
  '',
].join('\n')

/** The libpython3.11 that /proc/PID/maps shows mapped, as a real path (read here, not through src/). */
function mappedLibpython(pid: number): string | undefined {
  for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
    const m = /^\S+\s+\S+\s+\S+\s+\S+\s+[1-9]\d*\s+(\/.*)$/.exec(line)
    if (m && m[1]!.endsWith(`/${LIBPYTHON_SONAME}`)) return realpathSync(m[1]!)
  }
  return undefined
}

/** Where the dynamic linker resolves the libpython a binary needs, per ldd. */
function lddLibpython(binary: string): string | undefined {
  const m = new RegExp(`${LIBPYTHON_SONAME.replace(/\./g, '\\.')} => (\\S+)`).exec(
    execFileSync('ldd', [binary], { encoding: 'utf8' }),
  )
  return m ? realpathSync(m[1]!) : undefined
}

function hasPythonProbes(path: string): boolean {
  return /Provider: python/.test(execFileSync('readelf', ['-n', path], { encoding: 'utf8', maxBuffer: 64 << 20 }))
}

/** Checks inspect and an exact trace of fib(N) in a process that maps Debian's libpython. */
async function traceEmbedded(t: Test, command: string, args: string[]): Promise<void> {
  const target = await startReady(t, command, args)
  const mapped = mappedLibpython(target.pid)
  t.equal(mapped, DEBIAN_LIBPYTHON, `/proc/${target.pid}/maps maps Debian's libpython`)

  const inspection = await inspect(target.pid)
  t.equal(inspection.executable, realpathSync(command), 'the executable is the embedder')
  t.equal(inspection.probeObject, mapped, 'the probes are in libpython')
  t.equal(inspection.interpreterObject, mapped, 'so is the interpreter')
  t.match(inspection.version, { major: 3, minor: 11 })
  t.ok(inspection.probes.length > 0 && inspection.probes.every((p) => p.object === mapped), 'every probe is in libpython')
  t.match(inspection.capabilities.calls, { available: true, mode: 'line-semaphore' }, '3.11: entries through the line semaphore')

  const trace = traceCalls(target.pid)
  await trace.ready
  target.stdin!.write('go\n')
  const events = await collect(trace)
  const fib = events.filter((e) => e.func === 'fib' && e.file === '<string>')
  const calls = 2 * fibonacci(N + 1) - 1
  t.equal(fib.filter((e) => e.kind === 'entry').length, calls, `fib(${N}): ${calls} entries`)
  t.equal(fib.filter((e) => e.kind === 'return').length, calls, `fib(${N}): ${calls} returns`)
  t.equal(trace.lost, 0, 'nothing lost')
  t.ok(events.every((e) => e.pid === target.pid), 'every event names the target pid')
}

t.test('a C program embedding libpython3.11.so', async (t) => {
  const embed = compile('embed.c', join(tmpDir(t, 'embed'), 'embed'), [
    ...execFileSync(PYTHON_CONFIG, ['--embed', '--cflags', '--ldflags'], { encoding: 'utf8' }).trim().split(/\s+/),
  ])
  t.equal(lddLibpython(embed), DEBIAN_LIBPYTHON, `ldd: it needs ${LIBPYTHON_SONAME}, Debian's`)
  t.notOk(hasPythonProbes(embed), 'readelf: the embedder itself carries no python probes')
  t.ok(hasPythonProbes(DEBIAN_LIBPYTHON), 'readelf: libpython does')
  await traceEmbedded(t, embed, [FIB_SCRIPT])
})

t.test('gdb running a python command', async (t) => {
  const gdb = spawnSync('sh', ['-c', 'command -v gdb'], { encoding: 'utf8' }).stdout.trim()
  if (!gdb) {
    t.plan(0, 'gdb is not installed')
    return
  }
  t.equal(lddLibpython(gdb), DEBIAN_LIBPYTHON, `ldd: gdb embeds Debian's ${LIBPYTHON_SONAME}`)
  await traceEmbedded(t, gdb, ['-q', '-nx', '-batch', '-ex', `python\n${FIB_SCRIPT}`])
})
