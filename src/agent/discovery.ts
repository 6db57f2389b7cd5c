/**
 * The Python processes on the host, found as `usdtrace ps` finds them, and the files the agent
 * attaches to for them: each interpreter with probes once (a `{ binary }` trace follows every
 * process running it, those started later included), each interpreter once for stack samples
 * (probes or not), and each executable once for syscalls.
 * Files are told apart by device and inode, so the same interpreter seen through two paths (a
 * container's /proc/PID/root/...) is attached once.
 */
import { readlink, stat } from 'node:fs/promises'
import { readProcesses } from '../cli/procfs.js'
import { RuntimeDetector, type ProbeStatus } from '../cli/runtimes.js'

/** A file the agent attaches to: how to open it now, and what identifies it for good. */
export interface AttachFile {
  /** device:inode */
  key: string
  path: string
}

export interface FoundPython {
  pid: number
  /** what its calls probes can do; 'no-probes' for a CPython built without them */
  probes: ProbeStatus
  /** the file holding its python probes (the executable or libpython); none without probes */
  interpreter: AttachFile | undefined
  /** the file holding its interpreter (the executable or libpython), whose processes' stacks a `{ binary }` sampler reads */
  runtime: AttachFile | undefined
  /** its executable, whose syscalls a `{ binary }` syscall trace follows */
  executable: AttachFile | undefined
}

/** Every Python process running now (the agent's own excluded), in pid order. */
export async function findPythons(only?: (pid: number) => boolean): Promise<FoundPython[]> {
  const detector = new RuntimeDetector()
  const found: FoundPython[] = []
  for (const p of (await readProcesses()).values()) {
    if (p.kernelThread || p.pid === process.pid || (only && !only(p.pid))) continue
    const runtime = await detector.detect(p.pid)
    if (runtime?.name !== 'python' || runtime.calls === undefined) continue
    const [runtimeFile, executable] = await Promise.all([attachFile(runtime.object), executableFile(p.pid)])
    const interpreter = runtime.calls === 'no-probes' ? undefined : runtimeFile
    found.push({ pid: p.pid, probes: runtime.calls, interpreter, runtime: runtimeFile, executable })
  }
  return found.sort((a, b) => a.pid - b.pid)
}

/** The executable of a process: by its own path when the host sees the same file there, else through /proc/PID/exe. */
async function executableFile(pid: number): Promise<AttachFile | undefined> {
  const exe = await attachFile(`/proc/${pid}/exe`)
  const path = await readlink(`/proc/${pid}/exe`).catch(() => undefined)
  const named = path === undefined ? undefined : await attachFile(path)
  return named && named.key === exe?.key ? named : exe
}

/** The file at `path` by its identity; undefined when it is gone (its process exited). */
export async function attachFile(path: string): Promise<AttachFile | undefined> {
  try {
    const { dev, ino } = await stat(path)
    return { key: `${dev}:${ino}`, path }
  } catch {
    return undefined
  }
}
