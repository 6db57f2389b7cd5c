// `npm install` runs this (through node-gyp-build) only when no prebuilt addon loads on this
// machine, right before node-gyp compiles one: it checks that everything the build needs is
// there, says what is missing and how to get it, and makes the BPF skeletons the addon embeds.
import { spawnSync } from 'node:child_process'
import { accessSync, constants, existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const packageRoot = fileURLToPath(new URL('..', import.meta.url))

/** Each command the build runs, and the Debian/Ubuntu package that brings it. */
const COMMANDS = {
  make: 'make',
  clang: 'clang',
  bpftool: 'bpftool',
  gcc: 'gcc',
  'g++': 'g++',
  ar: 'binutils',
  python3: 'python3',
}
/** Static libraries linked into the addon, found through gcc's search path. */
const LIBRARIES = { 'libbpf.a': 'libbpf-dev', 'libelf.a': 'libelf-dev', 'libz.a': 'zlib1g-dev' }
const KERNEL_BTF = '/sys/kernel/btf/vmlinux'

function onPath(command) {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, command), constants.X_OK)
      return true
    } catch {
      return false
    }
  })
}

function libraryFound(name) {
  const found = spawnSync('gcc', [`-print-file-name=${name}`], { encoding: 'utf8' })
  // gcc echoes the bare name back when the library is nowhere on its search path.
  return found.status === 0 && found.stdout.trim() !== name
}

function whyNoPrebuild() {
  if (process.env.npm_config_build_from_source === 'true') return 'npm_config_build_from_source is set'
  try {
    createRequire(import.meta.url)('node-gyp-build')(packageRoot)
    return 'the prebuilt addon was not usable'
  } catch (error) {
    return String(error.message).split('\n')[0]
  }
}

const missingCommands = Object.keys(COMMANDS).filter((command) => !onPath(command))
// Without gcc there is no search path to look in: the libraries count as missing too.
const missingLibraries = Object.keys(LIBRARIES).filter((name) => !onPath('gcc') || !libraryFound(name))
const missing = [...missingCommands, ...missingLibraries]
if (!existsSync(KERNEL_BTF)) missing.push(`${KERNEL_BTF} (a kernel built with CONFIG_DEBUG_INFO_BTF)`)

if (missing.length > 0) {
  const packages = [...missingCommands.map((c) => COMMANDS[c]), ...missingLibraries.map((l) => LIBRARIES[l])]
  const lines = [
    `usdtrace: no prebuilt addon fits this machine (${whyNoPrebuild()}), so it has to be built from source,`,
    `which needs what is missing here: ${missing.join(', ')}.`,
  ]
  if (packages.length > 0) {
    lines.push(`On Debian or Ubuntu: sudo apt-get install ${[...new Set(packages)].join(' ')}`)
  }
  lines.push(
    'then run `npm rebuild usdtrace`. Prebuilt addons ship for linux-x64 with glibc 2.36 or newer, which need none of this.',
  )
  console.error(lines.join('\n'))
  process.exit(1)
}

const make = spawnSync('make', ['--no-print-directory', 'addon-inputs'], { cwd: packageRoot, stdio: 'inherit' })
process.exit(make.status ?? 1)
