"""The benchmarks' target. Each stdin line runs one piece of work and prints the seconds it took,
measured inside the target so the tracer's own CPU time is not counted. `fib N`: fib(N), a
Python call every few tens of nanoseconds. `calls N`: N calls of a trivial function, as fast as
it can, so N + 1 returns (the leaf's, then the loop's own); `paced N`: the same, a millisecond apart: a fixed count, so every consumer of
a flood gets the same events. Lines are read as bytes: decoding them would run Python code
(codecs), whose returns would be traced too."""
import sys
import time


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def leaf():
    return 1


def calls(count):
    for _ in range(count):
        leaf()


def paced(count):
    for _ in range(count):
        leaf()
        time.sleep(0.001)


WORK = {"fib": fib, "calls": calls, "paced": paced}

print("ready", flush=True)
work, argument = WORK[sys.argv[1]], int(sys.argv[2])
for _ in sys.stdin.buffer:
    start = time.perf_counter()
    work(argument)
    print(time.perf_counter() - start, flush=True)
