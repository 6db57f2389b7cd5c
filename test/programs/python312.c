/*
 * A stand-in for a CPython 3.12 build with --with-dtrace, for test/errors.test.ts: it exports
 * Py_Version as 3.12 does and carries the python probes 3.12 kept (gc, imports, audit), with
 * semaphores in .probes as CPython's dtrace-generated header declares them, but not
 * function__entry, function__return or line, which 3.12 removed (gh-104280). The test compiles it
 * with -rdynamic into a file named python3.12. It prints "ready" and waits for stdin to close.
 */
#define _SDT_HAS_SEMAPHORES 1
#include <stdio.h>
#include <sys/sdt.h>
#include <unistd.h>

/* PY_VERSION_HEX of 3.12.4 final, as Python/getversion.c defines it. */
const unsigned long Py_Version = 0x030C04F0;

#define SEMAPHORE(name) \
  __extension__ unsigned short python_##name##_semaphore __attribute__((used, section(".probes"))) = 0

SEMAPHORE(gc__start);
SEMAPHORE(gc__done);
SEMAPHORE(import__find__load__start);
SEMAPHORE(import__find__load__done);
SEMAPHORE(audit);

/* Fires each probe whose semaphore a tracer raised, with CPython's argument types. */
static void __attribute__((noinline)) fire_probes(const char *module, int generation) {
  if (python_gc__start_semaphore) STAP_PROBE1(python, gc__start, generation);
  if (python_gc__done_semaphore) STAP_PROBE1(python, gc__done, (long)0);
  if (python_import__find__load__start_semaphore) STAP_PROBE1(python, import__find__load__start, module);
  if (python_import__find__load__done_semaphore) STAP_PROBE2(python, import__find__load__done, module, 1);
  if (python_audit_semaphore) STAP_PROBE2(python, audit, "import", (void *)0);
}

int main(void) {
  fire_probes("sys", 0);
  printf("ready\n");
  fflush(stdout);
  char buf[256];
  while (read(0, buf, sizeof buf) > 0) fire_probes("sys", 2);
  return 0;
}
