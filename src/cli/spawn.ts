/**
 * `usdtrace -- CMD ARGS...`: start a Python program held before its first line, so the tracer
 * can attach to the very process that will run it, then let it go.
 *
 * The interpreter is started on a small bootstrap script instead of the program: it compiles the
 * program, tells us it is ready on fd 3 (by then the process has exec'd python and mapped
 * everything, so its probes are where inspect() looks), and blocks on fd 4 until we have
 * attached. Then it runs the program exactly as python would (a script's code in __main__, `-c`
 * code, or `-m` through runpy like python's own -m), so the first traced call is the program's.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { accessSync, constants, mkdtempSync, openSync, readSync, closeSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, delimiter, join } from 'node:path'
import type { Readable, Writable } from 'node:stream'
import { CliError, UsageError } from './errors.js'

const BOOTSTRAP = `# usdtrace --spawn: holds the program until the tracer has attached, then runs it as python would.
def _usdtrace_prepare():
    import os, sys
    mode, target, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    main = sys.modules['__main__'].__dict__
    keep_path = getattr(sys.flags, 'safe_path', sys.flags.isolated)
    if mode == '-m':
        import runpy
        sys.argv = [target] + args
        if not keep_path:
            sys.path[0] = os.getcwd()
        run, run_args = runpy._run_module_as_main, (target,)
    elif mode == '-c':
        sys.argv = ['-c'] + args
        if not keep_path:
            sys.path[0] = ''
        main.pop('__file__', None)
        main.pop('__cached__', None)
        run, run_args = exec, (compile(target, '<string>', 'exec'), main)
    else:
        from importlib.machinery import SourceFileLoader
        # As python (3.9 on) does: __file__ and the code's file absolute, sys.argv[0] as given.
        path = os.path.abspath(target)
        try:
            with open(target, 'rb') as source:
                code = compile(source.read(), path, 'exec')
        except OSError as error:
            sys.stderr.write(f"{sys.orig_argv[0]}: can't open file {path!r}: [Errno {error.errno}] {error.strerror}\\n")
            sys.exit(2)
        except SyntaxError as error:
            import traceback
            traceback.print_exception(type(error), error, None)
            sys.exit(1)
        sys.argv = [target] + args
        if not keep_path:
            sys.path[0] = os.path.dirname(os.path.realpath(target))
        main.update(__file__=path, __cached__=None, __loader__=SourceFileLoader('__main__', path))
        run, run_args = exec, (code, main)
    os.write(3, b'r')
    os.close(3)
    go = os.read(4, 1)
    os.close(4)
    if go != b'g':
        raise SystemExit('usdtrace --spawn: the tracer went away before the program started')
    return run, run_args
def _usdtrace_main(prepare):
    import sys
    run, run_args = prepare()
    try:
        run(*run_args)
    except SystemExit:
        raise
    except BaseException as error:
        # Python's report of an uncaught exception, from the program's frames on: not this one.
        sys.excepthook(type(error), error, error.__traceback__.tb_next)
        if isinstance(error, KeyboardInterrupt):
            import os, signal
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        sys.exit(1)
globals().pop('_usdtrace_main')(globals().pop('_usdtrace_prepare'))
`

/** A started program, held before its first line until release(). */
export interface SpawnedProgram {
  pid: number
  /** what to call it in messages: the command line as given */
  description: string
  /** the bootstrap's file: its own frames are not the program's */
  bootstrapFile: string
  /** Lets the program run. */
  release(): void
  /** Whether release() let it run. */
  readonly released: boolean
  /** Whether it still runs. */
  readonly running: boolean
  /** Kills a program that was never released. */
  abandon(): Promise<void>
  /** Passes a signal on to it. */
  signal(signal: NodeJS.Signals): void
  /**
   * Ends a released program that still runs: SIGTERM, and SIGKILL if it outlives that by
   * STOP_GRACE_MS or hurry() is called; then SIGKILL to `leftovers()` (its children that
   * outlived it). Resolves with what it took, e.g. "SIGTERM".
   */
  stop(leftovers: () => number[]): Promise<string>
  /** A stop() under way sends SIGKILL now. */
  hurry(): void
  /** Resolves with the program's exit status as a shell reports it (128 + signal if killed). */
  exited: Promise<number>
  /** Resolves once every line of the program's stdout was handed on (at once without a relay). */
  relayed: Promise<void>
}

/**
 * Starts `command` (argv) held before its first line. With `relay`, the program's stdout is a
 * pipe whose lines are handed to it; otherwise the program writes to usdtrace's own stdout.
 */
