/**
 * Where the CLI writes: results to stdout (buffered into few writes, colour only on a terminal
 * and without NO_COLOR, a closed pipe noticed as soon as its reader goes, and everything after
 * it dropped), and status to stderr (a transient line on a terminal while attaching, then plain
 * `usdtrace: ...` lines).
 */
import { binding } from '../kernel/binding.js'

const ANSI = {
  bold: '1',
  dim: '2',
  red: '31',
  green: '32',
  yellow: '33',
  blue: '34',
  magenta: '35',
  cyan: '36',
} as const

export type Style = keyof typeof ANSI

/** Colour for a stream: only a terminal, and never with NO_COLOR set (https://no-color.org) or TERM=dumb. */
export function colorFor(stream: NodeJS.WriteStream): boolean {
  const noColor = process.env.NO_COLOR
  return stream.isTTY === true && (noColor === undefined || noColor === '') && process.env.TERM !== 'dumb'
}

export class Painter {
  constructor(readonly enabled: boolean) {}

  paint(style: Style, text: string): string {
    return this.enabled && text !== '' ? `\x1b[${ANSI[style]}m${text}\x1b[0m` : text
  }
}

const FLUSH_BYTES = 64 << 10

export class Output {
  readonly painter: Painter
  readonly isTTY: boolean
  #stream: NodeJS.WriteStream
  #pending: string[] = []
  #pendingBytes = 0
  #scheduled = false
  #closed = false
  #onClosed: (() => void) | undefined

  constructor(stream: NodeJS.WriteStream = process.stdout) {
    this.#stream = stream
    this.isTTY = stream.isTTY === true
    this.painter = new Painter(colorFor(stream))
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE') throw error
      this.#closeReader()
    })
    // Not only at the next write: a filter that matches nothing writes nothing, for hours.
    const fd = (stream as { fd?: number }).fd
    if (fd !== undefined) binding.watchReaderGone(fd, () => this.#closeReader())
  }

  /** Called once when the reader goes away (`| head` exits): the command should stop. */
  onClosed(callback: () => void): void {
    this.#onClosed = callback
  }

  get closed(): boolean {
    return this.#closed
  }

  paint(style: Style, text: string): string {
    return this.painter.paint(style, text)
  }

  /** Queues a line; lines go out in large writes, at the latest on the next turn of the event loop. */
  line(text = ''): void {
    if (this.#closed) return
    this.#pending.push(text, '\n')
    this.#pendingBytes += text.length + 1
    if (this.#pendingBytes >= FLUSH_BYTES) this.flush()
    else if (!this.#scheduled) {
      this.#scheduled = true
      setImmediate(() => {
        this.#scheduled = false
        this.flush()
      })
    }
  }

  json(value: unknown): void {
    this.line(JSON.stringify(value))
  }

  flush(): void {
    if (this.#pending.length === 0 || this.#closed) return
    const chunk = this.#pending.join('')
    this.#pending = []
    this.#pendingBytes = 0
    try {
      this.#stream.write(chunk)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EPIPE') throw error
      this.#closeReader()
    }
  }

  /** Resolves once everything written so far has reached the kernel (or the reader is gone). */
  async drain(): Promise<void> {
    this.flush()
    if (this.#closed || this.#stream.writableLength === 0) return
    await new Promise<void>((resolve) => {
      const done = () => {
        this.#stream.off('drain', done)
        this.#stream.off('error', done)
        resolve()
      }
      this.#stream.once('drain', done)
      this.#stream.once('error', done)
    })
  }

  #closeReader(): void {
    if (this.#closed) return
    this.#closed = true
    this.#pending = []
    this.#onClosed?.()
  }
}

/** Status on stderr: progress that replaces itself on a terminal, notes that stay. */
export class Status {
  readonly painter: Painter
  #stream: NodeJS.WriteStream
  #transient = false
  #beforeWrite: () => void

  /** `beforeWrite` runs before each line: e.g. flushing stdout, so both streams stay in order. */
  constructor(beforeWrite: () => void = () => {}, stream: NodeJS.WriteStream = process.stderr) {
    this.#beforeWrite = beforeWrite
    this.#stream = stream
    this.painter = new Painter(colorFor(stream))
    // A closed stderr must not end the trace: status is a courtesy.
    stream.on('error', () => {})
  }

  /** A line that the next status output replaces; shown on a terminal only. */
  progress(text: string): void {
    if (this.#stream.isTTY !== true) return
    this.#stream.write(`\r\x1b[2K${this.painter.paint('dim', `usdtrace: ${text}`)}`)
    this.#transient = true
  }

  note(text: string): void {
    this.#beforeWrite()
    this.clear()
    this.#stream.write(`${this.painter.paint('dim', `usdtrace: ${text}`)}\n`)
  }

  error(text: string): void {
    this.#beforeWrite()
    this.clear()
    this.#stream.write(`${this.painter.paint('red', 'usdtrace:')} ${text}\n`)
  }

  raw(text: string): void {
    this.clear()
    this.#stream.write(text.endsWith('\n') ? text : `${text}\n`)
  }

  clear(): void {
    if (!this.#transient) return
    this.#stream.write('\r\x1b[2K')
    this.#transient = false
  }
}
