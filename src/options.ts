import { TraceError } from './errors.js'

/**
 * Checking the options object a tracing function was given: a misspelt option would otherwise
 * be ignored silently and the trace would run with the default.
 */

/** What every target-taking function accepts (src/process/targets.ts). */
export const TARGET_OPTIONS = ['pid', 'pids', 'binary'] as const
/** What every ring-buffer stream accepts (src/streams/trace.ts). */
export const STREAM_OPTIONS = ['signal', 'ringBufferBytes'] as const

/** Throws INVALID_ARGUMENT naming the first option `fn` does not know, and listing those it does. */
export function checkOptions(fn: string, options: unknown, known: readonly string[]): void {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TraceError('INVALID_ARGUMENT', `${fn} takes a pid or an options object, got ${String(options)}`)
  }
  const unknown = Object.keys(options).find((key) => !known.includes(key))
  if (unknown !== undefined) {
    throw new TraceError(
      'INVALID_ARGUMENT',
      `${fn} has no option ${JSON.stringify(unknown)}; its options are ${known.join(', ')}`,
    )
  }
}

/** Merges the (pid, options) and (options) call forms into one options object. */
export function withPid<T extends object>(pidOrOptions: number | T, options: T | undefined): T | (T & { pid: number }) {
  return typeof pidOrOptions === 'number' ? { ...options, pid: pidOrOptions } as T & { pid: number } : pidOrOptions
}

/** A non-negative integer option as a bigint (number or bigint accepted), else INVALID_ARGUMENT. */
export function nonNegativeInteger(fn: string, name: string, value: number | bigint | undefined, fallback: bigint): bigint {
  if (value === undefined) return fallback
  if ((typeof value === 'bigint' && value >= 0n) || (Number.isSafeInteger(value) && (value as number) >= 0)) {
    return BigInt(value)
  }
  throw new TraceError('INVALID_ARGUMENT', `${fn}: ${name} must be a non-negative integer, got ${String(value)}`)
}
