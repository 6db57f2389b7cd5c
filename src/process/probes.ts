/**
 * Listing the USDT probes of a file or of everything a running process has mapped, and the
 * /proc plumbing that inspect() shares.
 */
import { readFile, readlink, stat } from 'node:fs/promises'
import { TraceError, noSuchProcess, processAccessDenied } from '../errors.js'
import { type UsdtProbe, readUsdtProbes } from './elf.js'

/**
 * The probes of an ELF file (a path), or of every distinct file-backed object a process (a pid)
 * has mapped: objects in map order, probes in note order. Mappings that are not readable ELF
 * files (devices, deleted files, ...) are skipped.
 */
export async function listProbes(pidOrPath: number | string): Promise<UsdtProbe[]> {
  if (typeof pidOrPath === 'string') return readUsdtProbes(pidOrPath)
  const objects = await mappedObjects(pidOrPath)
  return objects.flatMap(probesIfReadable)
}

function probesIfReadable(path: string): UsdtProbe[] {
  try {
    return readUsdtProbes(path)
  } catch (err) {
    if (err instanceof TraceError) return []
    throw err
  }
}

function assertPid(pid: number): void {
  if (!Number.isSafeInteger(pid) || pid <= 0) {
    throw new TraceError('INVALID_ARGUMENT', `${String(pid)} is not a process id; pass a positive integer pid`)
  }
}

/**
 * Runs a read of /proc/PID/..., turning "the process is gone" into NO_SUCH_PROCESS and "it is
 * someone else's process" into PERMISSION_DENIED.
 */
async function readProc<T>(pid: number, entry: string, read: (path: string) => Promise<T>): Promise<T> {
  const path = `/proc/${pid}/${entry}`
  try {
    return await read(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EACCES' || code === 'EPERM') throw processAccessDenied(pid, path, err)
    if (code !== 'ENOENT' && code !== 'ESRCH') throw err
    if (!(await exists(`/proc/${pid}`))) throw noSuchProcess(pid)
    throw new TraceError(
      'INVALID_ARGUMENT',
      `process ${pid} has no ${path} (a kernel thread or a zombie); pass the pid of a running user-space process`,
      { cause: err },
    )
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  )
}

/**
 * The prefix that makes the paths in /proc/PID/{maps,exe} openable by us. The kernel prints them
 * relative to our root when it can reach the file from there, which it can whenever we share the
 * process's mount namespace (even if it is chrooted); from another namespace (a container) they
 * are relative to that namespace's root, which is the process's root (/proc/PID/root) in a container.
 */
async function hostPrefix(pid: number): Promise<string> {
  const [theirs, ours] = await Promise.all([readProc(pid, 'ns/mnt', (p) => stat(p)), stat('/proc/self/ns/mnt')])
  return theirs.dev === ours.dev && theirs.ino === ours.ino ? '' : `/proc/${pid}/root`
}

/** Distinct file-backed mappings of a process, in map order, as paths we can open. */
export async function mappedObjects(pid: number): Promise<string[]> {
  assertPid(pid)
  const maps = await readProc(pid, 'maps', (p) => readFile(p, 'utf8'))
  const prefix = await hostPrefix(pid)
  return [...new Set(parseMapPaths(maps))].map((path) => prefix + path)
}

function parseMapPaths(maps: string): string[] {
  const paths: string[] = []
  for (const line of maps.split('\n')) {
    // address perms offset dev inode path — the path may contain spaces.
    const m = /^\S+\s+\S+\s+\S+\s+\S+\s+(\d+)\s+(\/.*)$/.exec(line)
    if (m && m[1] !== '0' && !m[2]!.endsWith(' (deleted)')) paths.push(m[2]!)
  }
  return paths
}

/** The process's executable as a path we can open; /proc/PID/exe itself if the file was deleted. */
export async function executablePath(pid: number): Promise<string> {
  assertPid(pid)
  const target = await readProc(pid, 'exe', (p) => readlink(p))
  // A replaced binary (e.g. after a package upgrade) is still readable through the magic link.
  if (target.endsWith(' (deleted)')) return `/proc/${pid}/exe`
  return (await hostPrefix(pid)) + target
}

/** One file-backed mapping of a process, as /proc/PID/maps lists it. */
export interface Mapping {
  start: bigint
  end: bigint
  /** the offset in the file of the mapping's first byte */
  offset: bigint
  /** the file, as a path we can open */
  path: string
}

/** The file-backed mappings of a process, in address order. */
export async function mappings(pid: number): Promise<Mapping[]> {
  assertPid(pid)
  const maps = await readProc(pid, 'maps', (p) => readFile(p, 'utf8'))
  const prefix = await hostPrefix(pid)
  const found: Mapping[] = []
  for (const line of maps.split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+)\s+\S+\s+([0-9a-f]+)\s+\S+\s+(\d+)\s+(\/.*)$/.exec(line)
    if (!m || m[4] === '0' || m[5]!.endsWith(' (deleted)')) continue
    found.push({ start: BigInt(`0x${m[1]}`), end: BigInt(`0x${m[2]}`), offset: BigInt(`0x${m[3]}`), path: prefix + m[5]! })
  }
  return found
}
