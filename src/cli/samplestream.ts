/**
 * The loop the sampling subcommands share (record --sample, flame --sample): find or start the
 * targets (any CPython from 3.10 whose stacks can be read, probes or not), sample their stacks,
 * hand each sample to the subcommand until the run stops or every target has exited, and end with
 * a line saying what was seen and lost. The sampling options and their help live here too.
 */
import { sampleStacks, type StackSample } from '../index.js'
import { flag, integer, text, type OptionSpecs, type ParsedArgs } from './args.js'
import { UsageError } from './errors.js'
import { COSTS } from './costs.js'
import { count, type Run } from './run.js'
import { resolveTargets, type Targets } from './target.js'
import { processesTraced, traceAll, type TraceSetResult } from './traces.js'

/** The sampling library's default rate: an odd number, so that it does not beat with timers. */
const DEFAULT_HZ = 99

export const SAMPLE_OPTIONS = {
  sample: { type: 'boolean' },
  hz: { type: 'string' },
} as const satisfies OptionSpecs

export const OFF_CPU_OPTION = { 'off-cpu': { type: 'boolean' } } as const satisfies OptionSpecs

export const HZ_HELP = `      --hz N             samples per second of each CPU (default ${DEFAULT_HZ}, at most 10000)`
export const OFF_CPU_HELP = `      --off-cpu          also where threads wait: a thread's stack as it blocks (a lock, I/O,
                         a sleep), weighed by how long it waited`

/** What to sample, from the command line. */
export interface Sampling {
  hz: number
  offCpu: boolean
}

/** --hz and --off-cpu as given, for the commands that always sample (top). */
export function sampling(command: string, args: ParsedArgs, offCpu = flag(args.values, 'off-cpu')): Sampling {
  return { hz: integer(command, args.values, 'hz', DEFAULT_HZ), offCpu }
}

/**
 * --sample's settings, or undefined without it (then --hz, --off-cpu and --no-idle are mistakes);
 * `offCpu` where the command decides itself (flame). Samples weigh time, never calls.
 */
export function samplingOptions(command: string, args: ParsedArgs, offCpu?: boolean): Sampling | undefined {
  if (flag(args.values, 'sample')) {
    if (text(args.values, 'weight') === 'calls') throw new UsageError('--weight calls counts traced calls, which --sample does not see: samples weigh time', command)
    return sampling(command, args, offCpu)
  }
  const stray = ['hz', 'off-cpu', 'no-idle'].find((name) => args.values[name] !== undefined)
  if (stray !== undefined) throw new UsageError(`--${stray} is for sampled profiles: add --sample`, command)
  return undefined
}

/** Nanoseconds one on-CPU sample stands for. */
export function periodNs(settings: Sampling): number {
  return 1e9 / settings.hz
}

export interface SampleStreamResult extends TraceSetResult {
  targets: Targets
  samples: number
}

export async function streamSamples(command: string, run: Run, args: ParsedArgs, settings: Sampling, note: string, onSample: (sample: StackSample) => void): Promise<SampleStreamResult> {
  const targets = await resolveTargets(command, run, args, 'stacks')
  let samples = 0
  try {
    const bootstrap = targets.spawned?.bootstrapFile
    const result = await traceAll(
      run,
      targets,
      { open: (target) => sampleStacks({ ...target, ...settings }), what: 'stacks', notes: [note, `${settings.hz} Hz${settings.offCpu ? ', on and off CPU' : ''}`, COSTS.sampling] },
      (sample) => {
        // A started program runs under usdtrace's bootstrap: its frames are not the program's.
        if (bootstrap !== undefined) sample.frames = sample.frames.filter((frame) => frame.file !== bootstrap)
        samples++
        onSample(sample)
      },
    )
    return { ...result, targets, samples }
  } finally {
    await targets.settle(run)
  }
}

/** The final line's parts for a sampled run. */
export function sampleStreamSummary(run: Run, result: SampleStreamResult, extra: string[] = []): void {
  run.summary([`${count(result.samples, 'sample')} in ${run.elapsed()}`, `${count(result.lost, 'sample')} lost`, ...processesTraced(result.targets, result), ...extra])
}
