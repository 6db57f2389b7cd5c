// Writes src/kernel/abi.ts, the TypeScript side's view of the BPF objects, from the objects
// themselves: the layouts and constants of bpf/usdtrace.h from their BTF (the types struct
// usdtrace_abi names), and per object the names user space may use, from its BTF data sections
// (maps, .rodata constants, .bss counters) and its ELF symbols (programs). The Makefile runs it
// after compiling the objects and before tsc, so a name or layout that changes in bpf/ changes
// the types src/ is compiled against.
//
//   node scripts/generate-abi.js OUTPUT.ts OBJECT.bpf.o...
import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { basename, relative } from 'node:path'
import { isDeepStrictEqual } from 'node:util'

const ANCHOR = 'usdtrace_abi'
const STT_FUNC = 2

function run(command, args) {
  return JSON.parse(execFileSync(command, args, { encoding: 'utf8', maxBuffer: 256 << 20 }))
}

/** One object's BTF types by id, and a way to see through typedefs and qualifiers. */
function readBtf(path) {
  const types = new Map(run('bpftool', ['-j', 'btf', 'dump', 'file', path]).types.map((type) => [type.id, type]))
  const resolve = (id) => {
    let type = types.get(id)
    while (type && ['TYPEDEF', 'CONST', 'VOLATILE', 'RESTRICT', 'TYPE_TAG'].includes(type.kind)) type = types.get(type.type_id)
    if (!type) throw new Error(`${path}: BTF type ${id} is missing`)
    return type
  }
  return { types: [...types.values()], resolve }
}

/** The types of struct usdtrace_abi's members, in its order. */
function contractTypes(path, btf) {
  const anchor = btf.types.find((type) => type.kind === 'STRUCT' && type.name === ANCHOR)
  if (!anchor) return []
  return anchor.members.map((member) => {
    const type = btf.resolve(member.type_id)
    if (type.kind === 'STRUCT') return { kind: 'struct', name: type.name, layout: structLayout(path, btf, type) }
    if (type.kind === 'ENUM') return { kind: 'enum', name: type.name, values: type.values.map(({ name, val }) => [name, val]) }
    throw new Error(`${path}: struct ${ANCHOR}'s member ${member.name} must be a named struct or enum`)
  })
}

function structLayout(path, btf, struct) {
  const fields = struct.members.map((member) => {
    if (member.bitfield_size || member.bits_offset % 8 !== 0) {
      throw new Error(`${path}: struct ${struct.name}'s field ${member.name} is a bit field, which the decoders cannot address`)
    }
    return [member.name, member.bits_offset / 8, typeSize(path, btf, member.type_id)]
  })
  return { size: struct.size, fields }
}

/** The bytes a BTF type takes. */
function typeSize(path, btf, id) {
  const type = btf.resolve(id)
  if (type.kind === 'PTR') return 8
  if (type.kind === 'ARRAY') return type.nr_elems * typeSize(path, btf, type.type_id)
  if (type.size !== undefined) return type.size
  throw new Error(`${path}: BTF type ${id} (${type.kind}) has no size`)
}

/** The variables of a data section (.maps, .rodata, .bss) that the object exports, by name. */
function sectionVariables(btf, section) {
  const datasec = btf.types.find((type) => type.kind === 'DATASEC' && type.name === section)
  return (datasec?.vars ?? [])
    .map((entry) => btf.resolve(entry.type_id))
    .filter((variable) => variable.linkage !== 'static')
}

/** What JavaScript passes for a .rodata constant: a number (bigint too when 8 bytes wide), or bytes. */
function constantType(path, btf, variable) {
  const type = btf.resolve(variable.type_id)
  if (type.kind === 'ENUM' || (type.kind === 'INT' && type.size <= 4)) return 'number'
  if (type.kind === 'INT' || type.kind === 'ENUM64') return 'number | bigint'
  if (['ARRAY', 'STRUCT', 'UNION'].includes(type.kind)) return 'Uint8Array'
  throw new Error(`${path}: constant ${variable.name} is a ${type.kind}, which user space cannot set`)
}

/** A symbol field of llvm-readobj's JSON: `{ Value: name, RawValue: n }` (LLVM 14) or `{ Name, Value }`. */
function symbolName(field) {
  return typeof field === 'string' ? field : (field.Name ?? field.Value)
}

