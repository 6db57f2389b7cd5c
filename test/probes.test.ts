import { readFileSync, realpathSync } from 'node:fs'
import t from 'tap'
import { TraceError } from '../src/errors.js'
import { listProbes } from '../src/process/probes.js'
import {
  CONTAINER_PYTHON,
  DEBIAN_PYTHON,
  PYTHON_WAIT,
  deadPid,
  startContainerPython,
  startReady,
} from './fixtures/processes.js'
import { expectedProbes, isElf, notes } from './fixtures/readelf.js'

const LIBC = realpathSync('/lib/x86_64-linux-gnu/libc.so.6')
const LIBSTDCXX = realpathSync('/usr/lib/x86_64-linux-gnu/libstdc++.so.6')

/** Python that also maps libstdc++ (Debian 12's libc has no stapsdt notes, libstdc++ does). */
const PYTHON_WITH_LIBSTDCXX = `import ctypes; ctypes.CDLL("libstdc++.so.6"); ${PYTHON_WAIT}`

/** provider:name per object, in the order readelf -n lists them, for every ELF file mapped in pid. */
function expectedFromReadelf(pid: number, prefix = ''): string[] {
  const paths = readFileSync(`/proc/${pid}/maps`, 'utf8')
    .split('\n')
    .map((line) => /^\S+\s+\S+\s+\S+\s+\S+\s+(\d+)\s+(\/.*)$/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null && m[1] !== '0' && !m[2]!.endsWith(' (deleted)'))
    .map((m) => prefix + m[2]!)
  return [...new Set(paths)].filter(isElf).flatMap((path) => notes(path).map((n) => `${path} ${n.provider}:${n.name}`))
}

t.test('a path lists that file', async (t) => {
  t.same(await listProbes(DEBIAN_PYTHON), expectedProbes(DEBIAN_PYTHON))
  t.same(await listProbes('/bin/true'), [])
})

t.test('a pid lists every mapped object with probes, in map order, by its path', async (t) => {
  const child = await startReady(t, DEBIAN_PYTHON, ['-c', PYTHON_WITH_LIBSTDCXX])
  const probes = await listProbes(child.pid)
  const labels = probes.map((p) => `${p.object} ${p.provider}:${p.name}`)

  t.same(labels, expectedFromReadelf(child.pid), 'the same probes readelf finds in each mapped file')
  t.same(
    probes.filter((p) => p.object === DEBIAN_PYTHON),
    expectedProbes(DEBIAN_PYTHON),
    'python probes read from the plain path (same mount namespace)',
  )
  t.ok(labels.includes(`${LIBSTDCXX} libstdcxx:throw`), 'libstdc++ probes too')
  t.ok(
    labels.indexOf(`${DEBIAN_PYTHON} python:function__entry`) < labels.indexOf(`${LIBSTDCXX} libstdcxx:throw`),
    'map order',
  )
  t.equal(
    probes.filter((p) => p.object === LIBC).length,
    notes(LIBC).length,
    'libc: whatever stapsdt notes this libc build has',
  )
})

t.test(
  'a process in another mount namespace (a container) is read through /proc/PID/root',
  async (t) => {
    const child = await startContainerPython(t)
    const root = `/proc/${child.pid}/root`
    const probes = await listProbes(child.pid)
    t.same(
      probes.map((p) => `${p.object} ${p.provider}:${p.name}`),
      expectedFromReadelf(child.pid, root),
    )
    t.same(
      probes.filter((p) => p.provider === 'python'),
      expectedProbes(`${root}${CONTAINER_PYTHON}`),
      'objects are the host-visible /proc/PID/root paths',
    )
  },
)

t.test('a pid that does not exist is NO_SUCH_PROCESS', async (t) => {
  const pid = await deadPid()
  await t.rejects(listProbes(pid), {
    constructor: TraceError,
    code: 'NO_SUCH_PROCESS',
    message: new RegExp(`pid ${pid}`),
  })
})

t.test('a pid that is not a positive integer is INVALID_ARGUMENT', async (t) => {
  for (const pid of [0, -1, 1.5, NaN]) {
    await t.rejects(listProbes(pid), { code: 'INVALID_ARGUMENT' }, String(pid))
  }
})
