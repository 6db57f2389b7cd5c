// dumpStacks names each thread as the target's own threading.enumerate() does, on every CPython
// here, and a thread threading does not hold as the kernel does (the target reads its comm);
// names read while threading's dicts change are right or absent, never made up.
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { threadNames } from '../src/cpython/threads.js'
import { locateRuntime, stackReading } from '../src/cpython/runtime.js'
import { dumpStacks, inspect } from '../src/index.js'
import { STACK_PYTHONS, startReady } from './fixtures/processes.js'

const TARGET = fileURLToPath(new URL('targets/thread_names.py', import.meta.url))

interface Named {
  /** native_id → name, from threading.enumerate() */
  threading: Record<string, string>
  /** The thread started by _thread alone, and the one that then asked threading for itself. */
  raw: number
  dummy: number
  /** tid → /proc/self/task/TID/comm */
  kernel: Record<string, string>
}

/** Threads in the named target's pool: more than src/cpython/objects.ts reads of a dict at once. */
const POOL = 1100

async function start(t: Test, python: string, mode: 'named' | 'bare' | 'churn') {
  // -S: no site, whose .pth files may import threading.
  const args = { named: [TARGET, mode, String(POOL)], bare: ['-S', TARGET, mode], churn: [TARGET, mode] }[mode]
  const child = await startReady(t, python, args)
  return { pid: child.pid, report: JSON.parse(child.printed.trim()) as Record<string, unknown> }
}

for (const python of STACK_PYTHONS) {
  t.test(`${python}: threads are named as threading.enumerate() names them`, async (t) => {
    const { pid, report } = await start(t, python, 'named')
    const { threading, raw, dummy, kernel } = report as unknown as Named
    const names = Object.fromEntries((await dumpStacks(pid)).map((thread) => [String(thread.tid), thread.name]))
    const expected = { ...threading, ...kernel }
    t.same(Object.keys(names).sort(), Object.keys(expected).sort(), 'every thread dumped, each known to the target')
    const wrong = Object.entries(expected).filter(([tid, name]) => names[tid] !== name)
    t.same(wrong.map(([tid]) => [tid, names[tid]]), [], `${Object.keys(expected).length} threads, each named as the target names it`)
    for (const name of ['MainThread', 'worker-0', 'wörker-ü', 'работник-β', '🐍-snake', `long-${'x'.repeat(1000)}`, 'subclassed', 'own-dict', `pool-${POOL - 1}`]) {
      t.ok(Object.values(names).includes(name), `one is named ${name.slice(0, 20)}`)
    }
    t.ok(Object.values(threading).includes('after'), 'a thread renamed after it started goes by its new name')
    t.match(threading[dummy], /^Dummy-\d+$/, "a _thread thread that asked for threading.current_thread() is threading's")
    t.notOk(String(raw) in threading, 'the other _thread thread is not')
    t.equal(names[raw], kernel[raw], "and keeps the kernel's name")
  })

  t.test(`${python}: without threading, every thread keeps the kernel's name`, async (t) => {
    const { pid, report } = await start(t, python, 'bare')
    t.equal(report.threading, false, 'the target never imported threading')
    const names = Object.fromEntries((await dumpStacks(pid)).map((thread) => [String(thread.tid), thread.name]))
    t.same(names, report.kernel)
  })

  t.test(`${python}: names read while threads start and end are right or absent`, async (t) => {
    const { pid, report } = await start(t, python, 'churn')
    const stay = report.threading as Record<string, string>
    const reading = stackReading(await inspect(pid))
    const located = (await locateRuntime(reading, pid))!
    let reads = 0
    let complete = 0
    let churned = 0
    const wrong: [number, string][] = []
    for (const until = Date.now() + 2000; Date.now() < until; reads++) {
      const names = threadNames(reading, located)
      if (Object.entries(stay).every(([tid, name]) => names.get(Number(tid)) === name)) complete++
      for (const [tid, name] of names) {
        if (/^churn-\d+$/.test(name) && !(tid in stay)) churned++
        else if (stay[tid] !== name) wrong.push([tid, name])
      }
    }
    t.same(wrong.slice(0, 5), [], `no name in ${reads} reads is one the target did not give that thread`)
    t.ok(complete > 0, `${complete} of ${reads} reads have every thread that stays`)
    t.ok(churned > 0, `${churned} names of threads that came and went were read`)
  })
}