/** The object's programs: its functions in sections other than .text (which holds what programs call). */
function programs(path) {
  const [file] = run('llvm-readobj', ['--elf-output-style=JSON', '--symbols', path])
  const { Symbols: symbols } = Object.values(file)[0]
  return symbols
    .map(({ Symbol: symbol }) => symbol)
    .filter((symbol) => symbol.Type.RawValue === STT_FUNC && !['.text', 'Undefined'].includes(symbolName(symbol.Section)))
    .map((symbol) => symbolName(symbol.Name))
}

function readObject(path) {
  const btf = readBtf(path)
  return {
    name: basename(path, '.bpf.o'),
    path,
    types: contractTypes(path, btf),
    programs: programs(path).sort(),
    maps: sectionVariables(btf, '.maps').map((variable) => variable.name).sort(),
    constants: sectionVariables(btf, '.rodata')
      .map((variable) => [variable.name, constantType(path, btf, variable)])
      .sort(([a], [b]) => (a < b ? -1 : 1)),
    counters: sectionVariables(btf, '.bss').map((variable) => variable.name).sort(),
  }
}

/** Each type once; an object that sees one differently (another #ifdef, another arch) is an error. */
function mergeTypes(objects) {
  const merged = new Map()
  for (const object of objects) {
    for (const type of object.types) {
      const key = `${type.kind} ${type.name}`
      const seen = merged.get(key)
      if (seen && !isDeepStrictEqual(seen.type, type)) {
        throw new Error(`${type.kind} ${type.name} differs between ${seen.path} and ${object.path}`)
      }
      if (!seen) merged.set(key, { type, path: object.path })
    }
  }
  return [...merged.values()].map(({ type }) => type)
}

const union = (names) => (names.length === 0 ? 'never' : names.map((name) => `'${name}'`).join(' | '))

/** `words` as comment lines of at most 100 characters. */
function comment(words) {
  const lines = ['//']
  for (const word of words) {
    if (lines.at(-1).length + word.length + 1 > 100) lines.push('//')
    lines[lines.length - 1] += ` ${word}`
  }
  return lines
}

function render(output, objects) {
  const lines = comment([
    'Generated by scripts/generate-abi.js from the BTF and ELF symbols of',
    ...objects.map((object, i) => `${relative(process.cwd(), object.path)}${i === objects.length - 1 ? '.' : ','}`),
    'Do not edit: bpf/usdtrace.h and the bpf/*.bpf.c sources are the definition, and `make`',
    `regenerates ${relative(process.cwd(), output)} whenever they change.`,
  ])
  for (const type of mergeTypes(objects)) {
    lines.push('')
    if (type.kind === 'struct') {
      lines.push(`/** struct ${type.name}: its size, and its fields' offsets and sizes, in bytes. */`)
      lines.push(`export const ${type.name.toUpperCase()} = {`)
      lines.push(`  size: ${type.layout.size},`)
      lines.push('  fields: {')
      for (const [field, offset] of type.layout.fields) lines.push(`    ${field}: ${offset},`)
      lines.push('  },')
      lines.push('  sizes: {')
      for (const [field, , size] of type.layout.fields) lines.push(`    ${field}: ${size},`)
      lines.push('  },')
      lines.push('} as const')
    } else {
      lines.push(`// enum ${type.name}`)
      for (const [name, value] of type.values) lines.push(`export const ${name} = ${value}`)
    }
  }
  lines.push('')
  lines.push('/** What each BPF object lets user space name: programs, maps, .rodata constants, .bss counters. */')
  lines.push('export interface BpfObjects {')
  for (const object of objects) {
    lines.push(`  ${object.name}: {`)
    lines.push(`    programs: ${union(object.programs)}`)
    lines.push(`    maps: ${union(object.maps)}`)
    if (object.constants.length === 0) lines.push('    constants: {}')
    else lines.push('    constants: {', ...object.constants.map(([name, type]) => `      ${name}: ${type}`), '    }')
    lines.push(`    counters: ${union(object.counters)}`)
    lines.push('  }')
  }
  lines.push('}')
  return `${lines.join('\n')}\n`
}

const [output, ...paths] = process.argv.slice(2)
if (!output || paths.length === 0) {
  console.error('usage: node scripts/generate-abi.js OUTPUT.ts OBJECT.bpf.o...')
  process.exit(2)
}
const objects = paths.sort().map(readObject)
if (!objects.some((object) => object.types.length > 0)) {
  throw new Error(`no object carries struct ${ANCHOR} (bpf/usdtrace.h) in its BTF`)
}
writeFileSync(output, render(output, objects))
