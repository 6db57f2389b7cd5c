/**
 * The agent's sampled profiles: stackProfile's snapshots (kernel sums per distinct stack, read
 * every --interval) added up per process until the pusher takes them, every --profile-interval.
 * Works for every CPython whose stacks can be read, probes or not.
 */
import { sampledProfile } from '../export/pprof.js'
import type { ProfiledStack, StackProfileSnapshot } from '../index.js'
import type { ProcessProfile, ProfileSource } from './profiles.js'

/** Distinct stacks one process can hold per push interval; samples of more are counted as lost. */
const MAX_STACKS_PER_PROCESS = 65536

interface ProcessStacks {
  startNs: bigint
  endNs: bigint
  stacks: Map<string, ProfiledStack>
}

export class SampledProfiles implements ProfileSource {
  readonly #hz: number
  readonly #offCpu: boolean
  readonly #onLost: (samples: number) => void
  #processes = new Map<number, ProcessStacks>()

  /** `onLost`: samples a full process profile could not place. */
  constructor(options: { hz: number; offCpu: boolean; onLost(samples: number): void }) {
    this.#hz = options.hz
    this.#offCpu = options.offCpu
    this.#onLost = options.onLost
  }

  add(snapshot: StackProfileSnapshot): void {
    let lost = 0
    for (const stack of snapshot.stacks) {
      let process = this.#processes.get(stack.pid)
      if (!process) {
        process = { startNs: snapshot.startNs, endNs: snapshot.endNs, stacks: new Map() }
        this.#processes.set(stack.pid, process)
      }
      process.endNs = snapshot.endNs
      // The snapshot already made each (pid, onCpu, frames) one entry; across snapshots they meet here.
      let key = stack.onCpu ? '+' : '-'
      for (const frame of stack.frames) key += `\n${frame.line}\0${frame.func}\0${frame.file}`
      const same = process.stacks.get(key)
      if (same) {
        same.samples += stack.samples
        same.offCpuNs += stack.offCpuNs
      } else if (process.stacks.size < MAX_STACKS_PER_PROCESS) {
        process.stacks.set(key, { ...stack })
      } else {
        lost += stack.samples
      }
    }
    if (lost > 0) this.#onLost(lost)
  }

  take(): ProcessProfile[] {
    const profiles: ProcessProfile[] = []
    for (const [pid, { startNs, endNs, stacks }] of this.#processes) {
      profiles.push({ pid, profile: sampledProfile(stacks.values(), { hz: this.#hz, offCpu: this.#offCpu, startNs, endNs }) })
    }
    this.#processes = new Map()
    return profiles
  }

  forgetProcess(pid: number): void {
    this.#processes.delete(pid)
  }
}
