/**
 * The agent's profiles: per process and per interval, a WeightedProfile pushed as pprof to an
 * HTTP endpoint in the form of Pyroscope's /ingest. Where the profiles come from is a
 * ProfileSource: the call-time profiles built here from the call stream (calls and self time per
 * stack), and the sampled ones (samples.ts, from stackProfile).
 */
import { CALL_TIME_SAMPLE_TYPES, pprofProfile, wallClockNs, type ProfileFrame, type WeightedProfile, type WeightedStack } from '../export/pprof.js'
import type { CallEvent } from '../index.js'
import type { ProcessLabels } from './labels.js'
import type { AgentMetrics } from './metrics.js'

/** One process's profile over one interval. */
export interface ProcessProfile {
  pid: number
  profile: WeightedProfile
}

/** What the agent pushes: `take()` hands over what was gathered since the last take. */
export interface ProfileSource {
  take(): ProcessProfile[]
  forgetProcess(pid: number): void
}

/** Distinct stacks one process can hold per interval; calls on more are counted as dropped. */
const MAX_PATHS = 65536

interface PathNode {
  frame: ProfileFrame | undefined
  calls: number
  selfNs: bigint
  children: Map<string, PathNode>
}

interface OpenFrame {
  frame: ProfileFrame
  /** time spent in the traced calls it made so far */
  childNs: bigint
  /** its node in the current interval's tree, found once */
  node: PathNode | undefined
  generation: number
}

interface ProcessPaths {
  root: PathNode
  paths: number
  startNs: bigint
}

/**
 * Calls and self time per stack, from a call stream with entries. Each thread's open frames are
 * kept across intervals, so calls under a frame that began intervals ago (a server's loop) still
 * get their whole stack.
 */
export class CallTimeProfiles implements ProfileSource {
  readonly #threads = new Map<number, { pid: number; frames: OpenFrame[] }>()
  #processes = new Map<number, ProcessPaths>()
  #generation = 0
  #dropped = 0
  readonly #onDropped: (calls: number) => void

  constructor(onDropped: (calls: number) => void) {
    this.#onDropped = onDropped
  }

  add(event: CallEvent): void {
    let thread = this.#threads.get(event.tid)
    if (!thread || thread.pid !== event.pid) {
      thread = { pid: event.pid, frames: [] }
      this.#threads.set(event.tid, thread)
    }
    const { frames } = thread
    if (event.kind === 'entry') {
      // Frames left above this depth lost their return (lost events): they are over.
      frames.length = Math.min(frames.length, event.depth)
      frames.push({ frame: { func: event.func, file: event.file, line: event.line }, childNs: 0n, node: undefined, generation: -1 })
      return
    }
    if (event.durationNs === undefined || frames.length <= event.depth) {
      frames.length = Math.min(frames.length, event.depth)
      return
    }
    const node = this.#nodeOf(event.pid, frames, event.depth)
    if (node) {
      node.calls++
      node.selfNs += event.durationNs - frames[event.depth]!.childNs
    } else this.#dropped++
    if (event.depth > 0) frames[event.depth - 1]!.childNs += event.durationNs
    frames.length = event.depth
    if (event.depth === 0) this.#threads.delete(event.tid)
  }

