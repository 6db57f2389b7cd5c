/**
 * `--stacks`: the Python stack under each event of syscalls, libcalls and gc, the question people
 * ask strace and ltrace and they cannot answer: which Python code made this call.
 */
import { shortenPath, type StackFrame } from '../index.js'
import type { OptionSpecs } from './args.js'
import type { Run } from './run.js'

export const STACKS_OPTION = { stacks: { type: 'boolean' } } as const satisfies OptionSpecs

export const STACKS_HELP = `      --stacks           under each event, the Python stack of the thread that made it
                         (any CPython from 3.10, probes or not); costs a stack walk per event`

/** A frame as every command prints it: `func (file:line)`, the file shortened unless `fullPaths`. */
export function frameText(frame: StackFrame, cwd: string, fullPaths = false): string {
  return `${frame.func} (${fullPaths ? frame.file : shortenPath(frame.file, cwd)}:${frame.line})`
}

/** The stack's frames as lines under an event, innermost first, indented past the event's columns. */
export function printStack(run: Run, stack: StackFrame[] | undefined, indent: number): void {
  if (!stack) return
  const cwd = process.cwd()
  for (const frame of stack) run.out.line(run.out.paint('dim', `${' '.repeat(indent)}${frameText(frame, cwd)}`))
}

/** The stack as --json gives it: frames innermost first, or null without one. */
export function jsonStack(stack: StackFrame[] | undefined): { file: string; func: string; line: number }[] | null {
  return stack ? stack.map(({ file, func, line }) => ({ file, func, line })) : null
}
