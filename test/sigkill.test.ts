// The 3.11 line semaphore is raised through the kernel (a uprobe's ref_ctr_offset), so a tracer
// killed with SIGKILL leaves nothing raised: read straight from the target's memory.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { readSemaphores } from './semaphores.js'
import { startWorkload } from './targets.js'

const distIndex = new URL('../dist/index.js', import.meta.url).href

t.test('SIGKILL of the tracer lowers every semaphore it raised', async (t) => {
  const target = await startWorkload(t, ['lines'])
  target.go()
  t.same(readSemaphores(target.pid), { entry: 0, return: 0, line: 0 }, 'before: nothing raised')

  const script = `
    import { traceCalls } from ${JSON.stringify(distIndex)}
    const trace = traceCalls(${target.pid})
    await trace.ready
    console.log('attached')
    for await (const event of trace) void event`
  const tracer = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => {
    if (tracer.exitCode === null && tracer.signalCode === null) tracer.kill('SIGKILL')
  })
  await new Promise<void>((resolve, reject) => {
    tracer.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('attached') && resolve())
    tracer.once('exit', (code) => reject(new Error(`tracer exited with ${code} before attaching`)))
  })
  t.same(readSemaphores(target.pid), { entry: 1, return: 1, line: 1 }, 'during: entry, return and line raised')

  const exited = once(tracer, 'exit')
  tracer.kill('SIGKILL')
  const [, signal] = await exited
  t.equal(signal, 'SIGKILL', 'the tracer died without cleaning up')
  let after = readSemaphores(target.pid)
  for (let i = 0; i < 50 && (after.entry || after.return || after.line); i++) {
    await sleep(100)
    after = readSemaphores(target.pid)
  }
  t.same(after, { entry: 0, return: 0, line: 0 }, 'after: the kernel lowered every semaphore')
  t.equal(target.exitCode, null, 'the target runs on')
})
