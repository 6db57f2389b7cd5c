/**
 * A Prometheus histogram filled with whole buckets at once: the kernel hands over latency as
 * counts per power-of-two bucket ([2^k, 2^(k+1)) ns, bpf/usdtrace.h), which prom-client's own
 * Histogram could only take one observation at a time. The registry renders it like any
 * prom-client histogram; single observations (a GC pause) go into the same buckets.
 */
import { Histogram, type LabelValues, type Registry } from 'prom-client'

/** What prom-client's registry renders a metric from. */
interface Rendered {
  name: string
  help: string
  type: 'histogram'
  aggregator: 'sum'
  values: { labels: Record<string, string | number | undefined>; value: number; metricName: string }[]
}

/** The exposed upper bounds are 2^FIRST_EXP ns (about 1 µs) to 2^LAST_EXP ns (about 34 s). */
const FIRST_EXP = 10
const LAST_EXP = 35
const BOUNDS = Array.from({ length: LAST_EXP - FIRST_EXP + 1 }, (_, i) => 2 ** (FIRST_EXP + i) / 1e9)

interface Series<T extends string> {
  labels: LabelValues<T>
  /** Per bound, not cumulative; the last slot counts what lies above every bound. */
  counts: number[]
  sumSeconds: number
  count: number
}

/** Where log2 bucket k ([2^k, 2^(k+1)) ns) is counted: under the bound 2^(k+1) ns, or above them all. */
function slotOf(k: number): number {
  return Math.min(Math.max(0, k + 1 - FIRST_EXP), BOUNDS.length)
}

export class Log2Histogram<T extends string> extends Histogram<T> {
  #series = new Map<string, Series<T>>()
  readonly #name: string
  readonly #help: string
  readonly #labelNames: readonly T[]
  #select: () => (labels: LabelValues<T>) => boolean = () => () => true

  constructor(options: { name: string; help: string; labelNames: readonly T[]; registers: Registry[] }) {
    super({ ...options, buckets: BOUNDS })
    this.#name = options.name
    this.#help = options.help
    this.#labelNames = options.labelNames
  }

  /** One observation of `ns` nanoseconds. */
  observeNs(labels: LabelValues<T>, ns: number): void {
    const k = ns < 1 ? 0 : Math.floor(Math.log2(ns))
    const series = this.#get(labels)
    series.counts[slotOf(k)]!++
    series.sumSeconds += ns / 1e9
    series.count++
  }

  /** `buckets[k]` observations in [2^k, 2^(k+1)) ns, `sumNs` in all. */
  addBuckets(labels: LabelValues<T>, buckets: number[], sumNs: number): void {
    const series = this.#get(labels)
    buckets.forEach((count, k) => {
      series.counts[slotOf(k)]! += count
      series.count += count
    })
    series.sumSeconds += sumNs / 1e9
  }

  /** At each scrape, `select()` says which series to render (the others are kept). */
  showOnly(select: () => (labels: LabelValues<T>) => boolean): void {
    this.#select = select
  }

  /** Drops the series whose labels `drop` picks. */
  removeWhere(drop: (labels: LabelValues<T>) => boolean): void {
    for (const [key, series] of this.#series) if (drop(series.labels)) this.#series.delete(key)
  }

  /** What the registry renders: cumulative `_bucket`s with `le`, `_sum` and `_count` per series. */
  async getForPromString(): Promise<Rendered> {
    const values: Rendered['values'] = []
    const shown = this.#select()
    for (const series of this.#series.values()) {
      if (!shown(series.labels)) continue
      let cumulative = 0
      const bucket = (le: number | string, value: number) => {
        values.push({ labels: { ...series.labels, le }, value, metricName: `${this.#name}_bucket` })
      }
      for (let i = 0; i < BOUNDS.length; i++) bucket(BOUNDS[i]!, (cumulative += series.counts[i]!))
      bucket('+Inf', series.count)
      values.push({ labels: series.labels, value: series.sumSeconds, metricName: `${this.#name}_sum` })
      values.push({ labels: series.labels, value: series.count, metricName: `${this.#name}_count` })
    }
    return { name: this.#name, help: this.#help, type: 'histogram', values, aggregator: 'sum' }
  }

  override get(): ReturnType<Histogram<T>['get']> {
    // prom-client's types declare metric types as a numeric enum; at run time they are these strings.
    return this.getForPromString() as unknown as ReturnType<Histogram<T>['get']>
  }

  #get(labels: LabelValues<T>): Series<T> {
    const key = this.#labelNames.map((name) => String(labels[name] ?? '')).join('\0')
    let series = this.#series.get(key)
    if (!series) {
      series = { labels, counts: new Array<number>(BOUNDS.length + 1).fill(0), sumSeconds: 0, count: 0 }
      this.#series.set(key, series)
    }
    return series
  }
}
