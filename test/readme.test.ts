// The README and docs/*.md are the API's documentation, so they are held to the code: every name
// src/index.ts exports is named in them, and every `js`/`ts` block type-checks against the
// package's types (tsc --strict) and runs against a live python3.11, and every relative link
// leads to a file there is (and to a heading of it, when it names one).
//
// The convention for blocks: `pid` is in scope (unless the block declares it) and is
// process.argv[2], the pid of a python3.11 that handles requests (a file read and a ~2 ms sleep)
// until it is killed; a block that calls `require` runs as CommonJS. A block must print
// something: once it has, the target is killed, which ends any trace it holds. A block preceded
// by `<!-- no-run: why -->` is only type-checked.
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import t, { type Test } from 'tap'
import ts from 'typescript'
import { ROOT, tmpDir } from './fixtures/package.js'
import { startWorkload } from './targets.js'

/** The documents a user reads: the README first, then docs/. */
const DOCUMENTS = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((name) => name.endsWith('.md')).map((name) => `docs/${name}`)]
const SILENCE_LIMIT_MS = 60_000

interface Block {
  /** the document it is in, e.g. docs/cli.md */
  document: string
  /** 1-based line of the opening fence */
  line: number
  language: 'js' | 'ts'
  code: string
  /** the `<!-- no-run: why -->` reason, if the block is only type-checked */
  noRun: string | undefined
  commonjs: boolean
}

function codeBlocks(document: string): Block[] {
  const lines = readFileSync(join(ROOT, document), 'utf8').split('\n')
  const blocks: Block[] = []
  for (let i = 0; i < lines.length; i++) {
    const fence = /^```(\w*)\s*$/.exec(lines[i]!)
    if (!fence) continue
    const end = lines.indexOf('```', i + 1)
    if (end === -1) throw new Error(`${document}:${i + 1}: unclosed code block`)
    const language = fence[1]
    if (language === 'js' || language === 'ts') {
      const code = lines.slice(i + 1, end).join('\n')
      const before = lines.slice(0, i).reverse().find((line) => line.trim() !== '') ?? ''
      const noRun = /^<!-- no-run: (.+) -->$/.exec(before)?.[1]
      blocks.push({ document, line: i + 1, language, code, noRun, commonjs: /\brequire\(/.test(code) })
    }
    i = end
  }
  return blocks
}

/** Names of everything src/index.ts exports, values and types, as the compiler sees them. */
function exportedNames(): string[] {
  const entry = join(ROOT, 'src/index.ts')
  const program = ts.createProgram([entry], { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext })
  const checker = program.getTypeChecker()
  const module = checker.getSymbolAtLocation(program.getSourceFile(entry)!)!
  return checker.getExportsOfModule(module).map((symbol) => symbol.name)
}

const blocks = DOCUMENTS.flatMap(codeBlocks)
const where = (block: Block) => `${block.document}:${block.line}`

t.test('every exported name is documented in README.md or docs/', async (t) => {
  const names = exportedNames()
  t.ok(names.includes('traceCalls') && names.includes('TraceErrorCode'), 'values and types are both seen')
  // Documented = named in code: an inline `span` or a code block.
  const text = DOCUMENTS.map((document) => readFileSync(join(ROOT, document), 'utf8')).join('\n')
  const code = [...text.matchAll(/`([^`\n]+)`/g)].map((m) => m[1]).join('\n') + blocks.map((b) => b.code).join('\n')
  for (const name of names) t.match(code, new RegExp(`\\b${name}\\b`), `${name} is documented`)
})

t.test('every no-run block says why it does not run', async (t) => {
  const noRun = blocks.filter((block) => block.noRun !== undefined)
  for (const block of noRun) t.ok(block.noRun!.length > 20, `${where(block)}: ${block.noRun}`)
  t.ok(noRun.length < blocks.length / 2, 'most blocks run')
})

/** The document's text outside code: fenced blocks and inline code spans hold no links or headings. */
function prose(document: string): string[] {
  const outside: string[] = []
  let fenced = false
  for (const line of readFileSync(join(ROOT, document), 'utf8').split('\n')) {
    if (line.startsWith('```')) fenced = !fenced
    else if (!fenced) outside.push(line)
  }
  return outside
}

/** The anchors GitHub gives a document's headings: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchors(document: string): Set<string> {
  const seen = new Map<string, number>()
  const result = new Set<string>()
  for (const line of prose(document)) {
    const heading = /^#{1,6}\s+(.*?)\s*$/.exec(line)
    if (!heading) continue
    const slug = heading[1]!.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-')
    const count = seen.get(slug) ?? 0
    seen.set(slug, count + 1)
    result.add(count === 0 ? slug : `${slug}-${count}`)
  }
  return result
}

t.test('every relative link in README.md and docs/ leads to a file, and to a heading there when it names one', async (t) => {
  let links = 0
  for (const document of DOCUMENTS) {
    for (const line of prose(document)) {
      for (const [, target] of line.replace(/`[^`]*`/g, '').matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z][a-z+.-]*:/i.test(target!)) continue
        links++
        const [path, anchor] = target!.split('#') as [string, string | undefined]
        const file = path === '' ? document : join(dirname(document), path)
        if (!t.ok(existsSync(join(ROOT, file)), `${document}: ${target} exists`)) continue
        if (anchor !== undefined) t.ok(file.endsWith('.md') && anchors(file).has(anchor), `${document}: ${target} names a heading of ${file}`)
      }
    }
  }
  t.ok(links > 20, `${links} relative links checked`)
})

/** A directory where `usdtrace` resolves to this package (built: dist/, dist-cjs/), like an installed one. */
function project(t: Test): string {
  const dir = tmpDir(t, 'readme')
  mkdirSync(join(dir, 'node_modules'))
  symlinkSync(ROOT, join(dir, 'node_modules', 'usdtrace'))
  return dir
}

function fileName(block: Block, index: number): string {
  const extension = { js: block.commonjs ? 'cjs' : 'mjs', ts: block.commonjs ? 'cts' : 'mts' }[block.language]
  return `block-${index}-${block.document.replace(/\W/g, '-')}-line-${block.line}.${extension}`
}

t.test('every block type-checks with tsc --strict against the package types', async (t) => {
  const dir = project(t)
  // `pid` as the blocks see it; in a run it is a module-level const instead.
  writeFileSync(join(dir, 'pid.d.ts'), 'declare var pid: number\n')
  const files = blocks.map((block, i) => {
    writeFileSync(join(dir, fileName(block, i)), block.code)
    return fileName(block, i)
  })
  const tsconfig = {
    compilerOptions: {
      strict: true,
      noEmit: true,
      allowJs: true,
      checkJs: true,
      target: 'ES2022',
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      typeRoots: [join(ROOT, 'node_modules/@types')],
      types: ['node'],
    },
    files: ['pid.d.ts', ...files],
  }
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(tsconfig))
  const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', '.', '--listFiles'], {
    cwd: dir,
    encoding: 'utf8',
  })
  const listed = tsc.stdout.split('\n')
  const errors = listed.filter((line) => line.includes('error TS')).join('\n')
  t.equal(tsc.status, 0, `tsc --strict${errors && `:\n${errors}`}`)
  for (const types of ['dist/index.d.ts', 'dist-cjs/index.d.ts']) {
    t.ok(listed.includes(join(ROOT, types)), `checked against ${types}`)
  }
  t.equal(files.length, blocks.length, `${blocks.length} blocks checked`)
})

