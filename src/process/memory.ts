/**
 * Reading a running process's memory without stopping it: pread(2) on /proc/PID/mem, which the
 * kernel allows to whoever may ptrace-read the process (root, or its owner). Used to check a
 * layout against the live interpreter and to read what no BPF program needs (thread names).
 */
import { closeSync, openSync, readSync } from 'node:fs'
import { noSuchProcess, processAccessDenied } from '../errors.js'

export class ProcessMemory {
  readonly #fd: number
  readonly #word = Buffer.alloc(8)

  constructor(readonly pid: number) {
    const path = `/proc/${pid}/mem`
    try {
      this.#fd = openSync(path, 'r')
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code === 'EACCES' || code === 'EPERM') throw processAccessDenied(pid, path, error)
      if (code === 'ENOENT' || code === 'ESRCH') throw noSuchProcess(pid)
      throw error
    }
  }

  /** `length` bytes at `address`, or undefined when any of them is not mapped. */
  read(address: bigint, length: number): Buffer | undefined {
    const buffer = Buffer.alloc(length)
    return this.#readInto(buffer, address) ? buffer : undefined
  }

  /** The 8-byte little-endian word at `address`, or undefined. */
  pointer(address: bigint): bigint | undefined {
    return this.#readInto(this.#word, address) ? this.#word.readBigUInt64LE(0) : undefined
  }

  close(): void {
    closeSync(this.#fd)
  }

  #readInto(buffer: Buffer, address: bigint): boolean {
    if (address <= 0n || address > BigInt(Number.MAX_SAFE_INTEGER)) return false
    try {
      return readSync(this.#fd, buffer, 0, buffer.length, Number(address)) === buffer.length
    } catch {
      // EIO: the range is not mapped.
      return false
    }
  }
}
