// Helpers for test/errors.test.ts and test/libpython.test.ts: build the C programs of this
// directory into a per-test tmp dir, copy an interpreter onto an inode of its own, and read the
// offsets the tests need from binutils' readelf (test/fixtures/readelf.ts, independent of src/process/elf.ts).
import { execFileSync } from 'node:child_process'
import { chmodSync, copyFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import type { SessionWith } from '../../src/kernel/binding.js'
import { codeOffset, dynamicEntry as readelfDynamicEntry, expectedProbes } from '../fixtures/readelf.js'

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

/** File offset of a code address, through readelf's executable LOAD segments. */
export function codeFileOffset(path: string, vaddr: bigint): bigint {
  const offset = codeOffset(path, vaddr)
  if (offset === undefined) throw new Error(`${path}: 0x${vaddr.toString(16)} is in no executable LOAD segment`)
  return offset
}

/** The value of a dynamic-section entry (FINI, INIT, ...) as `readelf -d` prints it. */
export function dynamicEntry(path: string, tag: string): bigint {
  const value = readelfDynamicEntry(path, tag)
  if (value === undefined) throw new Error(`${path} has no ${tag} dynamic entry`)
  return value
}

export interface ProbeOffsets {
  /** where a uprobe for the probe goes */
  fileOffset: bigint
  /** the kernel's ref_ctr_offset for its semaphore */
  semaphoreFileOffset: bigint
}

/** A USDT probe's file offsets, derived from readelf (see expectedProbes). */
export function probeOffsets(path: string, provider: string, name: string): ProbeOffsets {
  const probe = expectedProbes(path).find((p) => p.provider === provider && p.name === name)
  if (!probe) throw new Error(`${path} has no probe ${provider}:${name}`)
  return { fileOffset: probe.fileOffset, semaphoreFileOffset: probe.semaphoreFileOffset }
}

/** A uprobe of calls' empty hold_semaphore program at `fileOffset` of `path`, raising `refCtrOffset`. */
export function holdUprobe(session: SessionWith<'hold_semaphore'>, pid: number, path: string, fileOffset: bigint, refCtrOffset: bigint): void {
  session.attachUprobes('hold_semaphore', pid, path, [{ fileOffset, refCtrOffset, cookie: 0n }], false)
}

/**
 * Waits until a uprobe at `fileOffset` of `path` can be registered with `refCtrOffset`, i.e. until
 * the kernel has dropped every uprobe there with another ref_ctr_offset. Closing a BPF link only
 * schedules that: the kernel releases a perf-event link's uprobe after an RCU grace period and a
 * deferred fput, tens of milliseconds later. Probing leaves a uprobe with `refCtrOffset` itself
 * behind for as long, which conflicts with nothing that uses the same offset.
 */
export async function waitForUprobeSlot(
  session: SessionWith<'hold_semaphore'>,
  path: string,
  fileOffset: bigint,
  refCtrOffset: bigint,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      holdUprobe(session, -1, path, fileOffset, refCtrOffset)
      return
    } catch (error) {
      if ((error as { code?: string }).code !== 'EINVAL' || Date.now() > deadline) throw error
    }
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
