import { cpus } from 'node:os'
import type { NativeSession } from '../kernel/binding.js'
import { TraceError } from '../errors.js'
import { ColumnStore, chosenColumns, type BatchOptions, type BatchReader, type ColumnBuffer, type ColumnName, type ColumnSource, type Selected } from './batch.js'

/** Decodes one ring-buffer record that starts at `offset` of the batch; undefined for a record that is not an event. */
export type RecordDecoder<T> = (view: DataView, bytes: Buffer, offset: number, length: number) => T | undefined

/** Options every trace takes. */
export interface StreamOptions {
  /** Aborting detaches every probe; a pending or later `next()` rejects with an AbortError. */
  signal?: AbortSignal
  /** Size of the kernel ring buffer: a power of two, at least one page (default 8 MiB). */
  ringBufferBytes?: number
}

/**
 * A summary read from a session's maps instead of records from its ring: every `intervalMs`
 * (Infinity: never), and once more, `final`, when every traced process has exited. A summary
 * stream may still have a ring for what its reads need to know (names): its decoder takes each
 * batch as it arrives and yields nothing.
 */
export interface Sampler<T> {
  intervalMs: number
  read(final: boolean): Promise<T>
}

/** An attached session, ready to stream, and the processes whose exit ends it. */
export interface OpenedSession<T = never> {
  session: NativeSession
  exitPids: number[]
  /** For summaries: the trace yields what this reads rather than decoded records. */
  sampler?: Sampler<T>
}

const DEFAULT_RING_BUFFER_BYTES = 8 << 20
const PAGE_SIZE = 4096

/** The ring buffer's size from the options, checked: the kernel takes a power-of-two page multiple. */
export function ringBufferBytes(options: StreamOptions): number {
  const bytes = options.ringBufferBytes ?? DEFAULT_RING_BUFFER_BYTES
  if (!Number.isInteger(bytes) || bytes < PAGE_SIZE || (bytes & (bytes - 1)) !== 0) {
    throw new TraceError(
      'INVALID_ARGUMENT',
      `ringBufferBytes must be a power of two of at least ${PAGE_SIZE}, got ${String(bytes)}`,
    )
  }
  return bytes
}

/** The `events` ring buffer's size and wakeup threshold for a session, from the options, checked. */
export function ringBufferSettings(options: StreamOptions): {
  maxEntries: { events: number }
  constants: { wakeup_bytes: number }
} {
  const bytes = ringBufferBytes(options)
  // Wake the reader early enough that a burst cannot fill the ring before the timer drains it:
  // each CPU counts what it sends (bpf/ringbuf.bpf.h), so all of them together wake it by 1/8.
  return { maxEntries: { events: bytes }, constants: { wakeup_bytes: Math.max(1, Math.floor(bytes / 8 / cpus().length)) } }
}

// One JS call per batch; a record is at most a few KiB, so a batch holds hundreds to thousands.
// Batches stay raw until the consumer takes their events, so an event is made only when it is
// wanted and is garbage young; small batches keep the records being read in the CPU's caches.
const BATCH_BYTES = 1 << 16
// Batches waiting to be read, at most: past that the addon stops draining and the kernel's ring
// holds the records (when it fills, the BPF side drops and counts every drop in `lost`).
const MAX_BATCHES = 16
// The same bound for `batches()`, whose deliveries are some 16 times larger (src/streams/batch.ts).
const MAX_COLUMN_BATCHES = 4
// Buffers lent to the addon at once: while it fills one, the next waits, so that its fill
// thread goes on from one to the next without waiting for the event loop.
const LENT_BUFFERS = 2
const FLUSH_INTERVAL_MS = 5
// Events handed out without a turn of the event loop: a consumer that keeps up with a flood
// would otherwise run on microtasks alone and starve timers and I/O.
const EVENTS_PER_TURN = 4096
// The same for `batches()`, in rows: a row costs a consumer a few ns, an event some 100.
const ROWS_PER_TURN = 1 << 16

