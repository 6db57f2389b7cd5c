// doctor() on this machine: everything met as root; as nobody the privileges check fails with
// the fix; with capabilities granted its verdict is what tracing then finds.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { pathToFileURL } from 'node:url'
import t, { type Test } from 'tap'
import { doctor, formatDoctor, type DoctorCheck } from '../src/index.js'
import { DEBIAN_PYTHON, startReady } from './fixtures/processes.js'
import { ROOT } from './fixtures/package.js'
import { staged } from './fixtures/staged.js'
import { fibonacci } from './targets.js'

const NAMES = ['addon', 'kernel', 'btf', 'uprobe', 'privileges']
const KERNEL = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim()
const NOBODY = ['--reuid=65534', '--regid=65534', '--clear-groups']
const WITH_BPF_CAPS = ['--inh-caps=+bpf,+perfmon', '--ambient-caps=+bpf,+perfmon']

/** `node -e body` as nobody with `privileges`; `usdtrace` (the built package) is in scope. */
function nodeAsNobody(privileges: string[], body: string, args: string[]): [string, string[]] {
  const script = `const usdtrace = await import(${JSON.stringify(pathToFileURL(staged('dist/index.js')).href)})\n${body}`
  // `env -u NODE_OPTIONS`: tap adds its process-info hook to every child's NODE_OPTIONS, and it
  // would try to write .tap/ as nobody. Other privileges of the form NAME=VALUE go to env.
  const assignments = privileges.filter((p) => p.includes('=') && !p.startsWith('--'))
  privileges = privileges.filter((p) => !assignments.includes(p))
  const node = ['env', '-u', 'NODE_OPTIONS', ...assignments, process.execPath, '--input-type=module', '-e', script, ...args]
  return ['setpriv', [...NOBODY, ...privileges, ...node]]
}

const CHILD = { cwd: '/' }

/** Runs `body` to its end and parses what it printed as JSON. */
function asNobody<T>(privileges: string[], body: string, ...args: string[]): T {
  const [command, argv] = nodeAsNobody(privileges, body, args)
  return JSON.parse(execFileSync(command, argv, { ...CHILD, encoding: 'utf8' })) as T
}

function spawnAsNobody(privileges: string[], body: string, ...args: string[]): ChildProcess {
  const [command, argv] = nodeAsNobody(privileges, body, args)
  return spawn(command, argv, { ...CHILD, stdio: ['ignore', 'pipe', 'pipe'] })
}

const DOCTOR = 'console.log(JSON.stringify({ checks: usdtrace.doctor(), text: usdtrace.formatDoctor(usdtrace.doctor()) }))'

t.test('as root every requirement is met', async (t) => {
  const checks = doctor()
  t.same(
    checks.map((check) => check.name),
    NAMES,
    'every check, in order',
  )
  for (const check of checks) {
    t.ok(check.ok, `${check.name}: ${check.found}`)
    t.equal(check.fix, undefined, `${check.name} needs no fix`)
  }
  const found = Object.fromEntries(checks.map((check) => [check.name, check.found]))
  t.equal(found.kernel, `Linux ${KERNEL}`, 'the running kernel')
  t.ok(existsSync(join(ROOT, 'build/Release/usdtrace.node')), 'this tree has a local build')
  t.equal(found.addon, 'build/Release/usdtrace.node', 'which node-gyp-build prefers to the prebuild')
  t.equal(found.btf, '/sys/kernel/btf/vmlinux')
  t.equal(found.uprobe, '/sys/bus/event_source/devices/uprobe/type')
  t.equal(found.privileges, 'uid 0 with CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN; the kernel allows uprobes')

  const lines = formatDoctor(checks).split('\n')
  t.equal(lines.length, NAMES.length, 'one line per check')
  lines.forEach((line, i) => t.equal(line, `ok    ${NAMES[i]!.padEnd(12)}${checks[i]!.found}`, `line ${i + 1}`))
})

