/**
 * Which processes run something with USDT probes, found cheaply: a process's executable and
 * mapped files are identified by device and inode, and each distinct file is examined once
 * (its ELF notes read, or inspect() run on the first process using it). Python is recognised by
 * name first (a python executable or a libpython mapping); any other executable, and libraries of
 * known runtimes, count when their notes hold probes of their own.
 */
import { stat } from 'node:fs/promises'
import { basename } from 'node:path'
import { inspect, listProbes, type Inspection, type StacksCapability } from '../index.js'
import { readMappings, type Mapping } from './procfs.js'

export type ProbeStatus = 'native' | 'line-semaphore' | 'unavailable' | 'no-probes'

export interface Runtime {
  /** 'python', or the providers of another runtime's probes (e.g. 'postgresql') */
  name: string
  /** python's version, e.g. "3.11.2" */
  version: string | undefined
  /** python: what call tracing can do */
  calls: ProbeStatus | undefined
  /** python: how its stacks are read (top, dump, record --sample), or 'unavailable' */
  stacks: StacksCapability['mode'] | undefined
  /** number of USDT probes of the runtime */
  probes: number
  /** the file holding them (or the interpreter, for python without probes) */
  object: string
}

const PYTHON_EXECUTABLE = /^python\d/
const LIBPYTHON = /\/libpython\d+\.\d+[a-z]*\.so/
/** Shared libraries of runtimes that carry USDT probes (JVM, Ruby, Node, PHP, Perl, Tcl). */
const RUNTIME_LIBRARY = /\/lib(?:jvm|ruby[\d.]*|node|php[\d.]*|perl|tcl[\d.]*)\.so/
/** Probes every program gets from its C and C++ libraries: they do not make it a runtime. */
const GENERIC_PROVIDERS = new Set(['libc', 'rtld', 'libstdcxx', 'libgcc', 'libpthread', 'libm'])

export class RuntimeDetector {
  readonly #python = new Map<string, Runtime>()
  readonly #files = new Map<string, Promise<Runtime | undefined>>()
  /** processes whose executable or maps could not be read (permissions), and why */
  readonly unreadable = new Map<number, string>()

  /** What `pid` runs, or undefined if nothing with probes (or it vanished). */
  async detect(pid: number): Promise<Runtime | undefined> {
    const exe = `/proc/${pid}/exe`
    const [exeStat, mappings] = await Promise.all([
      stat(exe).catch((error: NodeJS.ErrnoException) => error),
      readMappings(pid),
    ])
    if (exeStat instanceof Error || mappings === undefined) {
      // ENOENT: a kernel thread, or gone. Anything else: not ours to read.
      if (!(exeStat instanceof Error && exeStat.code === 'ENOENT')) this.unreadable.set(pid, exeStat instanceof Error ? (exeStat.code ?? exeStat.message) : 'maps unreadable')
      return undefined
    }
    const exeKey = `${exeStat.dev}:${exeStat.ino}`
    const exePath = mappings.find((m) => m.inode === String(exeStat.ino))?.path ?? exe
    const libpython = mappings.find((m) => LIBPYTHON.test(m.path))
    if (libpython || PYTHON_EXECUTABLE.test(basename(exePath))) return this.#pythonOf(pid, exeKey, libpython)
    const runtimes = [this.#fileRuntime(`exe ${exeKey}`, exe, exePath)]
    for (const mapping of mappings.filter((m) => RUNTIME_LIBRARY.test(m.path))) {
      // Through the process's root, so a container's libraries are found too.
      runtimes.push(this.#fileRuntime(mappingKey(mapping), `/proc/${pid}/root${mapping.path}`, mapping.path))
    }
    return (await Promise.all(runtimes)).find((r) => r !== undefined)
  }

  async #pythonOf(pid: number, exeKey: string, libpython: Mapping | undefined): Promise<Runtime | undefined> {
    const key = `${exeKey} ${libpython ? mappingKey(libpython) : ''}`
    const known = this.#python.get(key)
    if (known) return known
    let inspection: Inspection
    try {
      inspection = await inspect(pid)
    } catch {
      // Gone, or not what it looked like: nothing to cache.
      return undefined
    }
    const runtime = pythonRuntime(inspection)
    this.#python.set(key, runtime)
    return runtime
  }

  /** A file's own probes, read once per device and inode. */
  #fileRuntime(key: string, file: string, path: string): Promise<Runtime | undefined> {
    let runtime = this.#files.get(key)
    if (runtime === undefined) {
      runtime = listProbes(file).then(
        (probes) => {
          const own = probes.filter((p) => !GENERIC_PROVIDERS.has(p.provider))
          if (own.length === 0) return undefined
          const providers = [...new Set(own.map((p) => p.provider))].join(',')
          return { name: providers, version: undefined, calls: undefined, stacks: undefined, probes: own.length, object: path }
        },
        () => undefined,
      )
      this.#files.set(key, runtime)
    }
    return runtime
  }
}

function mappingKey(mapping: Mapping): string {
  return `map ${mapping.device}:${mapping.inode}`
}

function pythonRuntime(inspection: Inspection): Runtime {
  const v = inspection.version
  const calls = inspection.capabilities.calls
  return {
    name: 'python',
    version: v ? `${v.major}.${v.minor}${v.micro !== undefined ? `.${v.micro}` : ''}` : undefined,
    calls: inspection.probes.length === 0 ? 'no-probes' : calls.mode,
    stacks: inspection.capabilities.stacks.mode,
    probes: inspection.probes.length,
    object: inspection.probeObject ?? inspection.interpreterObject,
  }
}
