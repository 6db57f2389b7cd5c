/*
 * A program of another "runtime" that carries USDT probes of its own (provider demoapp), for the
 * CLI tests: `usdtrace ps` must find it by its notes, `usdtrace probes` must list them. It prints
 * "ready", then fires request__start and request__done once per line on stdin until stdin closes.
 */
#include <stdio.h>
#include <string.h>
#include <sys/sdt.h>
#include <unistd.h>

int main(void) {
  char line[256];
  int requests = 0;
  printf("ready\n");
  fflush(stdout);
  while (fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\n")] = 0;
    DTRACE_PROBE2(demoapp, request__start, line, requests);
    DTRACE_PROBE1(demoapp, request__done, (long)requests++);
  }
  return 0;
}
