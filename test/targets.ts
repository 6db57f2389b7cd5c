// The Python programs the call tests trace: test/targets/workloads.py under Debian's python3.11.
import { once } from 'node:events'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import { TraceError, traceCalls, type CallTrace } from '../src/index.js'
import { DEBIAN_PYTHON, startReady } from './fixtures/processes.js'

export const WORKLOADS = fileURLToPath(new URL('targets/workloads.py', import.meta.url))

/**
 * Writes package `pkg` under `dir` for the import_package workload: its __init__ imports
 * `pkg.alpha` and `pkg.beta` (one line each), then runs `then`.
 */
export function writeImportPackage(dir: string, pkg: string, then = ''): void {
  mkdirSync(join(dir, pkg))
  writeFileSync(join(dir, pkg, '__init__.py'), `import ${pkg}.alpha\nimport ${pkg}.beta\n${then}`)
  writeFileSync(join(dir, pkg, 'alpha.py'), 'VALUE = 1\n')
  writeFileSync(join(dir, pkg, 'beta.py'), 'VALUE = 2\n')
}

export type Target = Awaited<ReturnType<typeof startReady>> & { go(): void }

/** Starts a workload that waits for `go()` before running, so nothing races the attach. */
export async function startWorkload(t: Test, args: string[], python = DEBIAN_PYTHON): Promise<Target> {
  const child = await startReady(t, python, [WORKLOADS, ...args])
  return Object.assign(child, { go: () => void child.stdin!.write('go\n') })
}

/**
 * The `unique` workload, traced and going: `count` functions made and freed in turn. `reused`
 * resolves, once the target's output has ended, to how often a name string took the address
 * of an earlier, freed one: what makes the test of names and ids worth its run.
 */
export async function traceUniqueFunctions(t: Test, count: number): Promise<{ trace: CallTrace; reused: Promise<number> }> {
  const target = await startWorkload(t, ['unique', String(count)])
  let output = ''
  target.stdout!.on('data', (chunk: Buffer) => (output += chunk))
  const reused = once(target.stdout!, 'end').then(() => Number(/^reused (\d+)$/m.exec(output)?.[1]))
  const trace = traceCalls(target.pid)
  await trace.ready
  target.go()
  return { trace, reused }
}

/** Every event until the trace ends (the target exits). */
export async function collect<T>(trace: AsyncIterable<T>): Promise<T[]> {
  const events: T[] = []
  for await (const event of trace) events.push(event)
  return events
}

/** F(n) by iteration: the test's own arithmetic, independent of the traced program. */
export function fibonacci(n: number): number {
  let [a, b] = [0, 1]
  for (let i = 0; i < n; i++) [a, b] = [b, a + b]
  return a
}

/**
 * The TraceError a trace's `ready` rejects with; throws (failing the test) on anything else, and
 * with `t` asserts it as well.
 */
export async function rejection(trace: { ready: Promise<void>; close(): Promise<void> }, t?: Test): Promise<TraceError> {
  const error = await trace.ready.then(
    () => new Error('trace.ready resolved, but a TraceError was expected'),
    (e: unknown) => e,
  )
  await trace.close()
  if (!(error instanceof TraceError)) throw error
  t?.type(error, TraceError, 'a TraceError')
  return error
}
