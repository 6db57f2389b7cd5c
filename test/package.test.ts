// `npm install usdtrace` on a machine without a compiler: the packed tarball holds the built
// package (and the agent's systemd unit) and nothing else, installs without compiling anything, loads the prebuilt addon, and
// traces a real python3.11 through `import` and through `require`, with types for both.
import { execFileSync, spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { FIB_CALLS, traceFromProject } from './fixtures/installed.js'
import { DEBIAN_PYTHON, PYTHON_WAIT, startReady } from './fixtures/processes.js'
import {
  BUILD_TOOLS,
  PREBUILD,
  ROOT,
  installTarball,
  packTarball,
  toolsOnlyPath,
  userEnv,
  type Install,
} from './fixtures/package.js'

const tarball = packTarball(t)
const toolsOnly = toolsOnlyPath(t)
const env = userEnv(toolsOnly, { npm_config_build_from_source: 'false' })

t.test('the tarball holds the built package and the sources of a fallback build, nothing else', async (t) => {
  const files = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
    .map((entry) => entry.replace(/^package\//, ''))
  const tracked = (dir: string) =>
    execFileSync('git', ['ls-files', dir], { cwd: ROOT, encoding: 'utf8' }).split('\n').filter(Boolean)
  const built = (dir: string, pattern: RegExp) =>
    readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })
      .filter((name) => pattern.test(name))
      .map((name) => `${dir}/${name}`)
  const expected = [
    'package.json',
    'README.md',
    'Makefile',
    'binding.gyp',
    PREBUILD,
    ...built('dist', /\.(js|cjs|d\.ts|d\.cts)$/),
    ...built('dist-cjs', /\.(js|cjs|d\.ts|d\.cts)$|^package\.json$/),
    ...tracked('bpf'),
    ...tracked('native'),
    ...tracked('scripts'),
    ...tracked('systemd'),
  ]
  t.same(files.sort(), expected.sort(), 'exactly the expected files')
  t.notOk(
    files.some((file) => /^(test|bench|src|examples|\.output|build)\/|\.map$/.test(file)),
    'no tests, benchmarks, TypeScript sources, build trees or source maps',
  )
})

t.test('the addon links libbpf, libelf and zlib statically: ldd shows only glibc', async (t) => {
  const addon = join(ROOT, PREBUILD)
  const needed = execFileSync('ldd', [addon], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0])
    .filter(Boolean)
  const glibc = /^(linux-vdso\.so\.1|libc\.so\.6|\/lib64\/ld-linux-x86-64\.so\.2|ld-linux-x86-64\.so\.2|libm\.so\.6)$/
  t.same(needed.filter((lib) => !glibc.test(lib!)), [], `only glibc in: ${needed.join(', ')}`)
  const dynamic = execFileSync('readelf', ['-d', addon], { encoding: 'utf8' })
  t.notMatch(dynamic, /libbpf|libelf|libz|libstdc\+\+/, 'no NEEDED entry for libbpf, libelf, zlib or libstdc++')
})

t.test('installs with no compiler on PATH and loads the prebuilt addon', async (t) => {
  for (const tool of BUILD_TOOLS) t.notOk(existsSync(join(toolsOnly, tool)), `${tool} is not on the install's PATH`)
  const install: Install = await installTarball(t, tarball, env)
  t.equal(install.status, 0, 'npm install succeeds')
  t.notMatch(install.output, /gyp (info|ERR)|CXX\(target\)|Entering directory|no prebuilt addon fits/, 'nothing was compiled')
  t.notOk(existsSync(join(install.installed, 'build')), 'no build/ directory')
  t.notOk(existsSync(join(install.installed, '.output')), 'no BPF build output')
  t.ok(existsSync(join(install.installed, PREBUILD)), 'the prebuild was installed')

  for (const system of ['import', 'require'] as const) {
    t.test(`traces python3.11 through ${system}`, async (t) => {
      const seen = await traceFromProject(t, install.project, system, env)
      t.equal(seen.entries, FIB_CALLS, 'every fib entry')
      t.equal(seen.returns, FIB_CALLS, 'every fib return')
      t.equal(seen.lost, 0, 'nothing lost')
      t.equal(seen.addon, PREBUILD, 'node-gyp-build loaded the prebuild')
      const entryPoint = system === 'import' ? 'dist/index.js' : 'dist-cjs/index.js'
      t.match(seen.entryPoint, new RegExp(`node_modules/usdtrace/${entryPoint}$`), `${system} resolves ${entryPoint}`)
    })
  }

  t.test('npx usdtrace ps runs the installed command and lists a python3.11 with its version', async (t) => {
    const target = await startReady(t, DEBIAN_PYTHON, ['-c', PYTHON_WAIT])
    const ps = spawnSync('npx', ['--no', 'usdtrace', 'ps'], { cwd: install.project, env, encoding: 'utf8' })
    t.equal(ps.status, 0, `npx usdtrace ps exits 0${ps.stderr && `: ${ps.stderr}`}`)
    t.match(ps.stdout, new RegExp(`^\\s*${target.pid}\\s+python 3\\.11\\.\\d+\\s+calls via line semaphore`, 'm'))
  })

  t.test('examples/consumer.ts compiles with tsc --strict against the published types', async (t) => {
    // Once as an ES module and once as CommonJS: each resolves its own entry point's types.
    copyFileSync(join(ROOT, 'examples/consumer.ts'), join(install.project, 'consumer.mts'))
    copyFileSync(join(ROOT, 'examples/consumer.ts'), join(install.project, 'consumer.cts'))
    // If the types were missing or `any`, this expectation would be unused: an error of its own.
    writeFileSync(
      join(install.project, 'strict.mts'),
      "import { traceCalls } from 'usdtrace'\n// @ts-expect-error a pid is a number\ntraceCalls('1234')\n",
    )
    const tsconfig = {
      compilerOptions: {
        strict: true,
        noEmit: true,
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        // The consumer's own @types/node; usdtrace's types come from node_modules/usdtrace.
        typeRoots: [join(ROOT, 'node_modules/@types')],
        types: ['node'],
      },
      files: ['consumer.mts', 'consumer.cts', 'strict.mts'],
    }
    writeFileSync(join(install.project, 'tsconfig.json'), JSON.stringify(tsconfig))
    const tsc = spawnSync(
      process.execPath,
      [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', '.', '--strict', '--noEmit', '--listFiles'],
      { cwd: install.project, encoding: 'utf8' },
    )
    const listed = tsc.stdout.split('\n')
    const errors = listed.filter((line) => line.includes('error TS')).join('\n')
    t.equal(tsc.status, 0, `tsc --strict${errors && `:\n${errors}`}`)
    for (const types of ['dist/index.d.ts', 'dist-cjs/index.d.ts']) {
      t.ok(
        listed.includes(join(install.installed, types)),
        `the types came from the installed package's ${types}`,
      )
    }
  })
})
