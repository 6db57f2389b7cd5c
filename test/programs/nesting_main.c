/*
 * For test/libcalls.test.ts: prints "ready", waits for a line on stdin, then calls escape(N) and
 * countdown(N) from libnesting.so (N from argv) and prints their results.
 */
#include <stdio.h>
#include <stdlib.h>

long countdown(long n);
long escape(long n);

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s N\n", argv[0]);
    return 2;
  }
  printf("ready\n");
  fflush(stdout);
  char line[16];
  if (!fgets(line, sizeof line, stdin)) return 1;
  long n = atol(argv[1]);
  long escaped = escape(n);
  printf("%ld %ld\n", escaped, countdown(n));
  return 0;
}
