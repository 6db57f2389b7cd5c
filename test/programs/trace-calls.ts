// Traces the calls of process argv[2] (a workloads.py target) in a process of its own, so that
// its environment (e.g. USDTRACE_UPROBE_MULTI=0) applies: prints the link types once attached,
// then, after the target has exited, the fib entries and returns it saw.
import { traceCalls } from '../../src/index.js'
import { linkTypes } from '../fixtures/links.js'
import { WORKLOADS, collect } from '../targets.js'

const trace = traceCalls(Number(process.argv[2]))
await trace.ready
console.log(JSON.stringify({ links: linkTypes() }))
const fib = (await collect(trace)).filter((e) => e.file === WORKLOADS && e.func === 'fib')
console.log(JSON.stringify({ entries: fib.filter((e) => e.kind === 'entry').length, returns: fib.filter((e) => e.kind === 'return').length }))