export async function spawnHeld(command: string[], relay?: (line: string) => void): Promise<SpawnedProgram> {
  if (command.length === 0) throw new UsageError('give the command to start after --, e.g. `usdtrace -- python3.11 app.py`')
  const { python, args, argv0 } = pythonCommand(command)
  const { interpreterOptions, run } = splitPythonArgs(args)
  const dir = mkdtempSync(join(tmpdir(), 'usdtrace-spawn-'))
  const bootstrapFile = join(dir, 'usdtrace_spawn.py')
  writeFileSync(bootstrapFile, BOOTSTRAP)
  // argv0 as given: python names itself by it in its own errors ("python3.11: can't open file ...").
  const child = spawn(python, [...interpreterOptions, bootstrapFile, ...run], {
    argv0,
    stdio: ['inherit', relay ? 'pipe' : 'inherit', 'inherit', 'pipe', 'pipe'],
  })
  const relayed = relay ? relayLines(child.stdout!, relay) : Promise.resolve()
  const exited = once(child, 'exit').then(([code, signal]) => exitStatus(code as number | null, signal as NodeJS.Signals | null))
  try {
    await ready(child, command.join(' '))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  const go = child.stdio[4] as Writable
  // A program that dies before it reads the go byte (a forwarded Ctrl-C while the bootstrap
  // still waits, or any kill then) leaves the kernel to reset this pipe: ECONNRESET, or EPIPE on
  // the write. Its exit status reports that; unhandled, the error would crash usdtrace (exit 1).
  go.on('error', () => {})
  let released = false
  const running = () => child.exitCode === null && child.signalCode === null
  let hurry = () => {}
  return {
    pid: child.pid!,
    description: command.join(' '),
    bootstrapFile,
    exited,
    relayed,
    get released() {
      return released
    },
    get running() {
      return running()
    },
    signal(signal) {
      if (running()) child.kill(signal)
    },
    async stop(leftovers) {
      let how = 'SIGTERM'
      if (running()) {
        child.kill('SIGTERM')
        const killed = new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, STOP_GRACE_MS)
          hurry = () => {
            clearTimeout(timer)
            resolve()
          }
        })
        await Promise.race([exited, killed])
        if (running()) {
          how = 'SIGKILL, as SIGTERM did not end it'
          child.kill('SIGKILL')
        }
        await exited
      }
      for (const pid of leftovers()) {
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          // gone meanwhile
        }
      }
      return how
    },
    hurry: () => hurry(),
    release() {
      if (released) return
      released = true
      go.end('g')
      ;(child.stdio[3] as Readable).destroy()
    },
    async abandon() {
      if (released) return
      released = true
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      await exited
    },
  }
}

/** How long a started program may take to end after SIGTERM before it gets SIGKILL. */
const STOP_GRACE_MS = 5000

/** The program ended before it started (a script that does not exist): it said why; its status is usdtrace's. */
export class ProgramExited extends Error {
  constructor(readonly status: number) {
    super(`the program exited with status ${status} before it started`)
    this.name = 'ProgramExited'
  }
}

/** Hands on each line of `stream`, and a last unterminated one at its end. */
async function relayLines(stream: Readable, relay: (line: string) => void): Promise<void> {
  let partial = ''
  stream.setEncoding('utf8')
  for await (const chunk of stream) {
    const lines = (partial + (chunk as string)).split('\n')
    partial = lines.pop()!
    for (const line of lines) relay(line)
  }
  if (partial !== '') relay(partial)
}

/** Resolves once the bootstrap says it is ready; rejects if the program exits or fails first. */
async function ready(child: ChildProcess, description: string): Promise<void> {
  const signal = child.stdio[3] as Readable
  await new Promise<void>((resolve, reject) => {
    const fail = (why: string) => reject(new CliError(`${description}: ${why}`))
    child.once('error', (error) => fail(`cannot start it: ${error.message}`))
    child.once('exit', (code, sig) => reject(new ProgramExited(exitStatus(code, sig))))
    signal.once('data', () => resolve())
  })
}

function exitStatus(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15, SIGABRT: 6 }
  return 128 + (signal ? (numbers[signal] ?? 0) : 0)
}

const PYTHON_NAME = /^python(\d+(\.\d+)?)?[a-z]*$/

