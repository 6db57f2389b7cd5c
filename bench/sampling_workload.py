"""The stack sampling benchmarks' target, for any CPython from 3.10 on. Each stdin line runs one
piece of work and prints the seconds it took, measured inside the target. `cpu N`: fib(N), pure
Python computing. `switch N`: N round trips between two threads over a pair of events, each a
block and a wake-up on either side, so every round trip is four context switches."""
import sys
import threading
import time


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


ping = threading.Event()
pong = threading.Event()


def answer():
    while True:
        ping.wait()
        ping.clear()
        pong.set()


def switch(count):
    for _ in range(count):
        ping.set()
        pong.wait()
        pong.clear()


threading.Thread(target=answer, daemon=True).start()
WORK = {"cpu": fib, "switch": switch}
print("ready", flush=True)
work, argument = WORK[sys.argv[1]], int(sys.argv[2])
for _ in sys.stdin.buffer:
    start = time.perf_counter()
    work(argument)
    print(time.perf_counter() - start, flush=True)
