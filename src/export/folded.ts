/**
 * Brendan Gregg's folded stacks (the input of flamegraph.pl, inferno, speedscope): one line per
 * distinct call path, `outer;inner;leaf weight`, outermost frame first. The weight is the path's
 * own time in ns (the default) or its number of calls.
 */
import { callTree, ownWeight, type StackWeight } from './calltree.js'
import { frameLabels, type CallTimeline, type FrameLabelOptions } from './timeline.js'

/** What foldedStacks() writes. */
export interface FoldedOptions extends FrameLabelOptions {
  /** a path's own time in ns ('time', the default) or its number of calls ('calls') */
  weight?: StackWeight
}

/** Lines sorted by path, each ending in a newline; paths whose weight is 0 are left out. */
export function foldedStacks(timeline: CallTimeline, options: FoldedOptions = {}): string {
  const weight = options.weight ?? 'time'
  // ';' separates frames; the weight is the last space-separated column, so labels keep their spaces.
  const labels = frameLabels(timeline, options).map((label) => label.replace(/[;\r\n]/g, '_'))
  const lines: string[] = []
  // Iterative: Python call paths can be deeper than JS recursion allows.
  const pending = callTree(timeline).children.map((node) => ({ node, path: labels[node.frame]! }))
  while (pending.length > 0) {
    const { node, path } = pending.pop()!
    const value = ownWeight(node, weight)
    if (value > 0) lines.push(`${path} ${value}`)
    for (const child of node.children) pending.push({ node: child, path: `${path};${labels[child.frame]}` })
  }
  return lines.sort().map((line) => `${line}\n`).join('')
}
