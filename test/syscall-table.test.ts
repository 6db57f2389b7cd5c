// The syscall table compiled into usdtrace against the kernel headers of this machine, read here
// independently (linux-libc-dev's asm/unistd_64.h), and the names a few numbers must have.
import { readFileSync } from 'node:fs'
import t from 'tap'
import { syscallTable } from '../src/streams/syscall-table.js'

t.test('x86_64: every __NR_ of asm/unistd_64.h has that number and name', async (t) => {
  t.equal(process.arch, 'x64', 'the suite runs on x86_64')
  const header = readFileSync('/usr/include/x86_64-linux-gnu/asm/unistd_64.h', 'utf8')
  const defined = [...header.matchAll(/^#define __NR_(\w+) (\d+)$/gm)].map((m) => [m[1]!, Number(m[2])] as const)
  t.ok(defined.length > 300, `the header defines ${defined.length} syscalls`)
  const table = syscallTable()
  const wrong = defined.filter(([name, nr]) => table.numberOf(name) !== nr || table.nameOf(nr) !== name)
  t.same(wrong, [], 'no name or number differs')
  t.equal(table.nameOf(9999), 'syscall_9999', 'a number outside the table is still named')
})

t.test('aarch64: the generic numbering (asm-generic/unistd.h), spot-checked', async (t) => {
  const table = syscallTable('arm64')
  const known = { openat: 56, close: 57, read: 63, write: 64, newfstatat: 79, exit: 93, exit_group: 94, getppid: 173, execve: 221, clone3: 435 }
  for (const [name, nr] of Object.entries(known)) t.equal(table.numberOf(name), nr, `${name} is ${nr}`)
  t.equal(table.numberOf('open'), undefined, 'aarch64 has no open(2), only openat')
  t.equal(table.nameOf(451), 'cachestat', 'the numbers every architecture shares since 4.20 follow')
})
