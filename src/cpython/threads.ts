/**
 * The `threading` names of a running CPython's threads, read from its memory without stopping
 * it: what `threading.enumerate()` shows. In each interpreter, sys.modules['threading']._active
 * maps idents to the Thread objects of the threads running; each keeps its kernel tid in
 * _native_id and its name in _name. A thread it does not hold (started by `_thread`, or
 * before `threading` was imported) has no name here.
 */
import { ProcessMemory } from '../process/memory.js'
import { ObjectReader } from './objects.js'
import type { LocatedRuntime, StackReading } from './runtime.js'

/** Interpreters whose threads are named, at most. */
const MAX_INTERPRETERS = 256
/** The longest name read: a longer one is left to the kernel's. */
const MAX_NAME_CHARS = 4096

/** tid → `threading` name, for the threads whose names can be read; empty when none can. */
export function threadNames(reading: StackReading, located: LocatedRuntime): Map<number, string> {
  const names = new Map<number, string>()
  if (!reading.threadNames) return names
  let memory: ProcessMemory
  try {
    memory = new ProcessMemory(located.pid)
  } catch {
    // Gone, or not ours to read: the kernel's names stand.
    return names
  }
  try {
    const { layout, types } = reading.threadNames
    const objects = new ObjectReader(memory, layout, reading.layout, types, located.bias)
    let interpreter = memory.pointer(located.runtime + BigInt(reading.layout.runtime_interpreters))
    for (let seen = 0; interpreter && seen < MAX_INTERPRETERS; seen++) {
      const modules = objects.pointer(interpreter + BigInt(layout.interpreter_modules))
      const threading = modules && objects.get(modules, 'threading')
      const globals = threading && objects.moduleDict(threading)
      const active = globals && objects.get(globals, '_active')
      const read: [thread: bigint, tid: number, name: string][] = []
      for (const [, thread] of active ? objects.items(active) : []) {
        const attributes = objects.attributes(thread, ['_native_id', '_name'])
        const tid = attributes.has('_native_id') ? objects.int(attributes.get('_native_id')!) : undefined
        const name = attributes.has('_name') ? objects.str(attributes.get('_name')!, MAX_NAME_CHARS) : undefined
        if (tid && name !== undefined) read.push([thread, tid, name])
      }
      // The target runs on while it is read: a thread that ended meanwhile left _active, and its
      // object (and name) may be freed memory by the time it was read. _active holds every
      // thread in it alive, so only a thread still there after the read is named.
      const still = new Set(active ? Array.from(objects.items(active), ([, thread]) => thread) : [])
      for (const [thread, tid, name] of read) if (still.has(thread)) names.set(tid, name)
      interpreter = memory.pointer(interpreter + BigInt(reading.layout.interpreter_next))
    }
    return names
  } finally {
    memory.close()
  }
}
