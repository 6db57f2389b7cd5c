/**
 * What tracing costs the traced program, in the words the commands print: the figures of
 * bench/cli-cost.js (bench/RESULTS.md, "What the commands cost"), CPU time of the target
 * measured inside it, one run on the development machine; sampling's in words, which that
 * benchmark does not measure (bench/sampling.js compares samplers). One home for every message.
 */

/** Stack sampling answers "where does the time go" at next to no cost: where to point. */
const SAMPLING = 'to see where time goes, stack sampling (usdtrace top, record --sample) costs next to nothing'

export const COSTS = {
  /** calls (counts), stat: a uprobe trap at every Python return. */
  callsCount:
    'every Python return traps into the kernel: measured 6 µs of CPU per call here, ' +
    `a Flask route 15x slower, fib() 155x; ${SAMPLING}`,
  /** calls -L, flow, record, flame: entries too, and on 3.11 the line semaphore. */
  callsLatency:
    'every Python call and return trap into the kernel (on CPython 3.11 with the line semaphore raised): ' +
    `measured 13-15 µs of CPU per call here, a Flask route 32x slower, fib() 355x; ${SAMPLING}`,
  /** What a filter saves: only the printing. */
  filters: 'filters cut output, not cost: a flow that prints nothing measured as slow as one that prints every call (33x on a Flask route)',
  /** top, record --sample, flame --sample: perf samples, and with --off-cpu a program at each context switch. */
  sampling:
    'next to nothing per call: nothing runs at the calls, a stack is read in the kernel HZ times a second per CPU; ' +
    '--off-cpu adds a short kernel program at every context switch on the machine',
  /** dump: one walk of each thread's stack. */
  dump: 'one read of each thread\'s stack from the kernel; the process is never stopped',
  /** gc: two probe hits per collection. */
  gc: 'two probe hits per collection: no slowdown measured on a Flask route',
} as const
