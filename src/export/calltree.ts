/**
 * A timeline's calls merged by stack: one node per distinct call path (over all threads), with
 * how often that path was called and the time spent in it. Folded stacks and the flame graph
 * are drawn from it.
 */
import type { CallTimeline } from './timeline.js'

/** One distinct call path: the frames from the outermost down to this one. */
export interface CallTreeNode {
  /** index into timeline.frames; -1 for the root */
  frame: number
  /** calls whose whole stack is this path */
  calls: number
  /** inclusive time of those calls, ns */
  totalNs: number
  /** totalNs minus the children's totalNs */
  selfNs: number
  /** calls of this path and of every path below it */
  subtreeCalls: number
  /** the paths one call deeper, in the order first seen */
  children: CallTreeNode[]
}

/** What a folded line or a flame graph box measures: time (self ns) or calls. */
export type StackWeight = 'time' | 'calls'

/** The timeline's calls merged by path over all threads; the root (frame -1) holds the outermost calls. */
export function callTree(timeline: CallTimeline): CallTreeNode {
  const root = node(-1)
  const index = new Map<CallTreeNode, Map<number, CallTreeNode>>()
  const childOf = (parent: CallTreeNode, frame: number): CallTreeNode => {
    let byFrame = index.get(parent)
    if (byFrame === undefined) index.set(parent, (byFrame = new Map()))
    let child = byFrame.get(frame)
    if (child === undefined) {
      child = node(frame)
      byFrame.set(frame, child)
      parent.children.push(child)
    }
    return child
  }
  for (const thread of timeline.threads) {
    const stack: CallTreeNode[] = [root]
    const opened: number[] = []
    for (let i = 0; i < thread.ops.length; i++) {
      const op = thread.ops[i]!
      if (op >= 0) {
        const child = childOf(stack[stack.length - 1]!, op)
        child.calls++
        stack.push(child)
        opened.push(thread.times[i]!)
      } else {
        stack.pop()!.totalNs += thread.times[i]! - opened.pop()!
      }
    }
  }
  for (const child of root.children) root.totalNs += child.totalNs
  computeTotals(root)
  return root
}

function node(frame: number): CallTreeNode {
  return { frame, calls: 0, totalNs: 0, selfNs: 0, subtreeCalls: 0, children: [] }
}

/** selfNs and subtreeCalls, children before parents (iteratively: recursion can be deep). */
function computeTotals(root: CallTreeNode): void {
  const preorder: CallTreeNode[] = []
  const pending = [root]
  while (pending.length > 0) {
    const current = pending.pop()!
    preorder.push(current)
    pending.push(...current.children)
  }
  for (let i = preorder.length - 1; i >= 0; i--) {
    const current = preorder[i]!
    let childrenNs = 0
    current.subtreeCalls = current.calls
    for (const child of current.children) {
      childrenNs += child.totalNs
      current.subtreeCalls += child.subtreeCalls
    }
    current.selfNs = current.totalNs - childrenNs
  }
}

/** The node's own share of `weight`: what a folded line carries for its path. */
export function ownWeight(node: CallTreeNode, weight: StackWeight): number {
  return weight === 'calls' ? node.calls : node.selfNs
}

/** The node's share including its descendants: what a flame graph box's width stands for. */
export function inclusiveWeight(node: CallTreeNode, weight: StackWeight): number {
  return weight === 'calls' ? node.subtreeCalls : node.totalNs
}
