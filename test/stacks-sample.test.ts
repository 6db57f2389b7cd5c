// sampleStacks and stackProfile on every CPython on this machine, probes or not: sampled shares
// against the threads' own CPU time, waits against their sleeps. Samples are read both ways, as
// events and as batches (test/fixtures/readers.ts).
import t from 'tap'
import { sampleStacks, stackProfile } from '../src/index.js'
import { STACK_PYTHONS } from './fixtures/processes.js'
import { eachReader } from './fixtures/readers.js'
import { CLOCK_TICKS, STACKS_TARGET as TARGET, asTriples, cpuTicks, startStacksTarget as start } from './fixtures/stacks.js'

/** Samples of a spinning thread against its CPU time times the rate. */
const SHARE_BAND = [0.5, 1.5] as const

for (const python of STACK_PYTHONS) {
  t.test(`${python}: a spinning thread is sampled as often as it runs, a sleeping one waits as long as it sleeps`, (t) =>
    eachReader(t, async (t, reader) => {
      const sleepSeconds = 0.05
      const { pid, report } = await start(t, python, ['busy', String(sleepSeconds)])
      const spinner = report.spinner as number
      const sleeper = report.sleeper as number
      const hz = 99
      const trace = sampleStacks({ pid, hz, offCpu: true })
      await trace.ready
      const ticks = cpuTicks(pid, spinner)
      const startedNs = process.hrtime.bigint()
      const closing = setTimeout(() => void trace.close(), 2000)
      const { rows } = await reader.samples(trace)
      clearTimeout(closing)
      const spun = (cpuTicks(pid, spinner) - ticks) / CLOCK_TICKS
      const windowNs = process.hrtime.bigint() - startedNs
      t.equal(trace.lost, 0, 'nothing lost')
      t.ok(rows.every((row) => row.pid === pid), 'rows of the target only')
      // The main thread blocks on stdin before the trace starts, and is never back on a CPU.
      const threads = [spinner, sleeper, pid]
      const tids = new Set(rows.map((row) => row.tid))
      t.ok([...tids].every((tid) => threads.includes(tid)), `rows of the threads the target reported only (${[...tids]})`)

      const spinning = rows.filter((row) => row.tid === spinner && row.onCpu)
      const inSpin = spinning.filter((row) => row.frames[0]?.func === 'spin' && row.frames[0].file === TARGET)
      t.ok(inSpin.length >= 0.95 * spinning.length, `${inSpin.length} of the spinner's ${spinning.length} on-CPU rows are in spin()`)
      // The CPU clock's ticks and the scheduler's CPU time part ways on a loaded virtual machine
      // (a guest's timers fire late, and at most once, after its vCPU waited): a band, not equality.
      const expected = spun * hz
      t.ok(
        inSpin.length > SHARE_BAND[0] * expected && inSpin.length < SHARE_BAND[1] * expected,
        `${inSpin.length} rows in spin() for ${spun.toFixed(2)} s of its CPU time at ${hz} Hz (expected ${expected.toFixed(0)})`,
      )

      const waits = rows.filter((row) => row.tid === sleeper && !row.onCpu && row.frames[0]?.func === 'sleeper')
      const waited = waits.reduce((sum, row) => sum + row.offCpuNs!, 0n)
      t.ok(waited > (windowNs * 7n) / 10n && waited <= windowNs, `the sleeper waited ${waited / 1_000_000n} ms of ${windowNs / 1_000_000n}`)
      // A wait per sleep, none merged; on a loaded machine each sleep ends late, so fewer fit the window.
      const sleeps = waits.filter((row) => row.offCpuNs! >= BigInt(sleepSeconds * 0.9e9))
      const expectedSleeps = Number(windowNs) / 1e9 / sleepSeconds
      t.ok(
        sleeps.length > 0.3 * expectedSleeps && sleeps.length <= expectedSleeps + 1,
        `${sleeps.length} waits of at least a sleep's length (${expectedSleeps.toFixed(0)} sleeps fit the window)`,
      )
      t.ok(rows.filter((row) => !row.onCpu).every((row) => row.offCpuNs! > 0n), 'every off-CPU row says how long it waited')
      t.ok(rows.filter((row) => row.onCpu).every((row) => row.offCpuNs === undefined), 'an on-CPU row has no wait')
    }),
  )

  t.test(`${python}: stackProfile sums the same in the kernel, one entry per distinct stack`, async (t) => {
    const { pid, report } = await start(t, python, ['busy', '0.05'])
    const spinner = report.spinner as number
    const hz = 199
    const profile = stackProfile(pid, { hz, intervalMs: 500, offCpu: true })
    await profile.ready
    const ticks = cpuTicks(pid, spinner)
    const startedNs = process.hrtime.bigint()
    let spinSamples = 0
    let sleeperWaitNs = 0n
    let snapshots = 0
    for await (const snapshot of profile) {
      t.equal(snapshot.dropped, 0, 'nothing dropped')
      const distinct = new Set(snapshot.stacks.map((stack) => JSON.stringify([stack.onCpu, asTriples(stack.frames)])))
      t.equal(distinct.size, snapshot.stacks.length, 'each stack once per snapshot')
      for (const stack of snapshot.stacks) {
        if (stack.onCpu && stack.frames[0]?.func === 'spin') spinSamples += stack.samples
        if (!stack.onCpu && stack.frames[0]?.func === 'sleeper') sleeperWaitNs += stack.offCpuNs
      }
      if (++snapshots === 4) break
    }
    const spun = (cpuTicks(pid, spinner) - ticks) / CLOCK_TICKS
    const windowNs = process.hrtime.bigint() - startedNs
    const expected = spun * hz
    t.ok(spinSamples > SHARE_BAND[0] * expected && spinSamples < SHARE_BAND[1] * expected, `${spinSamples} samples in spin() (expected ${expected.toFixed(0)})`)
    t.ok(sleeperWaitNs > (windowNs * 6n) / 10n && sleeperWaitNs <= windowNs, `sleeper waited ${sleeperWaitNs / 1_000_000n} ms of ${windowNs / 1_000_000n}`)
  })
}
