/**
 * The processes that join a trace after it started, found by reading /proc a few times a
 * second (nothing in the kernel, nothing in the traced processes): the children of a started
 * program and theirs (strace -f), new matches of --name, and the replacement of a process that
 * exited: a new child of its parent with its command line, as a restarted worker is.
 */
import { readChildren, readProcess, readProcesses, uptimeTicks, CLOCK_TICKS_PER_SECOND, type ProcessInfo } from './procfs.js'

/** What makes a process join. */
export interface FollowRules {
  /** every descendant of this process */
  descendantsOf?: number
  /** new processes this test (--name's) matches, and why they join, e.g. "matches --name" */
  pattern?: (comm: string, argv: string[]) => boolean
  patternWhy?: string
  /** a new child of an exited process's parent, with the exited one's command line */
  replacements: boolean
}

/** A process that joined, and how long it ran before it was found. */
export interface Joined {
  pid: number
  /** its command line, for messages */
  command: string
  /** why it joined: "forked by 12", "replaces 13", "matches --name" */
  why: string
  /** how long it had run when it was found, in ms (to the /proc clock's 10 ms) */
  ageMs: number
}

interface Known {
  ppid: number
  argv: string
  gone: boolean
  /** the /proc clock when it was last seen running: its replacement starts later */
  seenTicks: number
  /** while it has none: its replacement is looked for a while after it exited */
  replaced: boolean
}

const POLL_MS = 200
/** How long after a process exited its replacement is looked for (gunicorn forks one within a second). */
const REPLACEMENT_WAIT_TICKS = 5 * CLOCK_TICKS_PER_SECOND
/** --name reads every process: less often. */
const NAME_POLL_MS = 1000

export class Follower {
  readonly #rules: FollowRules
  /** Every process met, running or not: pid → what it was. */
  readonly #known = new Map<number, Known>()
  #timer: NodeJS.Timeout | undefined
  #lastNameScan = 0
  #scanning: Promise<Joined[]> | undefined

  constructor(rules: FollowRules, pids: number[]) {
    this.#rules = rules
    for (const pid of pids) this.#known.set(pid, { ppid: 0, argv: '', gone: false, seenTicks: 0, replaced: false })
  }

  /** Starts looking: `onJoin` gets each process that joins, once. */
  start(onJoin: (joined: Joined) => void): void {
    const tick = () => {
      this.#timer = setTimeout(async () => {
        for (const joined of await this.scan()) onJoin(joined)
        if (this.#timer !== undefined) tick()
      }, POLL_MS)
      this.#timer.unref()
    }
    tick()
  }

  stop(): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
  }

  /** The processes met that still run. */
  alive(): number[] {
    return [...this.#known].filter(([, p]) => !p.gone).map(([pid]) => pid)
  }

  /** Looks once (or waits for the look under way): the processes that joined since the last. */
  scan(): Promise<Joined[]> {
    this.#scanning ??= this.#scan().finally(() => (this.#scanning = undefined))
    return this.#scanning
  }

  /** Reads the parent and command line of the processes given at the start: their replacements are known by them. */
  async remember(): Promise<void> {
    const now = await uptimeTicks()
    for (const [pid, known] of this.#known) {
      const info = await readProcess(pid)
      if (info) Object.assign(known, { ppid: info.ppid, argv: info.argv.join(' '), seenTicks: now })
    }
  }

  async #scan(): Promise<Joined[]> {
    const now = await uptimeTicks()
    const candidates = new Map<number, { info: ProcessInfo; why: string }>()
    const consider = async (pid: number, why: string, fits: (info: ProcessInfo) => boolean = () => true) => {
      if (this.#known.has(pid) || candidates.has(pid)) return
      const info = await readProcess(pid)
      if (info && info.state !== 'Z' && fits(info)) candidates.set(pid, { info, why })
    }
    for (const [pid, known] of this.#known) {
      if (!known.gone) {
        const info = await readProcess(pid)
        if (info !== undefined && info.state !== 'Z') {
          known.seenTicks = now
          if (this.#rules.descendantsOf !== undefined) for (const child of await readChildren(pid)) await consider(child, `forked by ${pid}`)
          continue
        }
        known.gone = true
      }
      // A replacement: forked by its parent after it was last seen, running what it ran.
      if (this.#rules.replacements && !known.replaced && known.ppid > 1 && now - known.seenTicks < REPLACEMENT_WAIT_TICKS) {
        for (const child of await readChildren(known.ppid)) {
          await consider(child, `replaces ${pid}`, (info) => info.startTicks >= known.seenTicks - 1 && info.argv.join(' ') === known.argv)
          if (candidates.get(child)?.why === `replaces ${pid}`) {
            known.replaced = true
            break
          }
        }
      }
    }
    if (this.#rules.pattern && performance.now() - this.#lastNameScan >= NAME_POLL_MS) {
      this.#lastNameScan = performance.now()
      for (const info of (await readProcesses()).values()) {
        if (!this.#known.has(info.pid) && !info.kernelThread && this.#rules.pattern(info.comm, info.argv)) candidates.set(info.pid, { info, why: this.#rules.patternWhy ?? 'matches --name' })
      }
    }
    const joined: Joined[] = []
    for (const [pid, { info, why }] of candidates) {
      const argv = info.argv.join(' ')
      this.#known.set(pid, { ppid: info.ppid, argv, gone: false, seenTicks: now, replaced: false })
      joined.push({ pid, command: argv || info.comm, why, ageMs: Math.max(0, ((now - info.startTicks) * 1000) / CLOCK_TICKS_PER_SECOND) })
    }
    return joined.sort((a, b) => a.pid - b.pid)
  }
}
