// The API reference (TypeDoc, `npm run docs`) documents every exported name and field without a
// warning, each TraceError code included, and knows the same codes as the table in docs/api.md.
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ROOT, tmpDir } from './fixtures/package.js'

interface Reflection {
  name: string
  comment?: { summary: { text: string }[] }
  children?: Reflection[]
  type?: { type: string; types?: { type: string; value?: string }[]; elementSummaries?: { text: string }[][] }
}

const summary = (parts: { text: string }[] | undefined) => (parts ?? []).map((part) => part.text).join('').trim()

const out = tmpDir(t, 'docs')
const typedoc = spawnSync(
  process.execPath,
  [
    join(ROOT, 'node_modules/typedoc/bin/typedoc'),
    ...['--out', join(out, 'html'), '--json', join(out, 'api.json')],
    ...['--treatWarningsAsErrors', '--treatValidationWarningsAsErrors'],
  ],
  { cwd: ROOT, encoding: 'utf8' },
)

t.test('typedoc succeeds with every warning an error', async (t) => {
  t.equal(typedoc.status, 0, typedoc.status === 0 ? 'no warnings' : `${typedoc.stdout}${typedoc.stderr}`)
  t.ok(existsSync(join(out, 'html', 'index.html')), 'HTML written')
})

t.test('the event types and options document every field', async (t) => {
  const api = JSON.parse(readFileSync(join(out, 'api.json'), 'utf8')) as Reflection
  for (const name of ['CallEvent', 'TraceCallsOptions', 'StreamOptions', 'TargetOptions', 'DoctorCheck', 'Inspection']) {
    const declaration = api.children!.find((child) => child.name === name)!
    t.ok(summary(declaration.comment?.summary), `${name} has a summary`)
    for (const field of declaration.children ?? []) {
      t.ok(summary(field.comment?.summary), `${name}.${field.name} is documented`)
    }
  }
})

t.test('every TraceError code is documented, the same codes as the table in docs/api.md', async (t) => {
  const api = JSON.parse(readFileSync(join(out, 'api.json'), 'utf8')) as Reflection
  const union = api.children!.find((child) => child.name === 'TraceErrorCode')!.type!
  const codes = union.types!.map((member) => member.value!)
  union.types!.forEach((member, i) => t.ok(summary(union.elementSummaries?.[i]), `${member.value} is documented`))
  const reference = readFileSync(join(ROOT, 'docs/api.md'), 'utf8')
  const start = reference.indexOf('## `TraceError`')
  const end = reference.indexOf('`TraceErrorCode` is the union', start)
  t.ok(start !== -1 && end !== -1, 'docs/api.md has the TraceError section')
  const tableCodes = [...reference.slice(start, end).matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1])
  t.same([...codes].sort(), [...tableCodes].sort(), 'the table in docs/api.md lists exactly these codes')
})
