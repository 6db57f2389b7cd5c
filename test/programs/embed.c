/*
 * A minimal program embedding libpython, for test/libpython.test.ts: it runs the script given as
 * its first argument with PyRun_SimpleString, then finalizes. The test builds it with
 * `gcc embed.c $(python3.11-config --embed --cflags --ldflags)`, so the interpreter and its USDT
 * probes live in libpython3.11.so, not in the executable.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s SCRIPT\n", argv[0]);
    return 2;
  }
  Py_Initialize();
  int failed = PyRun_SimpleString(argv[1]);
  if (Py_FinalizeEx() < 0) return 120;
  return failed ? 1 : 0;
}
