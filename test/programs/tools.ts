// Helpers for test/errors.test.ts and test/libpython.test.ts: build the C programs of this
// directory into a per-test tmp dir, copy an interpreter onto an inode of its own, and read the
// offsets the tests need from binutils' readelf (independent of src/elf.ts).
import { execFileSync } from 'node:child_process'
import { chmodSync, copyFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'

export const PROGRAMS = fileURLToPath(new URL('.', import.meta.url))

/** A fresh directory under the system tmp dir, removed when the test ends. */
export function tmpDir(t: Test, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `usdtrace-${prefix}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Runs gcc (g++ for .cc) on a source of test/programs with extra arguments; the binary goes to `output`. */
export function compile(source: string, output: string, args: string[] = []): string {
  execFileSync(source.endsWith('.cc') ? 'g++' : 'gcc', ['-O2', '-Wall', '-Werror', '-o', output, join(PROGRAMS, source), ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  return output
}

/**
 * A byte-identical copy of an executable in `dir`, under the same base name: a file with its own
 * inode, so uprobes (and their ref_ctr_offsets) placed on it touch no other test's processes.
 */
export function copyExecutable(source: string, dir: string, name: string): string {
  const copy = join(dir, name)
  copyFileSync(source, copy)
  chmodSync(copy, 0o755)
  return copy
}

function readelf(...args: string[]): string {
  return execFileSync('readelf', args, { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' }, maxBuffer: 64 << 20 })
}

const big = (hex: string) => BigInt(`0x${hex}`)

interface Section {
  name: string
  type: string
  addr: bigint
  offset: bigint
  size: bigint
}

interface LoadSegment {
  offset: bigint
  vaddr: bigint
  filesz: bigint
  executable: boolean
}

function sections(path: string): Section[] {
  const re = /^\s*\[\s*(\d+)\]\s+(\S+)\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)/
  return readelf('-S', '-W', path)
    .split('\n')
    .map((line) => re.exec(line))
    .filter((m): m is RegExpExecArray => m !== null && m[1] !== '0')
    .map((m) => ({ name: m[2]!, type: m[3]!, addr: big(m[4]!), offset: big(m[5]!), size: big(m[6]!) }))
}

function loadSegments(path: string): LoadSegment[] {
  const re = /^\s*LOAD\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+0x[0-9a-f]+\s+(.*?)\s+0x[0-9a-f]+$/
  return readelf('-l', '-W', path)
    .split('\n')
    .map((line) => re.exec(line))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ offset: big(m[1]!), vaddr: big(m[2]!), filesz: big(m[3]!), executable: m[4]!.includes('E') }))
}

/** File offset of a code address, through readelf's executable LOAD segments. */
export function codeFileOffset(path: string, vaddr: bigint): bigint {
  const seg = loadSegments(path).find((s) => s.executable && s.vaddr <= vaddr && vaddr < s.vaddr + s.filesz)
  if (!seg) throw new Error(`${path}: 0x${vaddr.toString(16)} is in no executable LOAD segment`)
  return vaddr - seg.vaddr + seg.offset
}

/** The value of a dynamic-section entry (FINI, INIT, ...) as `readelf -d` prints it. */
export function dynamicEntry(path: string, tag: string): bigint {
  const m = new RegExp(`\\(${tag}\\)\\s+0x([0-9a-f]+)`).exec(readelf('-d', path))
  if (!m) throw new Error(`${path} has no ${tag} dynamic entry`)
  return big(m[1]!)
}

export interface ProbeOffsets {
  /** where a uprobe for the probe goes */
  fileOffset: bigint
  /** the kernel's ref_ctr_offset for its semaphore */
  semaphoreFileOffset: bigint
}

/**
 * A USDT probe's file offsets from `readelf -n` (adjusted by .stapsdt.base as SystemTap does),
 * mapped through `readelf -l` (code) and `readelf -S` (the semaphore's section).
 */
export function probeOffsets(path: string, provider: string, name: string): ProbeOffsets {
  const re = /Provider: (\S+)\s+Name: (\S+)\s+Location: 0x([0-9a-f]+), Base: 0x([0-9a-f]+), Semaphore: 0x([0-9a-f]+)/g
  const note = [...readelf('-n', path).matchAll(re)].find((m) => m[1] === provider && m[2] === name)
  if (!note) throw new Error(`${path} has no probe ${provider}:${name}`)
  const secs = sections(path)
  const stapsdtBase = secs.find((s) => s.name === '.stapsdt.base')?.addr ?? 0n
  const noteBase = big(note[4]!)
  const shift = stapsdtBase !== 0n && noteBase !== 0n ? stapsdtBase - noteBase : 0n
  const semaphore = big(note[5]!) + shift
  const semSection = secs.find((s) => s.type !== 'NOBITS' && s.addr !== 0n && s.addr <= semaphore && semaphore < s.addr + s.size)
  if (!semSection) throw new Error(`${path}: the semaphore of ${provider}:${name} is in no section with file data`)
  return {
    fileOffset: codeFileOffset(path, big(note[3]!) + shift),
    semaphoreFileOffset: semaphore - semSection.addr + semSection.offset,
  }
}

/**
 * Waits until a uprobe at `fileOffset` of `path` can be registered with `refCtrOffset`, i.e. until
 * the kernel has dropped every uprobe there with another ref_ctr_offset. Closing a BPF link only
 * schedules that: the kernel releases a perf-event link's uprobe after an RCU grace period and a
 * deferred fput, tens of milliseconds later. Probing leaves a uprobe with `refCtrOffset` itself
 * behind for as long, which conflicts with nothing that uses the same offset.
 */
export async function waitForUprobeSlot(
  session: { attachUprobe(program: string, pid: number, path: string, offset: bigint, refCtr: bigint): void },
  path: string,
  fileOffset: bigint,
  refCtrOffset: bigint,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      session.attachUprobe('hold_semaphore', -1, path, fileOffset, refCtrOffset)
      return
    } catch (error) {
      if ((error as { code?: string }).code !== 'EINVAL' || Date.now() > deadline) throw error
    }
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
