// The sampling commands against pyenv's Pythons (no USDT probes): `usdtrace dump` against the
// target's own sys._current_frames(), `record --sample` and `flame --sample` on a thread spinning
// in one function and another sleeping in another, `top` piped, `ps`'s STACKS column, and the
// calls commands pointing at the sampling ones where a Python has no probes.
import { readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import t from 'tap'
import { PYENV } from './fixtures/processes.js'
import { startStacksTarget as start, threadGone } from './fixtures/stacks.js'
import { tmpDir } from './programs/tools.js'
import { ROOT, runCliPiped } from './cli.js'

const PYTHON_312 = `${PYENV}/3.12.1/bin/python3.12`
/** 3.10 names frames by co_name alone (no co_qualname). */
const PYTHON_310 = `${PYENV}/3.10.13/bin/python3.10`
/** The deepest stack a dump carries (STACK_FRAMES_MAX in bpf/usdtrace.h). */
const FRAMES_KEPT = 127
/** The names test/targets/stacks.py gives its threads in the blocked mode. */
const BLOCKED_NAMES = ['MainThread', 'stack-0', 'stack-1', 'stack-2']

type Triple = [string, string, number]

/** `usdtrace dump` prints, per thread, a `Thread TID "NAME" (...)` line and its frames under it. */
function parseDump(text: string): Map<number, { name: string; frames: string[]; more: boolean }> {
  const threads = new Map<number, { name: string; frames: string[]; more: boolean }>()
  let current: { name: string; frames: string[]; more: boolean } | undefined
  for (const line of text.split('\n')) {
    const thread = /^Thread (\d+) "([^"]*)" \((on|off) CPU\)/.exec(line)
    if (thread) threads.set(Number(thread[1]), (current = { name: thread[2]!, frames: [], more: false }))
    else if (current && line.startsWith('    ... ')) current.more = true
    else if (current && line.startsWith('    ')) current.frames.push(line.slice(4))
  }
  return threads
}

for (const python of [PYTHON_310, PYTHON_312]) {
  t.test(`dump ${python}: every thread as the target's own sys._current_frames() says`, async (t) => {
    const { pid, report } = await start(t, python, ['blocked', '200'])
    await threadGone(pid, report.reporter as number)
    const expected = report.stacks as Record<string, Triple[]>

    const text = await runCliPiped(t, ['dump', String(pid)]).done
    t.equal(text.code, 0, 'exit status 0')
    t.match(text.stdout, new RegExp(`^Process ${pid} \\(python 3\\.`), 'a header names the process and its version')
    const threads = parseDump(text.stdout)
    t.same([...threads.keys()].map(String).sort(), Object.keys(expected).sort(), 'every Python thread, and only those')
    t.same([...threads.values()].map((thread) => thread.name).sort(), BLOCKED_NAMES, 'named as threading names them')
    for (const [tid, thread] of threads) {
      const frames = expected[tid]!
      const kept = frames.slice(0, FRAMES_KEPT)
      t.equal(thread.more, frames.length > FRAMES_KEPT, `thread ${tid}: says so exactly when outer frames are missing`)
      t.equal(thread.frames.length, kept.length, `thread ${tid}: ${kept.length} frames`)
      thread.frames.forEach((printed, i) => {
        const [file, func, line] = kept[i]!
        const match = /^(.+) \((.+):(\d+)\)$/.exec(printed)
        // The target's own file relative to the command's cwd; any other (threading.py) as a tail of its path.
        const shown = file.startsWith(`${ROOT}`) ? relative(ROOT, file) : match?.[2]
        t.ok(match && match[1] === func && Number(match[3]) === line && match[2] === shown && file.endsWith(`/${shown}`), `thread ${tid} frame ${i}: ${printed} is ${func} (${file}:${line})`)
      })
    }

    const json = await runCliPiped(t, ['dump', String(pid), '--json']).done
    t.equal(json.code, 0)
    const rows = json.stdout.trim().split('\n').map((line) => JSON.parse(line) as { type: string; pid: number; tid: number; frames: { file: string; func: string; line: number }[]; truncated: boolean; onCpu: boolean })
    t.same(rows.map((row) => String(row.tid)).sort(), Object.keys(expected).sort(), '--json: one object per thread')
    for (const row of rows) {
      t.equal(row.type, 'thread')
      t.equal(row.pid, pid)
      t.notOk(row.onCpu, `${row.tid} is blocked`)
      t.same(row.frames.map((frame) => [frame.file, frame.func, frame.line]), expected[row.tid]!.slice(0, FRAMES_KEPT), `--json ${row.tid}: the frames, full paths`)
    }
  })
}

t.test('dump: usage errors', async (t) => {
  const none = await runCliPiped(t, ['dump']).done
  t.equal(none.code, 2, 'no PID: a usage error')
  t.match(none.stderr, /give the PIDs/)
})
