/**
 * Slow Python calls as OpenTelemetry traces: a call that took at least the threshold becomes a
 * span, and the slow calls it made become its children, so a slow request shows up in Jaeger or
 * Tempo as a trace of where its time went. Spans are made with the OpenTelemetry SDK and sent by
 * its OTLP/HTTP protobuf exporter, through a queue of bounded size: a collector that is slow or
 * gone costs dropped spans, counted, never memory.
 */
import { ROOT_CONTEXT, trace, type HrTime } from '@opentelemetry/api'
import { ExportResultCode } from '@opentelemetry/core'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { BasicTracerProvider, type ReadableSpan, type Span, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace-base'
import { ATTR_CONTAINER_ID, ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions'
import type { CallEvent } from '../index.js'
import type { ProcessLabels } from './labels.js'
import type { AgentMetrics } from './metrics.js'

/**
 * Attribute names of the OpenTelemetry semantic conventions that Jaeger and Tempo show for code
 * and processes. The package keeps them in its `incubating` entry point, which the CommonJS build
 * cannot import, so they are named here.
 */
const ATTR_CODE_FUNCTION = 'code.function'
const ATTR_CODE_FILEPATH = 'code.filepath'
const ATTR_CODE_LINENO = 'code.lineno'
const ATTR_THREAD_ID = 'thread.id'
const ATTR_PROCESS_PID = 'process.pid'
const ATTR_PROCESS_EXECUTABLE_PATH = 'process.executable.path'

/** A slow call and the slow calls it made. */
export interface SlowCall {
  pid: number
  tid: number
  func: string
  file: string
  /** the function's first line, from its entry */
  line: number
  /** CLOCK_MONOTONIC */
  startNs: bigint
  durationNs: bigint
  children: SlowCall[]
  /** slow calls beyond MAX_CHILDREN, left out */
  droppedChildren: number
}

const MAX_CHILDREN = 128
/** Slow calls one thread holds while their callers run; past that the oldest go out as roots. */
const MAX_PENDING = 1024

interface ThreadCalls {
  pid: number
  /** first line of the open frame at each depth */
  lines: number[]
  /** slow calls whose caller has not returned yet, in the order they returned */
  pending: { call: SlowCall; depth: number; endNs: bigint }[]
}

/**
 * Builds the trees of slow calls from a thread's entries and returns. A slow call waits for its
 * caller: it becomes the caller's child if the caller is slow too (it is, unless its entry was
 * not traced), and goes out as the root of a trace when the caller returns untimed, at depth 0,
 * or when it has waited longer than `maxWaitNs` (a caller that never returns, such as a
 * server's loop).
 */
export class SlowCallTrees {
  readonly #thresholdNs: bigint
  readonly #maxWaitNs: bigint
  readonly #onTree: (root: SlowCall) => void
  readonly #threads = new Map<number, ThreadCalls>()

  constructor(options: { thresholdNs: bigint; maxWaitNs: bigint; onTree: (root: SlowCall) => void }) {
    this.#thresholdNs = options.thresholdNs
    this.#maxWaitNs = options.maxWaitNs
    this.#onTree = options.onTree
  }

  add(event: CallEvent): void {
    let thread = this.#threads.get(event.tid)
    if (!thread || thread.pid !== event.pid) {
      if (thread) this.#flush(thread, -1)
      thread = { pid: event.pid, lines: [], pending: [] }
      this.#threads.set(event.tid, thread)
    }
    if (event.kind === 'entry') {
      thread.lines[event.depth] = event.line
      return
    }
    const slow = event.durationNs !== undefined && event.durationNs >= this.#thresholdNs
    if (!slow) {
      this.#flush(thread, event.depth)
    } else {
      const children = this.#take(thread, event.depth)
      const call: SlowCall = {
        pid: event.pid,
        tid: event.tid,
        func: event.func,
        file: event.file,
        line: thread.lines[event.depth] ?? event.line,
        startNs: event.timestampNs - event.durationNs!,
        durationNs: event.durationNs!,
        children: children.slice(0, MAX_CHILDREN),
        droppedChildren: Math.max(0, children.length - MAX_CHILDREN),
      }
      if (event.depth === 0) this.#onTree(call)
      else {
        thread.pending.push({ call, depth: event.depth, endNs: event.timestampNs })
        if (thread.pending.length > MAX_PENDING) this.#onTree(thread.pending.shift()!.call)
      }
    }
    if (event.depth === 0 && thread.pending.length === 0) this.#threads.delete(event.tid)
  }

  /** Sends out as roots the slow calls that have waited for their caller since before `nowNs - maxWaitNs`. */
  expire(nowNs: bigint): void {
    for (const thread of this.#threads.values()) {
      while (thread.pending.length > 0 && thread.pending[0]!.endNs < nowNs - this.#maxWaitNs) this.#onTree(thread.pending.shift()!.call)
    }
  }

  /** A process that exited: its waiting slow calls go out as roots, and its threads are forgotten. */
  forgetProcess(pid: number): void {
    for (const [tid, thread] of this.#threads) {
      if (thread.pid !== pid) continue
      this.#flush(thread, -1)
      this.#threads.delete(tid)
    }
  }

  /** The waiting calls deeper than `depth`: the slow callees of the call at `depth` that just returned. */
  #take(thread: ThreadCalls, depth: number): SlowCall[] {
    const taken: SlowCall[] = []
    thread.pending = thread.pending.filter((waiting) => {
      if (waiting.depth <= depth) return true
      taken.push(waiting.call)
      return false
    })
    return taken
  }

  #flush(thread: ThreadCalls, depth: number): void {
    for (const call of this.#take(thread, depth)) this.#onTree(call)
  }
}

/**
 * Finished spans wait here for the exporter, at most `maxQueue` of them; one batch is in flight
 * at a time, and whatever the queue cannot hold or the exporter could not deliver is counted.
 */
class BoundedBatchProcessor implements SpanProcessor {
  readonly #exporter: SpanExporter
  readonly #metrics: AgentMetrics
  readonly #maxQueue: number
  readonly #batchSize: number
  #queue: ReadableSpan[] = []
  #inFlight: Promise<void> | undefined
  readonly #timer: NodeJS.Timeout

  constructor(exporter: SpanExporter, metrics: AgentMetrics, options: { maxQueue: number; batchSize: number; intervalMs: number }) {
    this.#exporter = exporter
    this.#metrics = metrics
    this.#maxQueue = options.maxQueue
    this.#batchSize = options.batchSize
    this.#timer = setInterval(() => void this.#exportNext(), options.intervalMs)
    this.#timer.unref()
  }

  onStart(): void {}

  onEnd(span: ReadableSpan): void {
    if (this.#queue.length >= this.#maxQueue) {
      this.#metrics.spans.inc({ outcome: 'dropped' })
      return
    }
    this.#queue.push(span)
    if (this.#queue.length >= this.#batchSize) void this.#exportNext()
  }

  async forceFlush(): Promise<void> {
    await this.#inFlight
    while (this.#queue.length > 0) await this.#exportNext()
  }

  async shutdown(): Promise<void> {
    clearInterval(this.#timer)
    await this.forceFlush()
    await this.#exporter.shutdown()
  }

  #exportNext(): Promise<void> {
    if (this.#inFlight || this.#queue.length === 0) return this.#inFlight ?? Promise.resolve()
    const batch = this.#queue.splice(0, this.#batchSize)
    this.#inFlight = new Promise<void>((resolve) => {
      this.#exporter.export(batch, (result) => {
        const ok = result.code === ExportResultCode.SUCCESS
        this.#metrics.spans.inc({ outcome: ok ? 'exported' : 'dropped' }, batch.length)
        this.#metrics.exports.inc({ exporter: 'otlp', outcome: ok ? 'ok' : 'failed' })
        resolve()
      })
    }).finally(() => {
      this.#inFlight = undefined
    })
    return this.#inFlight
  }
}

/** Turns slow-call trees into spans, one tracer (and resource) per traced process. */
export class SpanSender {
  readonly #processor: BoundedBatchProcessor
  readonly #providers = new Map<number, BasicTracerProvider>()
  /** CLOCK_MONOTONIC to Unix time, in ns. */
  #wallOffsetNs = 0n

  constructor(url: string, metrics: AgentMetrics) {
    const exporter = new OTLPTraceExporter({ url, timeoutMillis: 10_000 })
    this.#processor = new BoundedBatchProcessor(exporter, metrics, { maxQueue: 4096, batchSize: 512, intervalMs: 1000 })
  }

  send(root: SlowCall, labels: ProcessLabels): void {
    this.#wallOffsetNs = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint()
    const tracer = this.#provider(root.pid, labels).getTracer('usdtrace')
    const pending: { call: SlowCall; parent: Span | undefined }[] = [{ call: root, parent: undefined }]
    while (pending.length > 0) {
      const { call, parent } = pending.pop()!
      const context = parent ? trace.setSpan(ROOT_CONTEXT, parent) : ROOT_CONTEXT
      const span = tracer.startSpan(
        call.func,
        {
          startTime: this.#hrTime(call.startNs),
          attributes: {
            [ATTR_CODE_FUNCTION]: call.func,
            [ATTR_CODE_FILEPATH]: call.file,
            [ATTR_CODE_LINENO]: call.line,
            [ATTR_THREAD_ID]: call.tid,
            ...(call.droppedChildren > 0 && { 'usdtrace.dropped_children': call.droppedChildren }),
          },
        },
        context,
      ) as Span
      for (const child of call.children) pending.push({ call: child, parent: span })
      // Children first: a span must exist before it ends, and a parent's end does not wait for them.
      span.end(this.#hrTime(call.startNs + call.durationNs))
    }
  }

  /** A process that exited: its tracer goes, its spans already made stay queued. */
  forgetProcess(pid: number): void {
    this.#providers.delete(pid)
  }

  async shutdown(): Promise<void> {
    await this.#processor.shutdown()
  }

  #provider(pid: number, labels: ProcessLabels): BasicTracerProvider {
    let provider = this.#providers.get(pid)
    if (!provider) {
      const resource = resourceFromAttributes({
        [ATTR_SERVICE_NAME]: labels.service,
        [ATTR_PROCESS_PID]: pid,
        [ATTR_PROCESS_EXECUTABLE_PATH]: labels.executable,
        ...(labels.container && { [ATTR_CONTAINER_ID]: labels.container }),
      })
      provider = new BasicTracerProvider({ resource, spanProcessors: [this.#processor] })
      this.#providers.set(pid, provider)
    }
    return provider
  }

  #hrTime(monotonicNs: bigint): HrTime {
    const ns = monotonicNs + this.#wallOffsetNs
    return [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)]
  }
}