blocks.forEach((block, index) => {
  if (block.noRun !== undefined) return
  t.test(`${where(block)} (${block.language}${block.commonjs ? ', CommonJS' : ''}) runs`, async (t) => {
    const dir = project(t)
    const source =
      block.language === 'ts'
        ? ts.transpileModule(block.code, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } })
            .outputText
        : block.code
    const file = fileName(block, index).replace(/\.mts$/, '.mjs').replace(/\.cts$/, '.cjs')
    const declaresPid = /^\s*(const|let|var) pid\b/m.test(source)
    writeFileSync(join(dir, file), declaresPid ? source : `const pid = Number(process.argv[2])\n${source}`)

    const target = await startWorkload(t, ['serve'])
    target.go()
    const run = spawn(process.execPath, [file, String(target.pid)], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
    t.teardown(() => void run.kill('SIGKILL'))
    let stderr = ''
    run.stderr.on('data', (d: Buffer) => (stderr += d))
    const exited = once(run, 'exit')
    // A block that never prints would otherwise hold the test until tap's timeout, saying nothing.
    const watchdog = setTimeout(() => run.kill('SIGKILL'), SILENCE_LIMIT_MS)
    t.teardown(() => clearTimeout(watchdog))
    const output: string[] = []
    for await (const line of createInterface({ input: run.stdout })) {
      // Its first output is all a block owes: the target's exit then ends any trace it holds.
      if (output.push(line) === 1) {
        clearTimeout(watchdog)
        target.kill('SIGKILL')
      }
    }
    const [code] = (await exited) as [number | null]
    t.equal(code, 0, `exits 0${stderr && `: ${stderr}`}`)
    t.ok(output.length > 0, output.length > 0 ? `prints: ${output[0]}` : `printed nothing in ${SILENCE_LIMIT_MS / 1000} s`)
  })
})
