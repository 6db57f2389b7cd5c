"""Workloads for the call-tracing tests. Prints "ready", runs the named workload when a line
arrives on stdin (so the tracer attaches first), then exits."""
import asyncio
import os
import sys
import threading
import time


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def run_fib(n):
    fib(int(n))


def run_threads(count, n):
    workers = [threading.Thread(target=fib, args=(int(n),)) for _ in range(int(count))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def countdown(n):
    while n > 0:
        yield n
        n -= 1


async def tick(n):
    for _ in range(n):
        await asyncio.sleep(0)
    return n


def fail():
    raise ValueError("expected")


def catch():
    try:
        fail()
    except ValueError:
        pass


def run_generators():
    for _ in countdown(3):
        pass
    asyncio.run(tick(2))
    catch()


def run_names(name_bytes, path_bytes):
    # A file name only needs to be a string in the code object; it need not exist on disk.
    func = "f" * int(name_bytes)
    path = "/" + "p" * (int(path_bytes) - 1)
    scope = {}
    exec(compile(f"def {func}():\n    return 1\n", path, "exec"), scope)
    scope[func]()


def leaf():
    return 1


def run_flood(seconds):
    deadline = time.monotonic() + float(seconds)
    calls = 0
    while time.monotonic() < deadline:
        for _ in range(1000):
            leaf()
        calls += 1000
    print(calls, flush=True)


def run_fork(count, n):
    # The workers are forked only now, after the tracer attached: they are new processes.
    workers = []
    for _ in range(int(count)):
        pid = os.fork()
        if pid == 0:
            fib(int(n))
            os._exit(0)
        workers.append(pid)
    for pid in workers:
        os.waitpid(pid, 0)
        print(pid, flush=True)


def run_calls(n):
    for _ in range(int(n)):
        leaf()


def run_lines():
    for _ in sys.stdin:
        leaf()


def handle_request():
    time.sleep(0.002)


def run_serve():
    # Like a service: a request taking ~2 ms after another, until it is killed.
    while True:
        handle_request()


WORKLOADS = {
    "fib": run_fib,
    "threads": run_threads,
    "generators": run_generators,
    "names": run_names,
    "flood": run_flood,
    "calls": run_calls,
    "fork": run_fork,
    "lines": run_lines,
    "serve": run_serve,
}

if __name__ == "__main__":
    workload = WORKLOADS[sys.argv[1]]
    print("ready", flush=True)
    sys.stdin.readline()
    workload(*sys.argv[2:])
