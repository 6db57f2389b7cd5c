// sampleStacks' batches: a sample's fixed fields are copied into columns by the addon; its
// stack is interned (stack-table.ts) into an id, so a profiler counts samples per stack with no
// object per sample.
import { SAMPLE_ON_CPU, SAMPLE_TRUNCATED, SAMPLE_UNREADABLE, STACK_RECORD_SAMPLE, STACK_SAMPLE } from '../kernel/abi.js'
import { columnsOf, computed, eachSideRecord, type BatchReader, type Columns, type SideRecords } from './batch.js'
import type { StackDecoder } from './python-stacks.js'
import { StackTable } from './stack-table.js'
import type { StackFrame } from './stacks.js'

const sample = columnsOf(STACK_SAMPLE)

/** The columns of a `SampleBatch`: the stack id is the one the addon cannot fill. */
const SAMPLE_COLUMNS = {
  pid: sample.copy('u32', 'pid'),
  tid: sample.copy('u32', 'tid'),
  cpu: sample.copy('u32', 'cpu'),
  timestampNs: sample.copy('i64', 'timestamp_ns'),
  onCpu: sample.flag(sample.test('flags', SAMPLE_ON_CPU)),
  offCpuNs: sample.copy('f64', 'off_cpu_ns', { when: sample.test('flags', SAMPLE_ON_CPU, true) }),
  truncated: sample.flag(sample.test('flags', SAMPLE_TRUNCATED | SAMPLE_UNREADABLE)),
  stackId: computed('u32'),
} as const

/**
 * Stack samples in columns, from `sampleStacks(…).batches()`: row `i` of every column is one
 * sample, the fields of a `StackSample`, for `i` below `length` (each column's own length). The
 * next batch of the trace overwrites the columns: copy what you keep. Stack ids and `stack(id)`
 * hold for the life of the trace. See docs/batches.md.
 */
export class SampleBatch {
  /** Rows in this batch. */
  readonly length: number
  /** The process. */
  readonly pid: Uint32Array
  /** The kernel thread id. */
  readonly tid: Uint32Array
  /** The CPU it ran on (off CPU: the one it came back on). */
  readonly cpu: Uint32Array
  /** CLOCK_MONOTONIC: when it was taken (off CPU: when the thread came back); reading an element makes a bigint. */
  readonly timestampNs: BigInt64Array
  /** 1: taken while the thread ran; 0: as it waited (`offCpu: true`), for `offCpuNs`. */
  readonly onCpu: Uint8Array
  /** Off CPU: how long the thread waited with this stack, a double exact below 2^53 ns. NaN on CPU. */
  readonly offCpuNs: Float64Array
  /** 1: the stack was deeper than 127 frames (or a frame could not be read): the outermost are missing. */
  readonly truncated: Uint8Array
  /** Which stack: `stack(id)` gives its frames; ids are dense from 0, see `stackCount`; `UNNAMED_ID` past `maxIds`. */
  readonly stackId: Uint32Array
  readonly #stacks: StackTable

  /** @internal Batches come from `trace.batches()`. */
  constructor(columns: Columns<typeof SAMPLE_COLUMNS>, length: number, stacks: StackTable) {
    this.length = length
    this.pid = columns.pid
    this.tid = columns.tid
    this.cpu = columns.cpu
    this.timestampNs = columns.timestampNs
    this.onCpu = columns.onCpu
    this.offCpuNs = columns.offCpuNs
    this.truncated = columns.truncated
    this.stackId = columns.stackId
    this.#stacks = stacks
  }

  /**
   * The frames behind a stack id of this batch or an earlier one of the same trace, innermost
   * first, as a sample's `frames` (frozen). An id stands for one sequence of frames (file,
   * function, line) for the life of the trace, whichever process or thread it was sampled in.
   */
  stack(id: number): readonly StackFrame[] {
    return this.#stacks.value(id)
  }

  /** Stack ids handed out so far in this trace: every id but `UNNAMED_ID` is below this (size arrays by it). */
  get stackCount(): number {
    return this.#stacks.size
  }
}

/**
 * @internal Reads a sample trace's records as `SampleBatch`es. Every record goes to `complete`
 * in ring order: a sample for its stack id, the others (code names, forgotten codes, processes)
 * to the trace's stack decoder, which names the frames of the samples after them.
 */
export function sampleBatchReader(decoder: () => StackDecoder, maxIds: number): BatchReader<typeof SAMPLE_COLUMNS, SampleBatch> {
  const stacks = new StackTable((view, offset, depth) => decoder().frames(view, offset, depth), maxIds)
  return {
    layout: {
      // Code records (struct code_record) are shorter than a sample; they make no row.
      minSize: STACK_SAMPLE.size,
      columns: SAMPLE_COLUMNS,
      kind: { offset: STACK_SAMPLE.fields.kind, routes: { [STACK_RECORD_SAMPLE]: 'row+side' } },
      route: 'side',
      rowSideFor: ['stackId'],
    },
    complete: (columns, _length, side) => completeSamples(decoder(), stacks, columns, side),
    batch: (columns, length) => new SampleBatch(columns, length, stacks),
    unnamed: () => stacks.unnamed,
  }
}

const KIND = STACK_SAMPLE.fields.kind

/**
 * Names each sample's stack, and has the decoder learn from every other record: code names, and
 * processes to follow, which sampling needs whether or not `stackId` is chosen.
 */
function completeSamples(decoder: StackDecoder, stacks: StackTable, columns: Partial<Columns<typeof SAMPLE_COLUMNS>>, side: SideRecords): void {
  const { view, bytes } = side
  const stackId = columns.stackId
  eachSideRecord(side, (offset, _length, row) => {
    // Samples come here only when stackId is chosen (`rowSideFor`).
    if (view.getUint8(offset + KIND) === STACK_RECORD_SAMPLE) stackId![row] = stacks.intern(view, offset)
    else decoder.decode(view, bytes, offset)
  })
}
