/*
 * A shared library for test/libcalls.test.ts, built at -O0 so the calls stay calls:
 * countdown(n) calls itself n times, each call returning how many calls it made below it;
 * escape(n) calls abandon(), which never returns: it longjmps back into escape, which returns n.
 */
#include <setjmp.h>

static jmp_buf back;

long countdown(long n) {
  return n == 0 ? 0 : 1 + countdown(n - 1);
}

void abandon(void) {
  longjmp(back, 1);
}

long escape(long n) {
  if (setjmp(back) == 0) abandon();
  return n;
}
