/*
 * For test/thread-churn.test.ts: prints "ready", waits for a line on stdin, then starts N threads one
 * after another (N from argv). Each calls getppid() and ends in pthread_exit(), a call that never
 * returns. Prints "half" once N/2 threads have exited and "done" once all have, waiting for a line
 * after each.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static pid_t last_tid;

static void *serve(void *unused) {
  (void)unused;
  getppid();
  last_tid = gettid();
  pthread_exit(NULL);
}

static void wait_for_line(const char *said) {
  char line[16];
  printf("%s\n", said);
  fflush(stdout);
  if (!fgets(line, sizeof line, stdin)) exit(1);
}

/* pthread_join returns before the kernel is done with the thread; its /proc entry goes after. */
static void wait_until_gone(pid_t tid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%d", tid);
  while (access(path, F_OK) == 0) usleep(1000);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s N\n", argv[0]);
    return 2;
  }
  long n = atol(argv[1]);
  wait_for_line("ready");
  for (long i = 0; i < n; i++) {
    pthread_t thread;
    if (pthread_create(&thread, NULL, serve, NULL) || pthread_join(thread, NULL)) return 1;
    if (i + 1 == n / 2 || i + 1 == n) {
      wait_until_gone(last_tid);
      wait_for_line(i + 1 < n ? "half" : "done");
    }
  }
  return 0;
}
