"""A call-heavy workload for the benchmarks: each stdin line runs fib(N) once and prints the
seconds it took, measured inside the target, so the tracer's own CPU time is not counted."""
import sys
import time


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


n = int(sys.argv[1])
print("ready", flush=True)
for _ in sys.stdin:
    start = time.perf_counter()
    fib(n)
    print(time.perf_counter() - start, flush=True)
