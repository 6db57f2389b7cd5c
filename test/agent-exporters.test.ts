// The agent's pushes, received on loopback as the engines receive them: OTLP/HTTP decoded with
// OpenTelemetry's own protobuf definitions (the root protobufjs generated from opentelemetry-proto,
// as @opentelemetry/otlp-transformer 0.212 ships it), and pprof pushed the way Pyroscope's /ingest
// takes it, read back with `go tool pprof`. The target makes slow requests of two slow steps and
// one quick step each: the trace must hold each request with exactly its two steps as children,
// and the profiles every call.
import { once } from 'node:events'
import t from 'tap'
import otlpRoot from '@opentelemetry/otlp-transformer/build/src/generated/root.js'
import { tmpDir } from './fixtures/package.js'
import { pprofTop } from './fixtures/pprof.js'
import { eventually, pushedProfiles, receiver, scrape, startAgent, valueOf, type Received } from './fixtures/agent.js'
import { WORKLOADS, startWorkload } from './targets.js'

const REQUESTS = 3
const STEP_SECONDS = 0.3
/** The span threshold: far below a slow step (300 ms), far above a quick one (microseconds). */
const SLOW_MS = 100

type AnyValue = { stringValue?: string; intValue?: number | { toString(): string } }
type KeyValue = { key: string; value: AnyValue }
interface DecodedSpan {
  name: string
  traceId: string
  spanId: string
  parentSpanId: string
  attributes: Record<string, string | number>
  resource: Record<string, string | number>
}

function attributes(list: KeyValue[] | undefined): Record<string, string | number> {
  return Object.fromEntries((list ?? []).map(({ key, value }) => [key, value.stringValue ?? Number(String(value.intValue))]))
}

/** Every span of every OTLP request, with its resource's attributes. */
function decodeSpans(requests: Received[]): DecodedSpan[] {
  const { ExportTraceServiceRequest } = otlpRoot.opentelemetry.proto.collector.trace.v1
  const hex = (bytes: Uint8Array | undefined) => Buffer.from(bytes ?? []).toString('hex')
  return requests.flatMap((request) =>
    (ExportTraceServiceRequest.decode(request.body).resourceSpans ?? []).flatMap((resourceSpans) =>
      (resourceSpans.scopeSpans ?? []).flatMap((scopeSpans) =>
        (scopeSpans.spans ?? []).map((span) => ({
          name: span.name ?? '',
          traceId: hex(span.traceId ?? undefined),
          spanId: hex(span.spanId ?? undefined),
          parentSpanId: hex(span.parentSpanId ?? undefined),
          attributes: attributes(span.attributes as KeyValue[]),
          resource: attributes(resourceSpans.resource?.attributes as KeyValue[]),
        })),
      ),
    ),
  )
}

