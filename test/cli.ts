// Runs the real `usdtrace` command (dist/cli/main.js, built by `make build`) in a pseudo-terminal
// through util-linux's `script`, as a person would, and collects what it prints.
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import { NOBODY, staged } from './fixtures/staged.js'
import { DIE_WITH_TEST } from './fixtures/processes.js'

export const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url))
export const ROOT = fileURLToPath(new URL('..', import.meta.url))

/**
 * The command runs without the test runner's node hooks, as a user runs it: tap puts them in
 * NODE_OPTIONS of every process a test spawns, so `env -u` takes them out at the last step.
 */
const WITHOUT_HOOKS = ['env', '-u', 'NODE_OPTIONS']

/** Single-quotes a word for sh. */
export function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`
}

export function stripAnsi(text: string): string {
  return text.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '')
}

export interface PtyRun {
  /** the `script` process */
  child: ChildProcess & { pid: number }
  /** everything the terminal showed so far, \r\n as \n, colours kept */
  readonly raw: string
  /** the same without colours and with progress lines (\r...\x1b[2K) resolved */
  readonly text: string
  /** resolves once the output matches */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>
  /** the exit status of the command (script -e passes it on) */
  exited: Promise<number>
  /** the pid of the usdtrace process itself (the child `script` runs) */
  cliPid(): Promise<number>
  /** types into the terminal */
  type(text: string): void
}

/**
 * Runs `usdtrace ARGS...` in a pty (script -qfec), NO_COLOR set unless `color` is true;
 * `asNobody` runs it as nobody without capabilities, from /, through the staged copy of the CLI.
 */
export function runCli(t: Test, args: string[], options: { color?: boolean; env?: NodeJS.ProcessEnv; cwd?: string; asNobody?: boolean } = {}): PtyRun {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run make build`)
  const cli = options.asNobody ? staged('dist/cli/main.js') : CLI
  const wrapper = options.asNobody ? ['setpriv', ...NOBODY] : []
  const command = `exec ${[...WITHOUT_HOOKS, ...wrapper].map((w) => `${shellQuote(w)} `).join('')}${shellQuote(process.execPath)} ${shellQuote(cli)} ${args.map(shellQuote).join(' ')}`
  const env = { ...process.env, ...options.env, COLUMNS: '200', LINES: '50' }
  if (options.color) delete env.NO_COLOR
  else env.NO_COLOR = '1'
  const child = spawn('script', ['-qfec', command, '/dev/null'], { cwd: options.asNobody ? '/' : (options.cwd ?? ROOT), env, stdio: ['pipe', 'pipe', 'pipe'] })
  let raw = ''
  const listeners = new Set<() => void>()
  const onData = (chunk: Buffer) => {
    raw += chunk.toString('utf8').replace(/\r\n/g, '\n')
    for (const listener of listeners) listener()
  }
  child.stdout!.on('data', onData)
  child.stderr!.on('data', onData)
  const exited = once(child, 'exit').then(([code, signal]) => (code as number | null) ?? 128 + (signal === 'SIGKILL' ? 9 : 15))
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      // The command first (by its pid), so that nothing it attached outlives the test.
      const pid = childrenOf(child.pid!)[0]
      if (pid) process.kill(pid, 'SIGKILL')
      child.kill('SIGKILL')
      await exited
    }
  })
  const text = () => stripAnsi(raw.replace(/[^\n]*\r\x1b\[2K/g, ''))
  return {
    child: child as ChildProcess & { pid: number },
    get raw() {
      return raw
    },
    get text() {
      return text()
    },
    waitFor(pattern, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = pattern.exec(text())
          if (!match) return false
          listeners.delete(check)
          clearTimeout(timer)
          resolve(match)
          return true
        }
        const timer = setTimeout(() => {
          listeners.delete(check)
          reject(new Error(`usdtrace ${args.join(' ')} did not print ${pattern} in ${timeoutMs} ms; it printed:\n${text()}`))
        }, timeoutMs)
        listeners.add(check)
        void exited.then(() => setImmediate(() => {
          if (listeners.has(check) && !check()) {
            listeners.delete(check)
            clearTimeout(timer)
            reject(new Error(`usdtrace ${args.join(' ')} exited without printing ${pattern}; it printed:\n${text()}`))
          }
        }))
        check()
      })
    },
    exited,
    async cliPid() {
      for (let i = 0; i < 200; i++) {
        const [pid] = childrenOf(child.pid!)
        if (pid !== undefined && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(cli)) return pid
        await new Promise((resolve) => setTimeout(resolve, 25))
      }
      throw new Error('the usdtrace process did not start')
    },
    type(input) {
      child.stdin!.write(input)
    },
  }
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
  } catch {
    return []
  }
}

export interface PipedRun {
  /** the usdtrace process (env execs it in place) */
  pid: number
  /** resolves once stderr matches (e.g. /tracing calls in/: attached) */
  stderrMatch(pattern: RegExp): Promise<void>
  /** resolves once stdout matches */
  stdoutMatch(pattern: RegExp): Promise<void>
  /** stdout so far */
  readonly stdout: string
  /** stderr so far */
  readonly stderr: string
  /** the exit status and everything printed */
  done: Promise<{ code: number; stdout: string; stderr: string }>
}

/** Runs `usdtrace ARGS...` with pipes (no terminal): stdout and stderr apart. */
export function runCliPiped(t: Test, args: string[], options: { env?: NodeJS.ProcessEnv } = {}): PipedRun {
  const [env, ...envArgs] = WITHOUT_HOOKS
  const [runner, ...runnerArgs] = DIE_WITH_TEST
  const child = spawn(runner, [...runnerArgs, env!, ...envArgs, process.execPath, CLI, ...args], { cwd: ROOT, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] })
  const output = { stdout: '', stderr: '' }
  child.stdout.on('data', (d: Buffer) => (output.stdout += d))
  child.stderr.on('data', (d: Buffer) => (output.stderr += d))
  const done = once(child, 'exit').then(([code]) => ({ code: code as number, ...output }))
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await done
    }
  })
  const match = (name: 'stdout' | 'stderr', pattern: RegExp) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (!pattern.test(output[name])) return
        child[name].off('data', check)
        resolve()
      }
      child[name].on('data', check)
      void done.then(() => (pattern.test(output[name]) ? resolve() : reject(new Error(`usdtrace ${args.join(' ')} exited without ${pattern} on ${name}:\n${output.stderr}`))))
      check()
    })
  return {
    pid: child.pid!,
    done,
    stderrMatch: (pattern) => match('stderr', pattern),
    stdoutMatch: (pattern) => match('stdout', pattern),
    get stdout() {
      return output.stdout
    },
    get stderr() {
      return output.stderr
    },
  }
}

/** The lines of a table whose first line starts with `header`, up to the first blank line. */
export function tableAfter(text: string, header: RegExp): string[][] {
  const lines = text.split('\n')
  const start = lines.findIndex((line) => header.test(line))
  if (start < 0) throw new Error(`no table ${header} in:\n${text}`)
  const rows: string[][] = []
  for (const line of lines.slice(start + 1)) {
    if (line.trim() === '') break
    rows.push(line.trim().split(/\s{2,}/))
  }
  return rows
}