  take(): ProcessProfile[] {
    const profiles: ProcessProfile[] = []
    const endNs = process.hrtime.bigint()
    for (const [pid, paths] of this.#processes) {
      profiles.push({ pid, profile: { sampleTypes: CALL_TIME_SAMPLE_TYPES, stacks: stacksOf(paths.root), timeNs: wallClockNs(paths.startNs), durationNs: endNs - paths.startNs } })
    }
    this.#processes = new Map()
    this.#generation++
    if (this.#dropped > 0) this.#onDropped(this.#dropped)
    this.#dropped = 0
    return profiles
  }

  forgetProcess(pid: number): void {
    for (const [tid, thread] of this.#threads) if (thread.pid === pid) this.#threads.delete(tid)
  }

  /** The node of the stack frames[0..depth] in this interval's tree; undefined when the tree is full. */
  #nodeOf(pid: number, frames: OpenFrame[], depth: number): PathNode | undefined {
    const open = frames[depth]!
    if (open.generation === this.#generation && open.node) return open.node
    let paths = this.#processes.get(pid)
    if (!paths) {
      paths = { root: { frame: undefined, calls: 0, selfNs: 0n, children: new Map() }, paths: 0, startNs: process.hrtime.bigint() }
      this.#processes.set(pid, paths)
    }
    const parent = depth === 0 ? paths.root : this.#nodeOf(pid, frames, depth - 1)
    if (!parent) return undefined
    const key = `${open.frame.line}\0${open.frame.func}\0${open.frame.file}`
    let node = parent.children.get(key)
    if (!node) {
      if (paths.paths >= MAX_PATHS) return undefined
      node = { frame: open.frame, calls: 0, selfNs: 0n, children: new Map() }
      parent.children.set(key, node)
      paths.paths++
    }
    open.node = node
    open.generation = this.#generation
    return node
  }
}

/** Every path with calls of its own, innermost frame first. */
function stacksOf(root: PathNode): WeightedStack[] {
  const stacks: WeightedStack[] = []
  const pending = [...root.children.values()].map((node) => ({ node, frames: [node.frame!] }))
  while (pending.length > 0) {
    const { node, frames } = pending.pop()!
    if (node.calls > 0) stacks.push({ frames, values: [node.calls, Number(node.selfNs)] })
    for (const child of node.children.values()) pending.push({ node: child, frames: [child.frame!, ...frames] })
  }
  return stacks
}

/**
 * Pushes each process's profile every interval, as Pyroscope's /ingest takes pprof: a
 * multipart form whose `profile` field is the gzipped profile.proto, and the query naming the
 * application (`service{pid=...,executable=...}`) and the interval. One round at a time: while
 * one is still under way, the next interval's calls and samples keep adding up in the sources.
 */
export class ProfilePusher {
  readonly #url: URL
  readonly #sources: ProfileSource[]
  readonly #labelsOf: (pid: number) => ProcessLabels | undefined
  readonly #metrics: AgentMetrics
  readonly #timer: NodeJS.Timeout
  #round: Promise<void> | undefined

  constructor(url: string, sources: ProfileSource[], labelsOf: (pid: number) => ProcessLabels | undefined, metrics: AgentMetrics, intervalMs: number) {
    this.#url = new URL(url)
    this.#sources = sources
    this.#labelsOf = labelsOf
    this.#metrics = metrics
    this.#timer = setInterval(() => void this.push(), intervalMs)
    this.#timer.unref()
  }

  /** Pushes what the sources hold now (unless a round is still under way). */
  push(): Promise<void> {
    this.#round ??= this.#pushAll(this.#sources.flatMap((source) => source.take())).finally(() => {
      this.#round = undefined
    })
    return this.#round
  }

  /** The last round, and one more with what was left. */
  async stop(): Promise<void> {
    clearInterval(this.#timer)
    await this.#round
    await this.push()
  }

  async #pushAll(profiles: ProcessProfile[]): Promise<void> {
    for (const { pid, profile } of profiles) {
      const labels = this.#labelsOf(pid)
      if (!labels || profile.stacks.length === 0) continue
      const ok = await this.#pushOne(profile, labels)
      this.#metrics.exports.inc({ exporter: 'pprof', outcome: ok ? 'ok' : 'failed' })
    }
  }

  async #pushOne(profile: WeightedProfile, labels: ProcessLabels): Promise<boolean> {
    const url = new URL(this.#url)
    const tags = Object.entries({ pid: labels.pid, executable: labels.executable, container: labels.container })
      .filter(([, value]) => value !== '')
      .map(([key, value]) => `${key}=${value.replace(/[{},=]/g, '_')}`)
    const fromSeconds = Number((profile.timeNs ?? 0n) / 1_000_000_000n)
    const untilSeconds = Number(((profile.timeNs ?? 0n) + (profile.durationNs ?? 0n)) / 1_000_000_000n)
    url.searchParams.set('name', `${labels.service}{${tags.join(',')}}`)
    url.searchParams.set('from', String(fromSeconds))
    url.searchParams.set('until', String(Math.max(untilSeconds, fromSeconds + 1)))
    url.searchParams.set('format', 'pprof')
    url.searchParams.set('spyName', 'usdtrace')
    const form = new FormData()
    form.set('profile', new Blob([new Uint8Array(pprofProfile(profile))]), 'profile.pb.gz')
    try {
      const response = await fetch(url, { method: 'POST', body: form, signal: AbortSignal.timeout(10_000) })
      await response.arrayBuffer()
      return response.ok
    } catch {
      return false
    }
  }
}