t.test('slow calls arrive as OTLP spans with their slow callees as children; profiles as pprof', async (t) => {
  const otlp = await receiver(t)
  const pyroscope = await receiver(t)
  const target = await startWorkload(t, ['slow', String(REQUESTS), String(STEP_SECONDS)])
  const agent = await startAgent(t, [
    '--pid', String(target.pid),
    '--otlp-endpoint', `${otlp.url}/v1/traces`,
    '--slow', String(SLOW_MS),
    '--pprof-endpoint', `${pyroscope.url}/ingest`,
    '--profile-interval', '1',
    '--interval', '1',
    '--linger', '600',
  ])
  target.go()
  const exited = once(target, 'exit')
  await exited

  // Spans: run_slow → slow_request (× REQUESTS) → slow_step (× 2 each); quick_step is no span.
  const spans = await eventually('every slow span', async () => {
    const decoded = decodeSpans(otlp.received.filter((r) => r.path === '/v1/traces' && r.body.length > 0))
    return decoded.filter((span) => span.name === 'slow_step').length === 2 * REQUESTS && decoded.some((s) => s.name === 'run_slow') ? decoded : undefined
  })
  t.same(spans.map((s) => s.name).sort(), ['run_slow', ...Array(REQUESTS).fill('slow_request'), ...Array(2 * REQUESTS).fill('slow_step')].sort(), 'the slow calls, and only they')
  const [root] = spans.filter((s) => s.name === 'run_slow')
  t.equal(root!.parentSpanId, '', 'run_slow is the root')
  const requests = spans.filter((s) => s.name === 'slow_request')
  for (const request of requests) {
    t.equal(request.parentSpanId, root!.spanId, 'a request is a child of run_slow')
    t.equal(request.traceId, root!.traceId, 'in the same trace')
    const steps = spans.filter((s) => s.parentSpanId === request.spanId)
    t.same(steps.map((s) => s.name), ['slow_step', 'slow_step'], 'its two slow steps are its children')
  }
  t.match(requests[0]!.attributes, { 'code.function': 'slow_request', 'code.filepath': WORKLOADS, 'thread.id': target.pid }, 'code and thread attributes')
  t.type(requests[0]!.attributes['code.lineno'], 'number')
  t.match(root!.resource, { 'service.name': 'workloads', 'process.pid': target.pid, 'process.executable.path': '/usr/bin/python3.11' }, 'the resource names the service and process')

  // Profiles: every push merged, as go tool pprof merges files.
  const dir = tmpDir(t, 'agent-pprof')
  // The call-time profiles; the sampled ones pushed beside them are agent-samples.test.ts's.
  const pushes = await eventually('every call in the pushed profiles', async () => {
    const pushes = await pushedProfiles(pyroscope.received, dir, 'calls/count')
    if (pushes.length === 0) return undefined
    return pprofTop(pushes.map((push) => push.file), 'calls').rows.get('quick_step')?.flat === REQUESTS ? pushes : undefined
  })
  const files = pushes.map((push) => push.file)
  t.match(pushes[0]!.name, new RegExp(`^workloads\\{pid=${target.pid},executable=/usr/bin/python3.11\\}$`), 'named as Pyroscope names applications')
  const { rows } = pprofTop(files, 'calls')
  t.same(rows.get('slow_step'), { flat: 2 * REQUESTS, cum: 2 * REQUESTS }, 'every slow_step call')
  t.same(rows.get('slow_request'), { flat: REQUESTS, cum: 4 * REQUESTS }, 'every request, with its steps under it')
  t.same(rows.get('run_slow'), { flat: 1, cum: 1 + 4 * REQUESTS }, 'the loop')

  agent.child.kill('SIGTERM')
  t.equal(await agent.exited, 143, 'SIGTERM ends it, status 143')
  t.match(agent.stderr, /every probe detached; ended: terminated \(SIGTERM\)/, 'after detaching everything')
})

t.test('an OTLP endpoint that goes away while the agent runs: batches fail and spans drop, counted; the agent runs on', async (t) => {
  const otlp = await receiver(t)
  const target = await startWorkload(t, ['slow', '2', String(STEP_SECONDS)])
  const agent = await startAgent(t, ['--pid', String(target.pid), '--otlp-endpoint', `${otlp.url}/v1/traces`, '--slow', String(SLOW_MS), '--no-syscalls', '--linger', '600'])
  // Gone after the check at start: every later connection is refused.
  await otlp.close()
  target.go()
  await once(target, 'exit')
  // run_slow, two requests, four steps: seven spans, none of which can be delivered.
  const samples = await eventually('the failed export counted', async () => {
    const samples = await scrape(agent.url)
    return valueOf(samples, 'usdtrace_agent_spans_total', { outcome: 'dropped' }) === 7 ? samples : undefined
  })
  t.ok(valueOf(samples, 'usdtrace_agent_exports_total', { exporter: 'otlp', outcome: 'failed' })! >= 1, 'a failed batch counted')
  t.equal(valueOf(samples, 'usdtrace_agent_spans_total', { outcome: 'exported' }), undefined, 'nothing counted as exported')
  t.equal(agent.child.exitCode, null, 'the agent runs on')
  t.equal(otlp.received.filter((r) => r.body.length > 0).length, 0, 'nothing reached the receiver')
})
