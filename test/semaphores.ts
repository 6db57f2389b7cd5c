// Reads USDT semaphores straight out of a traced process's memory: the kernel's own record of
// which probes are attached, independent of anything usdtrace reports.
import { closeSync, openSync, readSync } from 'node:fs'
import { DEBIAN_PYTHON } from './fixtures/processes.js'
import { notes } from './fixtures/readelf.js'

/** Semaphore addresses of Debian's python3.11 (a non-PIE executable: file addresses are runtime addresses). */
export function pythonSemaphores(): Record<'entry' | 'return' | 'line', bigint> {
  const probes = notes(DEBIAN_PYTHON)
  const address = (name: string) => probes.find((p) => p.provider === 'python' && p.name === name)!.semaphore
  return { entry: address('function__entry'), return: address('function__return'), line: address('line') }
}

export function readSemaphore(pid: number, address: bigint): number {
  const fd = openSync(`/proc/${pid}/mem`, 'r')
  try {
    const value = Buffer.alloc(2)
    readSync(fd, value, 0, 2, Number(address))
    return value.readUInt16LE(0)
  } finally {
    closeSync(fd)
  }
}

export function readSemaphores(pid: number): Record<'entry' | 'return' | 'line', number> {
  const addresses = pythonSemaphores()
  return {
    entry: readSemaphore(pid, addresses.entry),
    return: readSemaphore(pid, addresses.return),
    line: readSemaphore(pid, addresses.line),
  }
}
