/**
 * pprof's gzipped profile.proto (https://github.com/google/pprof/blob/main/proto/profile.proto),
 * what `go tool pprof`, Pyroscope and Parca read, encoded by pprof-format. The input is neutral:
 * distinct stacks of frames, each with its values (calls, time, samples), so call-time profiles
 * from a CallTimeline and sampled profiles feed the same encoder.
 */
import { gzipSync } from 'node:zlib'
import { Function as PprofFunction, Label, Line, Location, Profile, Sample, StringTable, ValueType } from 'pprof-format'
import type { ProfiledStack } from '../streams/stacks.js'
import { callTree } from './calltree.js'
import type { CallTimeline } from './timeline.js'

/** One frame of a profiled stack. */
export interface ProfileFrame {
  /** the function's name */
  func: string
  /** its source file */
  file: string
  /** its line (a function's first line, or where a sampled frame was) */
  line: number
}

/** What one of a stack's values measures, e.g. `{ type: 'calls', unit: 'count' }` (pprof's ValueType). */
export interface ProfileValueType {
  /** what is measured: `calls`, `samples`, `wall`, `cpu` */
  type: string
  /** its unit: `count`, `nanoseconds` */
  unit: string
}

/** One distinct stack and what was measured with it. */
export interface WeightedStack {
  /** Innermost first, as pprof orders a sample's locations. */
  frames: ProfileFrame[]
  /** One value per sample type of the profile, in the same order. */
  values: number[]
  /** pprof sample labels, e.g. `{ pid: 4242, thread: 'worker' }`: numbers become numeric labels. */
  labels?: Record<string, string | number>
}

/** A profile in usdtrace's neutral form, before it is encoded. */
export interface WeightedProfile {
  /** What each stack's values measure, in order; `go tool pprof` shows the last by default. */
  sampleTypes: ProfileValueType[]
  /** Every distinct stack, with its values. */
  stacks: WeightedStack[]
  /** When it began, in nanoseconds since the Unix epoch. */
  timeNs?: bigint
  /** How long it covers. */
  durationNs?: bigint
  /** For sampled profiles: what one sample stands for, e.g. 10,101,010 cpu nanoseconds at 99 Hz. */
  period?: {
    /** what a sample stands for, e.g. `{ type: 'cpu', unit: 'nanoseconds' }` */
    type: ProfileValueType
    /** how much of it */
    value: number
  }
}

/** The sample types of a call-time profile: calls, and the time spent in a stack's innermost frame. */
export const CALL_TIME_SAMPLE_TYPES: ProfileValueType[] = [
  { type: 'calls', unit: 'count' },
  { type: 'wall', unit: 'nanoseconds' },
]

/** What a sampled profile is read as, and at what rate its stacks were sampled. */
export interface SampledProfileOptions {
  /** samples per second of each CPU: a sample stands for 1/hz s of CPU time */
  hz: number
  /** waits were sampled too: a `wall` value adds them to the CPU time */
  offCpu: boolean
  /** the interval covered, on CLOCK_MONOTONIC (a StackProfileSnapshot's startNs and endNs) */
  startNs: bigint
  endNs: bigint
}

/**
 * The sample types of a sampled profile: the on-CPU samples, the CPU time they stand for, and
 * with waits sampled, wall time (CPU time and time waited), which `go tool pprof` then shows first.
 */
export function sampledSampleTypes(offCpu: boolean): ProfileValueType[] {
  return [{ type: 'samples', unit: 'count' }, { type: 'cpu', unit: 'nanoseconds' }, ...(offCpu ? [{ type: 'wall', unit: 'nanoseconds' }] : [])]
}

/**
 * Sampled stacks (stackProfile's) as a profile: an on-CPU stack's samples and their CPU time
 * (samples × the period); a waiting stack (offCpu) no samples and no CPU time, only what it waited.
 */
