/**
 * `usdtrace dump PID...` (py-spy dump): every Python thread's stack now, read from the kernel on
 * any CPython from 3.10, probes or not, without stopping or signalling the process.
 */
import { dumpStacks, inspect, type ThreadStack } from '../index.js'
import { flag, pid as parsePid, type ParsedArgs } from './args.js'
import type { Command } from './command.js'
import { COSTS } from './costs.js'
import { UsageError } from './errors.js'
import { count, type Run } from './run.js'
import { frameText } from './stack-lines.js'
import { describe } from './target.js'

const NAME = 'dump'

const HELP = `usdtrace dump PID... [options]

Prints every Python thread's stack as it is now (like py-spy dump): for each thread its kernel
thread id, its name (threading's, else the kernel's), whether it was running on a CPU or off it
(blocked, waiting or preempted), and its frames innermost first as "function (file:line)".
Works on any CPython from 3.10, with or without USDT probes (pyenv, docker python images);
the process is never stopped or signalled.

Cost: ${COSTS.dump}.

Options:
      --full-paths       file names as the interpreter reports them
      --json             one JSON object per thread: pid, tid, name, onCpu, truncated,
                         frames [{file, func, line}] innermost first
      --debug            stack traces on errors

Examples:
  usdtrace dump 4242
  usdtrace dump 4242 --json | jq -r '.frames[0].func'`

export const dump: Command = {
  name: NAME,
  summary: "print every Python thread's stack now (any CPython 3.10+, probes or not)",
  help: HELP,
  options: { 'full-paths': { type: 'boolean' } },
  run: runDump,
}

async function runDump(run: Run, args: ParsedArgs): Promise<void> {
  const { values, positionals } = args
  if (positionals.length === 0) throw new UsageError('give the PIDs of Python processes (`usdtrace ps` lists them)', NAME)
  const pids = [...new Set(positionals.map((p) => parsePid(NAME, p)))]
  const fullPaths = flag(values, 'full-paths')
  const threads = await dumpStacks({ pids })
  if (run.json) {
    for (const thread of threads) run.out.json({ type: 'thread', ...thread })
    return
  }
  const cwd = process.cwd()
  for (const pid of pids) {
    const inspection = await inspect(pid).catch(() => undefined)
    run.out.line(run.out.paint('bold', `Process ${await describe([pid], inspection)}`))
    for (const thread of threads.filter((t) => t.pid === pid)) {
      run.out.line(threadLine(run, thread))
      for (const frame of thread.frames) run.out.line(`    ${frameText(frame, cwd, fullPaths)}`)
      if (thread.truncated) run.out.line(run.out.paint('dim', '    ... (outermost frames missing: deeper than 127 frames, or one could not be read)'))
    }
    run.out.line()
  }
  run.status.note(`${count(threads.length, 'thread')} in ${count(pids.length, 'process', 'processes')}`)
}

function threadLine(run: Run, thread: ThreadStack): string {
  const where = thread.onCpu ? run.out.paint('green', 'on CPU') : run.out.paint('dim', 'off CPU')
  return `Thread ${thread.tid} "${thread.name}" (${where})${thread.frames.length === 0 ? ': no Python frame' : ''}`
}
