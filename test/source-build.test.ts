// When no prebuild fits (forced here with npm_config_build_from_source), `npm install` builds
// the addon from the sources in the tarball: with the tools it works, without them it stops
// with one message naming what is missing and how to get it.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { FIB_CALLS, traceFromProject } from './fixtures/installed.js'
import { installTarball, packTarball, toolsOnlyPath, userEnv } from './fixtures/package.js'

const tarball = packTarball(t)
const buildFromSource = { npm_config_build_from_source: 'true' }

t.test('without build tools the install fails, naming each missing tool and its package', async (t) => {
  const install = await installTarball(t, tarball, userEnv(toolsOnlyPath(t), buildFromSource))
  t.not(install.status, 0, 'npm install fails')
  t.match(install.output, /no prebuilt addon fits this machine \(npm_config_build_from_source is set\)/, 'says why it builds')
  // The tools-only PATH holds node, npm, npx, sh and env: every build tool is missing.
  const missing = /missing here: (.*)\.$/m.exec(install.output)?.[1]?.split(', ') ?? []
  t.same(
    missing.sort(),
    ['make', 'clang', 'bpftool', 'gcc', 'g++', 'ar', 'python3', 'libbpf.a', 'libelf.a', 'libz.a'].sort(),
    'names every missing tool and library (the kernel BTF is there)',
  )
  t.match(
    install.output,
    /apt-get install make clang bpftool gcc g\+\+ binutils python3 libbpf-dev libelf-dev zlib1g-dev/,
    'gives the apt-get line',
  )
  t.match(install.output, /npm rebuild usdtrace/, 'and what to run next')
  t.notMatch(install.output, /gyp (info|ERR)/, 'node-gyp never started')
})

t.test('with build tools the install builds the addon, and it traces', async (t) => {
  const env = userEnv(process.env.PATH!, buildFromSource)
  const install = await installTarball(t, tarball, env)
  t.equal(install.status, 0, `npm install succeeds${install.status === 0 ? '' : `: ${install.output}`}`)
  t.ok(existsSync(join(install.installed, 'build/Release/usdtrace.node')), 'node-gyp built the addon')
  const seen = await traceFromProject(t, install.project, 'import', env)
  t.equal(seen.addon, 'build/Release/usdtrace.node', 'the local build is what loads')
  t.equal(seen.entries, FIB_CALLS, 'every fib entry')
  t.equal(seen.returns, FIB_CALLS, 'every fib return')
})