export function sampledProfile(stacks: Iterable<Pick<ProfiledStack, 'frames' | 'onCpu' | 'samples' | 'offCpuNs'>>, options: SampledProfileOptions): WeightedProfile {
  const periodNs = Math.round(1e9 / options.hz)
  const weighted: WeightedStack[] = []
  for (const stack of stacks) {
    const cpuNs = stack.onCpu ? stack.samples * periodNs : 0
    const values = stack.onCpu ? [stack.samples, cpuNs] : [0, 0]
    if (options.offCpu) values.push(cpuNs + (stack.onCpu ? 0 : Number(stack.offCpuNs)))
    weighted.push({ frames: stack.frames, values })
  }
  return {
    sampleTypes: sampledSampleTypes(options.offCpu),
    stacks: weighted,
    timeNs: wallClockNs(options.startNs),
    durationNs: options.endNs - options.startNs,
    period: { type: { type: 'cpu', unit: 'nanoseconds' }, value: periodNs },
  }
}

/** The profile gzipped as profile.proto: the bytes of a `.pb.gz` file. */
export function pprofProfile(profile: WeightedProfile): Buffer {
  const strings = new StringTable()
  const functions = new Map<string, PprofFunction>()
  const locations = new Map<string, Location>()
  const locationOf = (frame: ProfileFrame): Location => {
    const key = `${frame.line}\0${frame.func}\0${frame.file}`
    let location = locations.get(key)
    if (location) return location
    const functionKey = `${frame.func}\0${frame.file}`
    let fn = functions.get(functionKey)
    if (!fn) {
      fn = new PprofFunction({ id: functions.size + 1, name: strings.dedup(frame.func), systemName: strings.dedup(frame.func), filename: strings.dedup(frame.file) })
      functions.set(functionKey, fn)
    }
    location = new Location({ id: locations.size + 1, line: [new Line({ functionId: fn.id, line: frame.line })] })
    locations.set(key, location)
    return location
  }
  const valueType = (type: ProfileValueType) => new ValueType({ type: strings.dedup(type.type), unit: strings.dedup(type.unit) })
  const sampleType = profile.sampleTypes.map(valueType)
  const sample = profile.stacks.map((stack) => {
    if (stack.values.length !== profile.sampleTypes.length) {
      throw new Error(`pprofProfile: a stack has ${stack.values.length} values for ${profile.sampleTypes.length} sample types`)
    }
    return new Sample({
      locationId: stack.frames.map((frame) => locationOf(frame).id),
      value: stack.values,
      label: Object.entries(stack.labels ?? {}).map(([key, value]) =>
        typeof value === 'number'
          ? new Label({ key: strings.dedup(key), num: value })
          : new Label({ key: strings.dedup(key), str: strings.dedup(value) }),
      ),
    })
  })
  const encoded = new Profile({
    sampleType,
    sample,
    location: [...locations.values()],
    function: [...functions.values()],
    stringTable: strings,
    timeNanos: profile.timeNs ?? 0n,
    durationNanos: profile.durationNs ?? 0n,
    ...(profile.period && { periodType: valueType(profile.period.type), period: profile.period.value }),
  }).encode()
  return gzipSync(encoded)
}

/**
 * A recording's calls as a profile: one stack per distinct call path (over all threads), with
 * the calls whose whole stack it is and their own (self) time; `go tool pprof` then shows a
 * function's calls and self time as flat, and with its callees as cum.
 */
export function callTimeProfile(timeline: CallTimeline): WeightedProfile {
  const stacks: WeightedStack[] = []
  // Iterative: Python call paths can be deeper than JS recursion allows.
  const pending = callTree(timeline).children.map((node) => ({ node, frames: [timeline.frames[node.frame]!] }))
  while (pending.length > 0) {
    const { node, frames } = pending.pop()!
    if (node.calls > 0) stacks.push({ frames, values: [node.calls, node.selfNs] })
    for (const child of node.children) pending.push({ node: child, frames: [timeline.frames[child.frame]!, ...frames] })
  }
  const timeNs = timeline.startNs === undefined ? undefined : wallClockNs(timeline.startNs)
  return { sampleTypes: CALL_TIME_SAMPLE_TYPES, stacks, timeNs, durationNs: BigInt(timeline.endNs) }
}

/** A CLOCK_MONOTONIC time (the events') as nanoseconds since the Unix epoch, as pprof dates profiles. */
export function wallClockNs(monotonicNs: bigint): bigint {
  return BigInt(Date.now()) * 1_000_000n - (process.hrtime.bigint() - monotonicNs)
}
