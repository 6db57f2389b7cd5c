/**
 * Command-line parsing on node:util's parseArgs, with the options every subcommand takes and the
 * value checks that turn a bad value into a UsageError naming the option and what it wants.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { UsageError } from './errors.js'

export type OptionSpecs = NonNullable<ParseArgsConfig['options']>

/** Taken by every subcommand. */
export const COMMON_OPTIONS = {
  json: { type: 'boolean' },
  debug: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies OptionSpecs

export type OptionValues = Record<string, string | boolean | string[] | boolean[] | undefined>

export interface ParsedArgs {
  values: OptionValues
  /** positionals before a `--` */
  positionals: string[]
  /** everything after a `--`, untouched (a command to spawn), or undefined without `--` */
  command: string[] | undefined
}

export function parse(command: string, argv: string[], options: OptionSpecs): ParsedArgs {
  let parsed
  try {
    parsed = parseArgs({ args: argv, options: { ...COMMON_OPTIONS, ...options }, allowPositionals: true, strict: true, tokens: true })
  } catch (error) {
    throw new UsageError(parseArgsMessage(error, argv, options), command)
  }
  const terminator = parsed.tokens.find((token) => token.kind === 'option-terminator')
  const positionals = parsed.tokens
    .filter((token) => token.kind === 'positional' && (terminator === undefined || token.index < terminator.index))
    .map((token) => (token as { value: string }).value)
  return {
    values: parsed.values as OptionValues,
    positionals,
    command: terminator === undefined ? undefined : argv.slice(terminator.index + 1),
  }
}

/** parseArgs' messages in the words of the options: what is wrong and how to write it. */
function parseArgsMessage(error: unknown, argv: string[], options: OptionSpecs): string {
  const message = error instanceof Error ? error.message : String(error)
  // "Option '-d' argument is ambiguous. Did you forget ...": a value that starts with '-'.
  const ambiguous = /^Option '(-\w|--[\w-]+)' argument is ambiguous/.exec(message)
  if (ambiguous) {
    const given = ambiguous[1]!
    const value = argv[argv.indexOf(given) + 1] ?? ''
    return `${given} needs a value, and '${value}' looks like an option; a value starting with '-' is written ${longName(given, options)}=${value}`
  }
  // "Option '-d, --duration <value>' argument missing"
  const missing = /^Option '(?:-\w, )?(--[\w-]+) <value>' argument missing/.exec(message)
  if (missing) return `${missing[1]} needs a value`
  // "Unknown option '--x'. To specify a positional argument starting with a '-', ..." → the first sentence
  return message.split('. ')[0]!.replace(/\.$/, '').replace(/^Unknown option/, 'unknown option')
}

function longName(option: string, options: OptionSpecs): string {
  if (option.startsWith('--')) return option
  const specs: OptionSpecs = { ...COMMON_OPTIONS, ...options }
  const name = Object.entries(specs).find(([, spec]) => spec.short === option.slice(1))?.[0]
  return name === undefined ? option : `--${name}`
}

export function flag(values: OptionValues, name: string): boolean {
  return values[name] === true
}

export function text(values: OptionValues, name: string): string | undefined {
  const value = values[name]
  return typeof value === 'string' ? value : undefined
}

/** An option that must be a whole number ≥ `min`. */
export function integer(command: string, values: OptionValues, name: string, fallback: number, min = 1): number {
  const value = text(values, name)
  if (value === undefined) return fallback
  if (!/^\d+$/.test(value) || Number(value) < min) {
    throw new UsageError(`--${name} takes a whole number of at least ${min}, got '${value}'`, command)
  }
  return Number(value)
}

const SECONDS = /^(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h|d)?$/
const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 }

/** A time span in seconds, as long as wanted: `5`, `2.5`, `500ms`, `10s`, `2m`, `1h`, `30d`. */
export function seconds(command: string, values: OptionValues, name: string): number | undefined {
  const value = text(values, name)
  if (value === undefined) return undefined
  const m = SECONDS.exec(value)
  const result = m ? Number(m[1]) * UNIT_SECONDS[m[2] ?? 's']! : NaN
  if (!(result > 0 && Number.isFinite(result))) {
    throw new UsageError(`--${name} takes a time in seconds (e.g. 5, 0.5, 500ms, 2m, 1h, 30d), got '${value}'`, command)
  }
  return result
}

const DURATION = /^(\d+(?:\.\d+)?|\.\d+)(ns|us|µs|ms|s|m|h)$/
const UNIT_NS: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 }

/** A span of time with its unit (`5ms`, `200us`, `1.5s`), in nanoseconds. */
export function duration(command: string, values: OptionValues, name: string): bigint | undefined {
  const value = text(values, name)
  if (value === undefined) return undefined
  const m = DURATION.exec(value)
  if (!m) throw new UsageError(`--${name} takes a time with its unit (e.g. 5ms, 200us, 1.5s), got '${value}'`, command)
  return BigInt(Math.round(Number(m[1]) * UNIT_NS[m[2]!]!))
}

/** A positional pid: a positive integer. */
export function pid(command: string, value: string): number {
  if (!/^\d+$/.test(value) || Number(value) <= 0 || !Number.isSafeInteger(Number(value))) {
    throw new UsageError(`'${value}' is not a process id: give the pid of a running process (see \`usdtrace ps\`)`, command)
  }
  return Number(value)
}

/** One of a fixed set of words. */
export function choice<T extends string>(command: string, values: OptionValues, name: string, choices: readonly T[], fallback: T): T {
  const value = text(values, name)
  if (value === undefined) return fallback
  if (!(choices as readonly string[]).includes(value)) {
    throw new UsageError(`--${name} takes one of ${choices.join(', ')}, got '${value}'`, command)
  }
  return value as T
}
