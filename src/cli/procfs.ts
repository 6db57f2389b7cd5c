/**
 * The process table as /proc shows it, for `usdtrace ps`: parents, names, command lines,
 * threads, CPU time and resident memory. Processes that vanish while being read are skipped.
 */
import { readFile, readdir } from 'node:fs/promises'

/** USER_HZ: the unit of /proc's CPU times, 100 on every Linux architecture usdtrace runs on. */
export const CLOCK_TICKS_PER_SECOND = 100

export interface ProcessInfo {
  pid: number
  ppid: number
  /** the kernel's name for it (/proc/PID/comm), at most 15 characters */
  comm: string
  /** the command line, or [] for kernel threads (and zombies) */
  argv: string[]
  threads: number
  /** user + system CPU time, in clock ticks */
  cpuTicks: number
  kernelThread: boolean
  /** R, S, D, Z (exited, not yet reaped), ... */
  state: string
  /** when it started, in clock ticks since boot */
  startTicks: number
}

export interface ThreadInfo {
  tid: number
  comm: string
  cpuTicks: number
}

interface Stat {
  comm: string
  state: string
  startTicks: number
  ppid: number
  threads: number
  cpuTicks: number
  flags: number
}

const PF_KTHREAD = 0x00200000

/** Fields of /proc/PID/stat (or .../task/TID/stat); the name may hold spaces and parentheses. */
function parseStat(text: string): Stat | undefined {
  const open = text.indexOf('(')
  const close = text.lastIndexOf(')')
  if (open < 0 || close < open) return undefined
  // After the name: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime ...
  const fields = text.slice(close + 2).split(' ')
  return {
    comm: text.slice(open + 1, close),
    state: fields[0]!,
    ppid: Number(fields[1]),
    startTicks: Number(fields[19]),
    flags: Number(fields[6]),
    cpuTicks: Number(fields[11]) + Number(fields[12]),
    threads: Number(fields[17]),
  }
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8')
  } catch {
    return undefined
  }
}

export async function listPids(): Promise<number[]> {
  return (await readdir('/proc')).filter((name) => /^\d+$/.test(name)).map(Number)
}

export async function readProcess(pid: number): Promise<ProcessInfo | undefined> {
  const [statText, cmdline] = await Promise.all([readOptional(`/proc/${pid}/stat`), readOptional(`/proc/${pid}/cmdline`)])
  const stat = statText === undefined ? undefined : parseStat(statText)
  if (!stat) return undefined
  return {
    pid,
    ppid: stat.ppid,
    comm: stat.comm,
    argv: (cmdline ?? '').split('\0').filter((arg, i, all) => arg !== '' || i < all.length - 1),
    threads: stat.threads,
    cpuTicks: stat.cpuTicks,
    kernelThread: (stat.flags & PF_KTHREAD) !== 0,
    state: stat.state,
    startTicks: stat.startTicks,
  }
}

/** Every process, by pid. */
export async function readProcesses(): Promise<Map<number, ProcessInfo>> {
  const processes = await Promise.all((await listPids()).map(readProcess))
  const table = new Map<number, ProcessInfo>()
  for (const process of processes) if (process) table.set(process.pid, process)
  return table
}

/** The children every thread of `pid` forked (/proc/PID/task/TID/children), or none if it is gone. */
export async function readChildren(pid: number): Promise<number[]> {
  let tids: string[]
  try {
    tids = await readdir(`/proc/${pid}/task`)
  } catch {
    return []
  }
  const lists = await Promise.all(tids.map((tid) => readOptional(`/proc/${pid}/task/${tid}/children`)))
  return lists.flatMap((list) => (list ?? '').split(' ').filter(Boolean).map(Number))
}

/** Clock ticks since boot, the clock of ProcessInfo.startTicks. */
export async function uptimeTicks(): Promise<number> {
  const uptime = await readOptional('/proc/uptime')
  return Number(uptime?.split(' ')[0] ?? 0) * CLOCK_TICKS_PER_SECOND
}

export async function readCpuTicks(path: string): Promise<number | undefined> {
  const text = await readOptional(path)
  return text === undefined ? undefined : parseStat(text)?.cpuTicks
}

export async function readThreads(pid: number): Promise<ThreadInfo[]> {
  let tids: string[]
  try {
    tids = await readdir(`/proc/${pid}/task`)
  } catch {
    return []
  }
  const threads = await Promise.all(
    tids.map(async (tid) => {
      const stat = parseStat((await readOptional(`/proc/${pid}/task/${tid}/stat`)) ?? '')
      return stat ? { tid: Number(tid), comm: stat.comm, cpuTicks: stat.cpuTicks } : undefined
    }),
  )
  return threads.filter((t): t is ThreadInfo => t !== undefined).sort((a, b) => a.tid - b.tid)
}

/** Resident memory in bytes (VmRSS), or undefined for kernel threads and vanished processes. */
export async function readRssBytes(pid: number): Promise<number | undefined> {
  const status = await readOptional(`/proc/${pid}/status`)
  const kb = status && /^VmRSS:\s+(\d+) kB$/m.exec(status)
  return kb ? Number(kb[1]) * 1024 : undefined
}

export interface Mapping {
  /** "major:minor" in hex, as maps prints it */
  device: string
  inode: string
  path: string
}

/** The file-backed mappings of a process, one per distinct file; undefined if unreadable. */
export async function readMappings(pid: number): Promise<Mapping[] | undefined> {
  const maps = await readOptional(`/proc/${pid}/maps`)
  if (maps === undefined) return undefined
  const seen = new Set<string>()
  const mappings: Mapping[] = []
  for (const line of maps.split('\n')) {
    const m = /^\S+\s+\S+\s+\S+\s+(\S+)\s+(\d+)\s+(\/.*)$/.exec(line)
    if (!m || m[2] === '0' || seen.has(m[3]!)) continue
    seen.add(m[3]!)
    mappings.push({ device: m[1]!, inode: m[2]!, path: m[3]! })
  }
  return mappings
}