function abortError(signal: AbortSignal): Error {
  return Object.assign(new Error('The operation was aborted', { cause: signal.reason }), {
    name: 'AbortError',
    code: 'ABORT_ERR',
  })
}

/** The error for a trace read both ways: each trace is consumed as events or as batches. */
function mixedConsumers(taken: 'events' | 'batches'): TraceError {
  return new TraceError(
    'ALREADY_CONSUMED',
    taken === 'events'
      ? 'this trace is read as events (for await of the trace, or next()); batches() takes a trace of its own: start another trace for batches'
      : 'this trace is read through batches(); its events come in those batches only: start another trace to iterate events',
  )
}

/**
 * A live trace: an async iterator over decoded events or, through `batches()`, over batches of
 * them in columns (`B`, whose columns are named `C`). It ends when the traced process exits,
 * and `break`, `close()` or the abort signal detach every probe and free every kernel object.
 */
export class Trace<T, B = unknown, C extends string = ColumnName<B>> implements AsyncIterableIterator<T> {
  /** Resolves once every probe is attached; rejects with the TraceError that prevented it. */
  readonly ready: Promise<void>

  /** Kept once the trace ends: a closed session still fills columns from raw deliveries. */
  #session: NativeSession | undefined
  #decode: RecordDecoder<T> | null
  #batchReader: (() => BatchReader<Record<string, ColumnSource>, B>) | undefined
  /** Set by `batches()`: where the addon fills columns, and what reads them. */
  #store: ColumnStore<Record<string, ColumnSource>, B> | undefined
  /** The buffer of the batch the consumer holds: refilled once it asks for the next. */
  #lent: Batch | undefined
  /** How the trace is read, once it is: one way only. */
  #consumer: 'events' | 'batches' | undefined
  #batchIterator: AsyncIterableIterator<B> | undefined
  #signal: AbortSignal | undefined
  #onAbort = () => {
    this.#discardQueued()
    this.#finish(abortError(this.#signal!))
  }

  /** Filled batches not read to their end yet, oldest first. */
  #pending: Batch[] = []
  /** The batches lent to the addon to fill; none while every batch is pending. */
  #filling: Batch[] = []
  #spare: Batch[] = []
  /** A summary trace's items, from its sampler. */
  #summaries: T[] = []
  #servedThisTurn = 0

  #waiter: { resolve(result: IteratorResult<any>): void; reject(error: unknown): void; take(): unknown } | undefined
  #done = false
  #error: unknown
  #lost = 0n
  #detached: Promise<void> = Promise.resolve()
  #deliveries = 0
  #sampleTimer: NodeJS.Timeout | undefined
  #sampling: Promise<void> = Promise.resolve()
  /** A summary's ring only informs its reads: each batch is decoded as it arrives. */
  #informsSampler = false

  /**
   * @internal Traces come from functions like `traceCalls`. `decode` is null for a summary, whose
   * session has no ring and whose items come from its sampler; `batchReader` makes what reads
   * records as columns for `batches()`, on streams that have them.
   */
  constructor(
    open: () => Promise<OpenedSession<T>>,
    decode: RecordDecoder<T> | null,
    options: StreamOptions = {},
    batchReader?: () => BatchReader<any, B>,
  ) {
    this.#decode = decode
    this.#batchReader = batchReader
    this.#signal = options.signal
    this.ready = this.#start(open)
    // The same failure reaches the iterator; an unobserved `ready` must not crash the process.
    this.ready.catch(() => {})
  }

  /** Events the kernel side could not deliver so far: full ring buffer, exhausted maps. */
  get lost(): number {
    if (this.#session && !this.#done) this.#lost = sumDropped(this.#session.counters())
    return Number(this.#lost)
  }

  /**
   * Values `batches()` delivered without a name so far: first seen once their id table was full
   * (the stream's `maxIds`), each `UNNAMED_ID` in its id column. 0 for events, which carry names.
   */
  get unnamed(): number {
    return this.#store?.reader.unnamed?.() ?? 0
  }

  /** Deliveries from the addon so far: each is one call, carrying a batch of many records. */
  get deliveries(): number {
    return this.#deliveries
  }

  /**
   * The trace as batches of events in typed-array columns (a `CallBatch` for calls), one batch
   * per delivery from the addon: no object per event. `lost`, `ready`, the end on the target's
   * exit, `break`, `close()` and the abort signal work as for events. A trace is read either
   * this way or as events: the other way throws a TraceError (`ALREADY_CONSUMED`).
   *
   * `columns` chooses the columns filled (default: all); the others are undefined. The first
   * call chooses for the trace: a later one returns the same iterator, and one that chooses
   * other columns throws a TraceError (`INVALID_ARGUMENT`).
   */
  batches(): AsyncIterableIterator<B>
  batches<K extends C>(options?: BatchOptions<K>): AsyncIterableIterator<Selected<B, K>>
  batches(options?: BatchOptions): AsyncIterableIterator<unknown> {
    if (!this.#batchReader) {
      throw new TraceError('INVALID_ARGUMENT', 'this stream has no batches(): iterate its events with for await instead')
    }
    if (this.#consumer === 'events') throw mixedConsumers('events')
    if (this.#batchIterator) {
      const chosen = chosenColumns(options, Object.keys(this.#store!.reader.layout.columns))
      const list = (names: readonly string[]) => names.join(', ') || 'none'
      if (chosen && list(chosen) !== list(this.#store!.columns)) {
        throw new TraceError(
          'INVALID_ARGUMENT',
          `this trace's columns were chosen by its first batches() call (${list(this.#store!.columns)}), not ${list(chosen)}: ` +
            'call batches() without options for its batches, or start another trace for other columns',
        )
      }
    } else {
      // A stream may refuse batches for its options (it throws the TraceError that says why).
      const store = new ColumnStore(this.#batchReader(), options)
      this.#consumer = 'batches'
      this.#store = store
      if (this.#session) this.#useColumns(this.#session, store)
      this.#batchIterator = {
        [Symbol.asyncIterator]() {
          return this
        },
        next: () => this.#read(() => this.#takeBatch(store)),
        return: () => this.return() as Promise<IteratorResult<never>>,
      }
    }
    return this.#batchIterator
  }

  /** The trace is its own iterator: `for await (const event of trace)`. */
  [Symbol.asyncIterator](): this {
    return this
  }

  /** The next event; done once the trace ended, rejected with the error that ended it. */
  next(): Promise<IteratorResult<T>> {
    if (this.#consumer === 'batches') return Promise.reject(mixedConsumers('batches'))
    this.#consumer = 'events'
    return this.#read(this.#takeEvent)
  }

  #takeEvent = (): T | undefined => {
    const event = this.#take()
    if (event !== undefined) this.#servedThisTurn++
    return event
  }

  /**
   * The next item `take` makes of what is queued (an event, a batch), or a wait for one. Past a
   * turn's share, it waits for the next turn of the event loop, so that timers and I/O run.
   */
  #read<V>(take: () => V | undefined): Promise<IteratorResult<V>> {
    if (this.#hasItems() && this.#servedThisTurn > (this.#consumer === 'batches' ? ROWS_PER_TURN : EVENTS_PER_TURN)) {
      return new Promise((resolve) =>
        setImmediate(() => {
          this.#servedThisTurn = 0
          resolve(this.#read(take))
        }),
      )
    }
    if (this.#hasItems()) {
      const value = take()
      if (value !== undefined) return Promise.resolve({ done: false, value })
    }
    if (this.#error !== undefined) return Promise.reject(this.#error)
    if (this.#done) return Promise.resolve({ done: true, value: undefined })
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject, take }
    })
  }

  /** What `break` out of `for await` calls: closes the trace. */
  async return(): Promise<IteratorResult<T>> {
    await this.close()
    return { done: true, value: undefined }
  }

  /**
   * Stops the stream at once (events not yet taken are discarded) and resolves when every probe
   * is detached: the kernel waits a grace period per uprobe, so that happens off the event loop.
   */
  async close(): Promise<void> {
    this.#discardQueued()
    this.#finish()
    await this.ready.catch(() => {})
    await this.#detached
  }

  async #start(open: () => Promise<OpenedSession<T>>): Promise<void> {
    if (this.#signal?.aborted) throw this.#finish(abortError(this.#signal))
    this.#signal?.addEventListener('abort', this.#onAbort, { once: true })
    let opened: OpenedSession<T>
    try {
      opened = await open()
    } catch (error) {
      throw this.#finish(error)
    }
    if (this.#done) {
      this.#detached = opened.session.close()
      return
    }
    this.#session = opened.session
    const sampler = opened.sampler
    this.#informsSampler = sampler !== undefined && this.#decode !== null
    // Before start: the buffers it is lent then are column buffers already.
    if (this.#store) this.#session.useColumns(this.#store.native)
    this.#filling = Array.from({ length: LENT_BUFFERS }, () => this.#newBatch())
    this.#session.start({
      batches: this.#filling.map((batch) => batch.buffer),
      exitPids: opened.exitPids,
      flushIntervalMs: FLUSH_INTERVAL_MS,
      onBatch: (buffer, bytesOrRows, count, sideRecords) => this.#onBatch(buffer, bytesOrRows, count, sideRecords),
      onDelivered: () => this.#wake(),
      onEnd: sampler ? () => this.#sample(sampler, true) : () => this.#finish(),
    })
    if (sampler) this.#scheduleSample(sampler, performance.now() + sampler.intervalMs)
  }

  /** Samples at fixed times from the start; a read that overruns its interval skips the ticks it covered. */
  #scheduleSample(sampler: Sampler<T>, at: number): void {
    if (!Number.isFinite(at)) return
    this.#sampleTimer = setTimeout(() => {
      this.#sample(sampler, false)
      void this.#sampling.then(() => {
        if (this.#done) return
        let next = at + sampler.intervalMs
        while (next <= performance.now()) next += sampler.intervalMs
        this.#scheduleSample(sampler, next)
      })
    }, Math.max(0, at - performance.now()))
  }

  /** Reads one summary after any read still running; the final one ends the stream. */
  #sample(sampler: Sampler<T>, final: boolean): void {
    this.#sampling = this.#sampling.then(async () => {
      if (this.#done) return
      try {
        const item = await sampler.read(final)
        if (!this.#done) {
          this.#summaries.push(item)
          this.#wake()
        }
        if (final) this.#finish()
      } catch (error) {
        // A read that a close() cut short has nothing to report.
        if (!this.#done) this.#finish(error)
      }
    })
  }

  /**
   * The addon fills columns into every buffer lent from now on. The raw buffers it holds (maybe
   * being filled on its thread) are delivered raw, and raw deliveries are refilled as columns
   * when the consumer reaches them; spare raw buffers have no further use. Column buffers are
   * lent at once, so the addon fills while the loop reads what came raw (a trace paused on a
   * backlog has none lent).
   */
  #useColumns(session: NativeSession, store: ColumnStore<Record<string, ColumnSource>, B>): void {
    session.useColumns(store.native)
    this.#spare = []
    while (this.#filling.length < LENT_BUFFERS && !this.#done) this.#lend(session, this.#newBatch())
  }

  #lend(session: NativeSession, batch: Batch): void {
    this.#filling.push(batch)
    session.lend(batch.buffer)
  }

  /**
   * Takes the batch the addon filled in `buffer`: raw records (`bytesOrRows` bytes of `count`
   * records), or columns (`bytesOrRows` rows, then `count` bytes of `sideRecords` side records).
   * Returns a buffer to lend in its place, none while every other one is pending. The reader is
   * woken by onDelivered, once the addon has gone on with its next fills.
   */
  #onBatch(buffer: Uint8Array, bytesOrRows: number, count: number, sideRecords?: number): Uint8Array | undefined {
    this.#deliveries++
    this.#servedThisTurn = 0
    // The addon lends again at the back a buffer that came back empty: found by identity, not order.
    const batch = this.#filling.splice(
      this.#filling.findIndex((lent) => lent.buffer === buffer),
      1,
    )[0]!
    if (batch.columns) {
      batch.records = bytesOrRows
      batch.end = count
      batch.sideRecords = sideRecords!
    } else {
      batch.end = bytesOrRows
      batch.records = count
    }
    if (this.#informsSampler) {
      this.#inform(batch)
      this.#filling.push(batch)
      return batch.buffer
    }
    this.#pending.push(batch)
    // With no spare, every batch made so far is pending or lent: those lent count toward the
    // bound, as they are filled whether or not the consumer reads.
    const bound = this.#store ? MAX_COLUMN_BATCHES : MAX_BATCHES
    const next = this.#spare.pop() ?? (this.#pending.length + this.#filling.length < bound ? this.#newBatch() : undefined)
    if (next) this.#filling.push(next)
    return next?.buffer
  }

  /** Decodes every record of a summary's batch now: they only inform its reads. */
  #inform(batch: Batch): void {
    for (let at = 0; at < batch.end; at += 4 + batch.view.getUint32(at, true)) {
      try {
        this.#decode!(batch.view, batch.bytes, at + 4, batch.view.getUint32(at, true))
      } catch (error) {
        this.#finish(error)
        return
      }
    }
  }

  #newBatch(): Batch {
    if (this.#store) return { ...this.#store.newBuffer(), at: 0, end: 0, records: 0, sideRecords: 0 }
    const buffer = new Uint8Array(BATCH_BYTES)
    return { buffer, view: new DataView(buffer.buffer), bytes: Buffer.from(buffer.buffer), at: 0, end: 0, records: 0, sideRecords: 0 }
  }

  #hasItems(): boolean {
    return this.#pending.length > 0 || this.#summaries.length > 0
  }

  /** Hands the next item to a waiting `next()`, if there is one to hand. */
  #wake(): void {
    if (!this.#waiter || !this.#hasItems()) return
    const value = this.#waiter.take()
    if (value === undefined) return
    const waiter = this.#waiter
    this.#waiter = undefined
    waiter.resolve({ done: false, value })
  }

  /**
   * The next item: a summary, or the next record that decodes to an event (the others, such as
   * the names calls refer to, only inform the decoder). Undefined when the batches run out
   * first; a record that cannot be decoded ends the trace with that error.
   */
  #take(): T | undefined {
    if (this.#summaries.length > 0) return this.#summaries.shift()
    while (this.#pending.length > 0) {
      const batch = this.#pending[0]!
      while (batch.records > 0) {
        const length = batch.view.getUint32(batch.at, true)
        const offset = batch.at + 4
        batch.at = offset + length
        batch.records--
        let event: T | undefined
        try {
          event = this.#decode!(batch.view, batch.bytes, offset, length)
        } catch (error) {
          this.#discardQueued()
          this.#finish(error)
          return undefined
        }
        if (event !== undefined) return event
      }
      if (batch.at !== batch.end) throw new Error(`usdtrace: batch of ${batch.end} bytes decoded as ${batch.at}`)
      this.#pending.shift()
      this.#recycle(batch)
    }
    return undefined
  }

  /**
   * The next delivery as one batch of rows; undefined when the deliveries run out first. The
   * batch handed out before is done with: its buffer goes back to the addon. A record that
   * cannot be decoded ends the trace with that error.
   */
  #takeBatch(store: ColumnStore<Record<string, ColumnSource>, B>): B | undefined {
    if (this.#lent) this.#recycle(this.#lent)
    this.#lent = undefined
    while (this.#pending.length > 0) {
      let delivery: Batch
      let batch: B
      try {
        delivery = this.#pending[0]!.columns ? this.#pending.shift()! : this.#refilled()
        batch = store.batch(delivery as Batch & ColumnBuffer<Record<string, ColumnSource>>, delivery.records, delivery.end, delivery.sideRecords)
      } catch (error) {
        this.#discardQueued()
        this.#finish(error)
        return undefined
      }
      if (delivery.records === 0) {
        this.#recycle(delivery)
        continue
      }
      this.#lent = delivery
      this.#servedThisTurn += delivery.records
      return batch
    }
    return undefined
  }

  /**
   * The raw deliveries at the head of the queue, made before `batches()` was called, filled into
   * one buffer of columns by the same layout, as many as it holds: a raw delivery is some 16
   * times smaller. One that does not fit whole stays first in line, read up to where it stopped.
   */
  #refilled(): Batch {
    const filled = this.#spare.pop() ?? this.#newBatch()
    const counts = new Uint32Array(3)
    while (this.#pending.length > 0 && !this.#pending[0]!.columns) {
      const raw = this.#pending[0]!
      const from = raw.at
      raw.at = this.#session!.decodeColumns(raw.buffer, raw.at, raw.end, filled.buffer, counts)
      if (raw.at < raw.end) {
        // An empty buffer takes a record or counts it undecodable (native/columns.cc): were it
        // to take none, this delivery would be refilled forever.
        if (raw.at === from && counts[0] === 0 && counts[2] === 0) throw new Error(`usdtrace: a raw record at ${from} fits no column buffer`)
        break
      }
      this.#pending.shift()
    }
    ;[filled.records, filled.end, filled.sideRecords] = counts
    return filled
  }

  /** A read batch is lent to the addon if it has fewer than it takes, else goes to the spares. */
  #recycle(batch: Batch): void {
    // A raw buffer, made before the trace was known to be read as batches, has no further use.
    if (this.#store && !batch.columns) return
    batch.at = 0
    if (this.#filling.length < LENT_BUFFERS && this.#session && !this.#done) {
      this.#lend(this.#session, batch)
    } else {
      this.#spare.push(batch)
    }
  }

  /** Drops what was not taken; only ever followed by the end of the trace. */
  #discardQueued(): void {
    this.#pending = []
    this.#summaries = []
  }

  /** Ends the stream once: releases the session and settles a waiting `next()`. */
  #finish(error?: unknown): unknown {
    if (this.#done) return error
    this.#done = true
    this.#error = error
    this.#signal?.removeEventListener('abort', this.#onAbort)
    clearTimeout(this.#sampleTimer)
    if (this.#session) {
      this.#lost = sumDropped(this.#session.counters())
      this.#detached = this.#session.close()
    }
    const waiter = this.#waiter
    this.#waiter = undefined
    if (waiter && error !== undefined) waiter.reject(error)
    else if (waiter) waiter.resolve({ done: true, value: undefined })
    return error
  }
}

/**
 * A buffer the addon fills and the trace reads: records ([u32 length][record], repeated, to
 * `end`), or, where it has `columns`, rows of columns (`records` rows, and `sideRecords` side
 * records in `end` bytes; src/streams/batch.ts).
 */
interface Batch {
  buffer: Uint8Array
  view: DataView
  bytes: Buffer
  /** The next record's offset, while the trace reads it. */
  at: number
  end: number
  /** Records not read yet. */
  records: number
  columns?: unknown
  sideRecords: number
}

/** Everything the kernel side could not deliver or count: the sum of its `dropped_*` counters. */
export function sumDropped(counters: Record<string, bigint>): bigint {
  let dropped = 0n
  for (const [name, value] of Object.entries(counters)) if (name.startsWith('dropped_')) dropped += value
  return dropped
}