t.test('as nobody the privileges check fails, naming the fix', async (t) => {
  const { checks, text } = asNobody<{ checks: DoctorCheck[]; text: string }>([], DOCTOR)
  const failed = checks.filter((check) => !check.ok)
  t.same(
    failed.map((check) => check.name),
    ['privileges'],
    'only privileges fails',
  )
  const privileges = failed[0]!
  t.equal(privileges.found, 'uid 65534 without CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN; the kernel refuses uprobes')
  t.match(privileges.fix, /run as root/, 'fix: root')
  t.match(privileges.fix, /setcap cap_bpf,cap_perfmon,cap_sys_admin\+ep/, 'fix: or the capabilities, with the command')
  const lines = text.split('\n')
  const failLine = lines.indexOf(`FAIL  privileges  ${privileges.found}`)
  t.not(failLine, -1, 'a FAIL line for privileges')
  t.equal(lines[failLine + 1], `${' '.repeat(18)}needs: ${privileges.requirement}`, 'what is needed')
  t.equal(lines[failLine + 2], `${' '.repeat(18)}fix: ${privileges.fix}`, 'and the fix')
})

// Which capability perf-event uprobes need changed in Linux 6.16 (CAP_PERFMON before,
// CAP_SYS_ADMIN again since); uprobe multi links (Linux 6.6 on) need no more than loading BPF.
// Whatever this kernel wants, doctor() must say what tracing then finds.
const [major, minor] = KERNEL.split('.').map(Number) as [number, number]
const atLeast = (wantMajor: number, wantMinor: number) => major > wantMajor || (major === wantMajor && minor >= wantMinor)
const perfUprobesNeedSysAdmin = atLeast(6, 16)
const hasUprobeMulti = atLeast(6, 6)

for (const [caps, multi] of [[['bpf', 'perfmon'], true], [['bpf', 'perfmon'], false], [['sys_admin'], true]] as const) {
  const path = multi ? '' : ', USDTRACE_UPROBE_MULTI=0'
  t.test(`as nobody with ${caps.join(' + ')}${path}: doctor() says what tracing finds`, async (t) => {
    const grant = caps.map((cap) => `+${cap}`).join(',')
    const privileges = [`--inh-caps=${grant}`, `--ambient-caps=${grant}`, ...(multi ? [] : ['USDTRACE_UPROBE_MULTI=0'])]
    const { checks } = asNobody<{ checks: DoctorCheck[] }>(privileges, DOCTOR)
    const verdict = checks.find((check) => check.name === 'privileges')!
    const traced = await traceAsNobody(t, privileges)
    t.equal(verdict.ok, traced.attached, `doctor ${verdict.ok ? 'ok' : 'FAIL'}, tracing ${traced.attached ? 'attached' : traced.code}`)
    if ((caps as readonly string[]).includes('sys_admin') || !perfUprobesNeedSysAdmin || (multi && hasUprobeMulti)) {
      t.ok(traced.attached, 'tracing works')
      const calls = 2 * fibonacci(FIB_N + 1) - 1
      t.same([traced.entries, traced.returns], [calls, calls], 'every fib call traced')
    } else {
      t.equal(traced.code, 'PERMISSION_DENIED', `Linux ${KERNEL} refuses uprobes without CAP_SYS_ADMIN`)
      t.match(verdict.found, /without CAP_SYS_ADMIN; the kernel refuses uprobes$/)
    }
  })
}

const FIB_N = 10

/** Traces `fib FIB_N` in a python3.11 running as nobody, from node running as nobody with `privileges`. */
async function traceAsNobody(
  t: Test,
  privileges: string[],
): Promise<{ attached: boolean; code?: string; entries?: number; returns?: number }> {
  // The target runs as nobody too: its /proc entries are readable without CAP_SYS_PTRACE.
  const target = await startReady(t, 'setpriv', [...NOBODY, DEBIAN_PYTHON, staged('test/targets/workloads.py'), 'fib', String(FIB_N)])
  const uid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${target.pid}/status`, 'utf8'))![1]
  t.equal(uid, '65534', 'the target runs as nobody')
  const tracer = spawnAsNobody(
    privileges,
    `const trace = usdtrace.traceCalls(Number(process.argv[1]))
     const failed = await trace.ready.then(() => undefined, (error) => error)
     if (failed) {
       console.log(JSON.stringify({ attached: false, code: failed.code }))
     } else {
       console.log('attached')
       let entries = 0, returns = 0
       for await (const ev of trace) if (ev.func === 'fib') ev.kind === 'entry' ? entries++ : returns++
       console.log(JSON.stringify({ attached: true, entries, returns }))
     }`,
    String(target.pid),
  )
  t.teardown(() => void tracer.kill('SIGKILL'))
  let last = ''
  for await (const line of createInterface({ input: tracer.stdout! })) {
    if (line === 'attached') target.stdin!.write('go\n')
    last = line
  }
  return JSON.parse(last)
}
