/*
 * A stand-in for CPython 3.6 and 3.7 builds with --with-dtrace, for test/streams-errors.test.ts:
 * the gc probes every probe-enabled CPython has, the import probes with -DIMPORT_PROBES (3.7 added
 * them), and never the audit probe (3.8 added it); with -DNO_PROBES, a build without --with-dtrace. Like those versions it exports no Py_Version,
 * so the test names the file python3.6 or python3.7 and the version comes from the name. It fires
 * its probes once per read from stdin, prints "ready" and exits when stdin closes.
 */
#define _SDT_HAS_SEMAPHORES 1
#include <stdio.h>
#include <sys/sdt.h>
#include <unistd.h>

#define SEMAPHORE(name) \
  __extension__ unsigned short python_##name##_semaphore __attribute__((used, section(".probes"))) = 0

#ifndef NO_PROBES
SEMAPHORE(gc__start);
SEMAPHORE(gc__done);
#endif
#ifdef IMPORT_PROBES
SEMAPHORE(import__find__load__start);
SEMAPHORE(import__find__load__done);
#endif

static void __attribute__((noinline)) fire_probes(const char *module, int generation) {
#ifndef NO_PROBES
  if (python_gc__start_semaphore) STAP_PROBE1(python, gc__start, generation);
  if (python_gc__done_semaphore) STAP_PROBE1(python, gc__done, (long)0);
#endif
#ifdef IMPORT_PROBES
  if (python_import__find__load__start_semaphore) STAP_PROBE1(python, import__find__load__start, module);
  if (python_import__find__load__done_semaphore) STAP_PROBE2(python, import__find__load__done, module, 1);
#endif
}

int main(void) {
  printf("ready\n");
  fflush(stdout);
  char buf[256];
  while (read(0, buf, sizeof buf) > 0) fire_probes("sys", 2);
  return 0;
}
