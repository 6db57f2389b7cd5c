/**
 * Where record and flame write: a file opened before tracing starts (so a bad path fails before
 * anything is attached, not after a long recording), or stdout for "-".
 */
import { closeSync, existsSync, fstatSync, openSync, unlinkSync, writeSync } from 'node:fs'
import { CliError } from './errors.js'
import type { Run } from './run.js'

const CHUNK_BYTES = 256 << 10

export class OutputFile {
  readonly name: string
  #run: Run
  #fd: number | undefined
  #pending: (string | Uint8Array)[] = []
  #pendingBytes = 0

  readonly #path: string
  /** The file did not exist before: only then may a failed trace remove it (never /dev/null, nor a user's file). */
  #created = false

  constructor(run: Run, file: string) {
    this.#run = run
    this.#path = file
    this.name = file === '-' ? 'stdout' : file
    if (file === '-') return
    try {
      this.#created = !existsSync(file)
      this.#fd = openSync(file, 'w')
    } catch (error) {
      throw new CliError(`cannot write ${file}: ${(error as Error).message}; choose another -o path`, { cause: error })
    }
  }

  /** Appends text (lines ending in newlines), or bytes (a binary format such as pprof). */
  write(text: string | Uint8Array): void {
    if (typeof text !== 'string') return this.#writeBytes(text)
    if (this.#fd === undefined) {
      for (const line of text.split('\n').slice(0, text.endsWith('\n') ? -1 : undefined)) this.#run.out.line(line)
      return
    }
    this.#pending.push(text)
    this.#pendingBytes += text.length
    if (this.#pendingBytes >= CHUNK_BYTES) this.#flush()
  }

  async close(): Promise<void> {
    if (this.#fd === undefined) return this.#run.out.drain()
    this.#flush()
    closeSync(this.#fd)
    this.#fd = undefined
  }

  /** Closes the file, and removes it if this run created it: nothing was recorded (the trace failed). */
  discard(): void {
    if (this.#fd === undefined) return
    const regular = fstatSync(this.#fd).isFile()
    closeSync(this.#fd)
    this.#fd = undefined
    if (this.#created && regular) unlinkSync(this.#path)
  }

  #writeBytes(bytes: Uint8Array): void {
    if (this.#fd === undefined) {
      this.#run.out.flush()
      process.stdout.write(bytes)
      return
    }
    this.#pending.push(bytes)
    this.#pendingBytes += bytes.length
    if (this.#pendingBytes >= CHUNK_BYTES) this.#flush()
  }

  #flush(): void {
    const buffer = Buffer.concat(this.#pending.map((part) => (typeof part === 'string' ? Buffer.from(part) : part)))
    this.#pending = []
    this.#pendingBytes = 0
    let offset = 0
    while (offset < buffer.length) offset += writeSync(this.#fd!, buffer, offset)
  }
}
