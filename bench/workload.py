"""The benchmarks' target. `fib N`: each stdin line runs fib(N) once and prints the seconds it took,
measured inside the target so the tracer's own CPU time is not counted. `flood SECONDS`: after
one stdin line, calls a trivial function as fast as it can for SECONDS, then prints the count."""
import sys
import time


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def leaf():
    return 1


def run_fib(n):
    for _ in sys.stdin:
        start = time.perf_counter()
        fib(n)
        print(time.perf_counter() - start, flush=True)


def run_flood(seconds):
    sys.stdin.readline()
    deadline = time.monotonic() + seconds
    calls = 0
    while time.monotonic() < deadline:
        for _ in range(1000):
            leaf()
        calls += 1000
    print(calls, flush=True)


print("ready", flush=True)
if sys.argv[1] == "fib":
    run_fib(int(sys.argv[2]))
else:
    run_flood(float(sys.argv[2]))
