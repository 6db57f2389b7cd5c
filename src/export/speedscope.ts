/**
 * speedscope's own file format (https://www.speedscope.app/file-format-schema.json): one evented
 * profile per thread, an open ('O') and a close ('C') event per call, times in nanoseconds.
 */
import type { CallTimeline } from './timeline.js'

/** A speedscope file: JSON.stringify it and open it in speedscope. */
export interface SpeedscopeFile {
  /** the format's schema, by which speedscope recognises the file */
  $schema: 'https://www.speedscope.app/file-format-schema.json'
  /** the recording's title */
  name: string
  /** the program that wrote the file */
  exporter: string
  /** the profile speedscope shows first: the thread with the most calls */
  activeProfileIndex: number
  /** what the profiles share */
  shared: {
    /** every function once; events refer to them by index */
    frames: {
      /** the function's name */
      name: string
      /** its file, as the interpreter reported it */
      file: string
      /** its first line */
      line: number
    }[]
  }
  /** one per thread */
  profiles: SpeedscopeProfile[]
}

/** One thread's calls as speedscope's evented profile. */
export interface SpeedscopeProfile {
  /** speedscope's profile kind for open/close events */
  type: 'evented'
  /** "pid N tid M" */
  name: string
  /** the unit of `at`, `startValue` and `endValue` */
  unit: 'nanoseconds'
  /** 0: times count from the timeline's start */
  startValue: number
  /** the timeline's last event */
  endValue: number
  /** an open and a close per call, in time order */
  events: {
    /** 'O' opens a frame (a call begins), 'C' closes it */
    type: 'O' | 'C'
    /** the index of the function in shared.frames */
    frame: number
    /** when, in `unit` since `startValue` */
    at: number
  }[]
}

/** What speedscopeFile() writes into the file's header. */
export interface SpeedscopeOptions {
  /** The recording's name, shown as speedscope's title (default "usdtrace"). */
  name?: string
  /** Who made the file (default "usdtrace"). */
  exporter?: string
}

/** The timeline as a speedscope file, one evented profile per thread. */
export function speedscopeFile(timeline: CallTimeline, options: SpeedscopeOptions = {}): SpeedscopeFile {
  const profiles = timeline.threads.map((thread): SpeedscopeProfile => {
    const events = new Array<SpeedscopeProfile['events'][number]>(thread.ops.length)
    for (let i = 0; i < thread.ops.length; i++) {
      const op = thread.ops[i]!
      events[i] = op >= 0 ? { type: 'O', frame: op, at: thread.times[i]! } : { type: 'C', frame: ~op, at: thread.times[i]! }
    }
    return {
      type: 'evented',
      name: `pid ${thread.pid} tid ${thread.tid}`,
      unit: 'nanoseconds',
      startValue: 0,
      endValue: timeline.endNs,
      events,
    }
  })
  // The busiest thread opens first.
  const activeProfileIndex = profiles.reduce((best, p, i) => (p.events.length > profiles[best]!.events.length ? i : best), 0)
  return {
    $schema: 'https://www.speedscope.app/file-format-schema.json',
    name: options.name ?? 'usdtrace',
    exporter: options.exporter ?? 'usdtrace',
    activeProfileIndex: profiles.length > 0 ? activeProfileIndex : 0,
    shared: { frames: timeline.frames.map((f) => ({ name: f.func, file: f.file, line: f.line })) },
    profiles,
  }
}
