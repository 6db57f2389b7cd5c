// src/kernel/abi.ts is generated from the BPF objects' BTF; here gcc compiles bpf/usdtrace.h on
// its own, and the sizes, offsets and constants it reports must be the module's, so a generator
// that misread BTF (or BTF that missed a change) cannot go unnoticed. The module supplies only
// the names to ask about.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import * as abi from '../src/kernel/abi.js'

const BPF = fileURLToPath(new URL('../bpf', import.meta.url))

interface Layout {
  size: number
  fields: Record<string, number>
}

const structs = Object.entries(abi as Record<string, unknown>).filter((entry): entry is [string, Layout] => typeof entry[1] === 'object')
const constants = Object.entries(abi as Record<string, unknown>).filter((entry): entry is [string, number] => typeof entry[1] === 'number')

/** What gcc makes of bpf/usdtrace.h: `struct.field` and `struct` (its size) and each constant, by name. */
function compiled(t: Test): Record<string, number> {
  const dir = mkdtempSync(join(tmpdir(), 'usdtrace-abi-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const lines: string[] = []
  for (const [name, layout] of structs) {
    const struct = `struct ${name.toLowerCase()}`
    lines.push(`printf("%s %zu\\n", "${name}", sizeof(${struct}));`)
    for (const field of Object.keys(layout.fields)) {
      lines.push(`printf("%s %zu\\n", "${name}.${field}", offsetof(${struct}, ${field}));`)
    }
  }
  for (const [name] of constants) lines.push(`printf("%s %lld\\n", "${name}", (long long)${name});`)
  const source = join(dir, 'abi.c')
  writeFileSync(
    source,
    ['#include <linux/types.h>', '#include <stddef.h>', '#include <stdio.h>', '#include "usdtrace.h"', 'int main(void) {', ...lines, 'return 0;', '}'].join('\n'),
  )
  const program = join(dir, 'abi')
  execFileSync('gcc', ['-Wall', '-Werror', '-I', BPF, '-o', program, source])
  return Object.fromEntries(
    execFileSync(program, { encoding: 'utf8' })
      .trim()
      .split('\n')
      .map((line) => {
        const [name, value] = line.split(' ')
        return [name!, Number(value)]
      }),
  )
}

t.test('every struct and constant of src/kernel/abi.ts is what gcc makes of bpf/usdtrace.h', async (t) => {
  t.ok(structs.length >= 14 && constants.length >= 40, `${structs.length} structs and ${constants.length} constants`)
  const gcc = compiled(t)
  for (const [name, layout] of structs) {
    t.equal(layout.size, gcc[name], `sizeof(struct ${name.toLowerCase()})`)
    t.same(layout.fields, Object.fromEntries(Object.keys(layout.fields).map((field) => [field, gcc[`${name}.${field}`]])), `${name}'s offsets`)
  }
  for (const [name, value] of constants) t.equal(value, gcc[name], name)
})

t.test('the decoders see every event struct of bpf/usdtrace.h', async (t) => {
  // The structs the header defines, by its own text: each must reach the module through BTF.
  const header = execFileSync('gcc', ['-E', '-P', '-I', BPF, '-include', 'linux/types.h', join(BPF, 'usdtrace.h')], { encoding: 'utf8' })
  const defined = [...header.matchAll(/^struct (\w+) \{/gm)].map((m) => m[1]!).filter((name) => name !== 'usdtrace_abi')
  t.same(structs.map(([name]) => name.toLowerCase()).sort(), defined.sort())
})