/** The python interpreter and its arguments for `command`: a python, or a script whose #! names one. */
function pythonCommand(command: string[]): { python: string; args: string[]; argv0: string } {
  const path = findExecutable(command[0]!)
  if (PYTHON_NAME.test(basename(realpathSync(path)))) return { python: path, args: command.slice(1), argv0: command[0]! }
  const shebang = readShebang(path)
  if (shebang) {
    let [interpreter, ...interpreterArgs] = shebang
    if (basename(interpreter!) === 'env') {
      // `#!/usr/bin/env python3` and `#!/usr/bin/env -S python3 -u`
      const words = interpreterArgs.filter((word) => word !== '-S')
      interpreter = words.length > 0 ? findExecutable(words[0]!) : interpreter
      interpreterArgs = words.slice(1)
    }
    if (PYTHON_NAME.test(basename(realpathSync(interpreter!)))) {
      return { python: interpreter!, args: [...interpreterArgs, path, ...command.slice(1)], argv0: interpreter! }
    }
  }
  throw new CliError(
    `${command[0]} is neither a python interpreter nor a script whose #! line names one: --spawn starts Python ` +
      'programs (e.g. `usdtrace -- python3.11 app.py`); start anything else yourself and trace its pid (`usdtrace ps`)',
  )
}

function findExecutable(name: string): string {
  const candidates = name.includes('/') ? [name] : (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((dir) => join(dir, name))
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {
      // next
    }
  }
  throw new CliError(`cannot start ${name}: ${name.includes('/') ? 'no such executable file' : 'not found in PATH'}; check the command`)
}

/** The #! line of a script split into words (Linux passes what follows the interpreter as one argument). */
function readShebang(path: string): string[] | undefined {
  const head = Buffer.alloc(256)
  const fd = openSync(path, 'r')
  let bytes: number
  try {
    bytes = readSync(fd, head, 0, head.length, 0)
  } finally {
    closeSync(fd)
  }
  const text = head.toString('utf8', 0, bytes)
  if (!text.startsWith('#!')) return undefined
  const line = text.slice(2).split('\n')[0]!.trim()
  const space = line.search(/\s/)
  if (space < 0) return [line]
  const rest = line.slice(space).trim()
  return [line.slice(0, space), ...(basename(line.slice(0, space)) === 'env' ? rest.split(/\s+/) : [rest])]
}

/**
 * Python's command line split where python stops reading options: the interpreter's options, then
 * what to run (`-m MOD`, `-c CODE` or a script) with its arguments.
 */
export function splitPythonArgs(args: string[]): { interpreterOptions: string[]; run: string[] } {
  const interpreterOptions: string[] = []
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === '-') throw new UsageError('--spawn cannot run a program read from stdin (`python -`): give a script, -c CODE or -m MODULE')
    if (arg === '--check-hash-based-pycs') {
      interpreterOptions.push(arg, args[++i] ?? '')
      continue
    }
    if (arg.startsWith('--') || !arg.startsWith('-')) {
      if (arg.startsWith('--')) {
        interpreterOptions.push(arg)
        continue
      }
      return { interpreterOptions, run: ['script', arg, ...args.slice(i + 1)] }
    }
    for (let j = 1; j < arg.length; j++) {
      const letter = arg[j]!
      if ('cmWX'.includes(letter)) {
        const value = j + 1 < arg.length ? arg.slice(j + 1) : args[++i]
        if (value === undefined) throw new UsageError(`python's -${letter} needs a value`)
        if (letter === 'c' || letter === 'm') return { interpreterOptions, run: [`-${letter}`, value, ...args.slice(i + 1)] }
        interpreterOptions.push(`-${letter}`, value)
        break
      }
      interpreterOptions.push(`-${letter}`)
    }
  }
  throw new UsageError('--spawn needs what python should run: a script, -c CODE or -m MODULE (the interactive prompt cannot be traced from its start)')
}

/** Splits a --spawn string into words the way a shell would for plain words and quotes. */
export function splitCommandLine(line: string): string[] {
  const words: string[] = []
  let word: string | undefined
  let quote: '"' | "'" | undefined
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!
    if (quote) {
      if (c === quote) quote = undefined
      else if (c === '\\' && quote === '"' && i + 1 < line.length) word += line[++i]
      else word += c
    } else if (c === '"' || c === "'") {
      quote = c
      word ??= ''
    } else if (c === '\\' && i + 1 < line.length) {
      word = (word ?? '') + line[++i]
    } else if (/\s/.test(c)) {
      if (word !== undefined) words.push(word)
      word = undefined
    } else {
      word = (word ?? '') + c
    }
  }
  if (quote) throw new UsageError(`--spawn: unmatched ${quote} in '${line}'`)
  if (word !== undefined) words.push(word)
  return words
}
