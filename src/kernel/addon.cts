// CommonJS on purpose: `__dirname` serves the ESM build (dist/) and the CommonJS build
// (dist-cjs/) alike, both two levels below the package root (dist/kernel/), so neither needs import.meta.
import { join } from 'node:path'

const packageRoot = join(__dirname, '..', '..')

const addonPath = locateAddon()

// `export =` (a plain module.exports) is what both builds' default import of this file sees.
export = {
  packageRoot,
  /** The file node-gyp-build chose: a local build (build/Release) first, else a prebuild (prebuilds/). */
  addonPath,
  /** The raw addon; src/kernel/binding.ts gives it its types. */
  addon: require(addonPath) as unknown,
}

function locateAddon(): string {
  try {
    return require('node-gyp-build').resolve(packageRoot)
  } catch (error) {
    throw new Error(
      `usdtrace's native addon is missing: no prebuilt addon fits ${process.platform}-${process.arch} ` +
        '(prebuilds ship for linux-x64 with glibc 2.36 or newer) and there is no local build; ' +
        'build it with `npm rebuild usdtrace` (needs make, clang, bpftool, a C++ compiler, python3, ' +
        'libbpf-dev, libelf-dev and zlib1g-dev)',
      { cause: error },
    )
  }
}
