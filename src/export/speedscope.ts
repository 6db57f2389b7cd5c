/**
 * speedscope's own file format (https://www.speedscope.app/file-format-schema.json): one evented
 * profile per thread, an open ('O') and a close ('C') event per call, times in nanoseconds.
 */
import type { CallTimeline } from './timeline.js'

export interface SpeedscopeFile {
  $schema: 'https://www.speedscope.app/file-format-schema.json'
  name: string
  exporter: string
  activeProfileIndex: number
  shared: { frames: { name: string; file: string; line: number }[] }
  profiles: SpeedscopeProfile[]
}

export interface SpeedscopeProfile {
  type: 'evented'
  name: string
  unit: 'nanoseconds'
  startValue: number
  endValue: number
  events: { type: 'O' | 'C'; frame: number; at: number }[]
}

export interface SpeedscopeOptions {
  /** The recording's name, shown as speedscope's title (default "usdtrace"). */
  name?: string
  /** Who made the file (default "usdtrace"). */
  exporter?: string
}

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
