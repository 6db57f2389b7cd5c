export { traceCalls, CallBatch, CallKind, type CallEvent, type CallTrace, type TraceCallsOptions } from './streams/calls.js'
export { type FunctionName } from './streams/function-table.js'
export { inspect, type Capabilities, type Capability, type CapabilityName, type Inspection, type ProbeCapability, type StacksCapability } from './process/inspect.js'
export { listProbes } from './process/probes.js'
export { type UsdtProbe } from './process/elf.js'
export { TraceError, type TraceErrorCode } from './errors.js'
export { Trace, type StreamOptions } from './streams/trace.js'
export { type BatchOptions, type ColumnName, type Selected } from './streams/batch.js'
export { type TargetOptions } from './process/targets.js'
export { CallSummary, FlowFormatter, formatDuration, formatMilliseconds, shortenPath, type FlowOptions, type ReportOptions, type SummaryOptions, type SummaryRow } from './export/report.js'
export { traceSyscalls, SyscallBatch, type SyscallEvent, type SyscallTrace, type TraceSyscallsOptions } from './streams/syscalls.js'
export { callStats, type CallStats, type CallStatsOptions, type CallStatsSnapshot, type FunctionStats, type LatencySummary, type SyscallStats } from './streams/callstats.js'
export { traceUsdt, UsdtBatch, type TraceUsdtOptions, type UsdtColumn, type UsdtColumnName, type UsdtArgType, type UsdtEvent, type UsdtTrace } from './streams/usdt.js'
export { traceLibraryCalls, LibraryCallBatch, type LibraryCallEvent, type LibraryCallTrace, type LibraryFunction, type TraceLibraryCallsOptions } from './streams/libcalls.js'
export { traceGC, GCBatch, type GCEvent, type GCTrace, type TraceGCOptions } from './streams/gc.js'
export { traceImports, ImportBatch, type ImportEvent, type ImportTrace, type TraceImportsOptions } from './streams/imports.js'
export { traceAudit, AuditBatch, formatValue, type AuditEvent, type AuditTrace, type AuditValue, type TraceAuditOptions } from './streams/audit.js'
export { stats, type ProcessStats, type StatsColumn, type StatsOptions, type StatsSnapshot } from './streams/stats.js'
export { type PythonVersion } from './process/elf.js'
export { doctor, formatDoctor, type DoctorCheck, type DoctorCheckName } from './kernel/doctor.js'
export { CallTimeline, frameLabels, type FrameLabelOptions, type ThreadTimeline, type TimelineFrame } from './export/timeline.js'
export { callTree, type CallTreeNode, type StackWeight } from './export/calltree.js'
export { foldedStacks, type FoldedOptions } from './export/folded.js'
export { speedscopeFile, type SpeedscopeFile, type SpeedscopeOptions, type SpeedscopeProfile } from './export/speedscope.js'
export { chromeTrace, type ChromeTrace, type ChromeTraceEvent, type ChromeTraceOptions } from './export/chrome.js'
export { callRecord, ndjsonLine, sampleRecord, type CallRecord, type SampleRecord } from './export/ndjson.js'
export { flameGraphSvg, type FlameGraphOptions } from './export/flamegraph.js'
export {
  dumpStacks,
  sampleStacks,
  stackProfile,
  type DumpStacksOptions,
  type ProfiledStack,
  type SampleStacksOptions,
  type StackFrame,
  type StackProfileOptions,
  type StackProfileSnapshot,
  type StackSample,
  type StackSampleTrace,
  type ThreadStack,
} from './streams/stacks.js'
export { SampleBatch } from './streams/sample-batch.js'
export { UNNAMED_ID, type IdTableOptions } from './streams/id-table.js'
export { type StackOption } from './streams/python-stacks.js'
export { callTimeProfile, pprofProfile, type ProfileFrame, type ProfileValueType, type WeightedProfile, type WeightedStack } from './export/pprof.js'
