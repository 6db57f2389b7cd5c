"""Workloads for the tracing tests. Prints "ready", runs the named workload when a line
arrives on stdin (so the tracer attaches first), then exits."""
import _thread
import asyncio
import gc
import os
import socket
import subprocess
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


def run_unique(count):
    # Each function's code object is freed before the next is made, so addresses get reused:
    # the output says how often a name string took the place of an earlier one.
    addresses = set()
    for i in range(int(count)):
        scope = {}
        exec(f"def unique_{i}():\n    return {i}\n", scope)
        addresses.add(id(scope[f"unique_{i}"].__code__.co_name))
        scope[f"unique_{i}"]()
        del scope
    print("reused", int(count) - len(addresses), flush=True)


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


def run_syscalls(count, missing):
    # os.open, unlike open(), makes no lseek of its own: every lseek here is one of the loop's.
    fd = os.open(__file__, os.O_RDONLY)
    for offset in range(int(count)):
        os.lseek(fd, offset, os.SEEK_SET)
        os.getppid()
    os.close(fd)
    try:
        open(missing)
    except FileNotFoundError:
        pass
    print(fd, flush=True)


def run_syscall_threads(count, calls):
    native_ids = []

    def work():
        native_ids.append(threading.get_native_id())
        for _ in range(int(calls)):
            os.getppid()

    workers = [threading.Thread(target=work) for _ in range(int(count))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(*native_ids, flush=True)


def run_selftime(count, n):
    # Each thread runs functions of its own (named after it), so per-function sums are per-thread sums.
    elapsed = {}

    def work(i):
        scope = {}
        source = (
            f"def fib_{i}(n):\n    return n if n < 2 else fib_{i}(n - 1) + fib_{i}(n - 2)\n"
            f"def outer_{i}(n):\n    return fib_{i}(n)\n"
        )
        exec(compile(source, f"<selftime {i}>", "exec"), scope)
        start = time.perf_counter_ns()
        scope[f"outer_{i}"](int(n))
        elapsed[i] = time.perf_counter_ns() - start

    workers = [threading.Thread(target=work, args=(i,)) for i in range(int(count))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for i in sorted(elapsed):
        print(i, elapsed[i], flush=True)


def run_churn(count):
    # Each function lives only for its calls: its code object and name strings are freed, and
    # the next function's are allocated at the addresses they leave.
    addresses = set()
    for i in range(int(count)):
        scope = {}
        exec(compile(f"def churn_{i}():\n    return {i}\n", f"<churn {i // 100}>", "exec"), scope)
        func = scope[f"churn_{i}"]
        addresses.add(id(func.__code__.co_name))
        for _ in range(i % 5 + 1):
            func()
        del scope, func
    print("reused", int(count) - len(addresses), flush=True)


def run_recreate(count, distinct):
    # Functions of `distinct` names, each made anew (a new code object, the old one freed) for
    # every one of `count` calls: one name comes back at many code objects' addresses.
    for i in range(int(count)):
        name = f"again_{i % int(distinct)}"
        scope = {}
        exec(f"def {name}():\n    return {i}\n", scope)
        scope[name]()
        del scope


def run_phases():
    # One phase per line: k calls of leaf() and k getppid syscalls, then "done".
    for line in sys.stdin:
        for _ in range(int(line)):
            leaf()
            os.getppid()
        print("done", flush=True)


def run_writes(count, failing):
    # Writes one byte per call to /dev/null, then tries to write to the fd once closed (each
    # such write fails with EBADF). The fd goes to stdout first: the tracer filters on it.
    fd = os.open(os.devnull, os.O_WRONLY)
    print(fd, flush=True)
    for _ in range(int(count)):
        os.write(fd, b"x")
    os.close(fd)
    for _ in range(int(failing)):
        try:
            os.write(fd, b"x")
        except OSError:
            pass


def run_getpid(count):
    for _ in range(int(count)):
        os.getpid()


class Node:
    pass


def make_cycles(n, touch_dicts):
    # In 3.11 attributes live in the instance itself; reading __dict__ makes a dict object of it.
    for _ in range(n):
        a, b = Node(), Node()
        a.peer, b.peer = b, a
        if touch_dicts:
            a.__dict__, b.__dict__


def run_gc_generations():
    for generation in (0, 1, 2):
        gc.collect(generation)
    # Skips interpreter finalization, which collects again.
    os._exit(0)


def run_gc_cycles(n, touch_dicts):
    gc.collect()
    make_cycles(int(n), touch_dicts == "dicts")
    print(gc.collect(), flush=True)
    os._exit(0)


def run_import_package(directory, package):
    sys.path.insert(0, directory)
    __import__(package)


def run_audit(path, port):
    open(path).close()
    with socket.socket() as connection:
        connection.connect(("127.0.0.1", int(port)))
    subprocess.run(["/bin/true"], check=True)
    # One argument of each kind the decoder knows, then more arguments and text than it keeps.
    sys.audit("usdtrace.kinds", 42, True, None, b"\x00ab", ("nested", -7, "\u00e9"), 2**70)
    sys.audit("usdtrace.long", "x" * 300, 1, 2, 3, 4, 5, 6)


def run_audit_events(count, distinct):
    # Events of known names in a known rotation, then one whose name is longer than the 62
    # bytes the kernel side keeps; then how many rotation events were made. Out through
    # os._exit, for finalizing would fire audit events of its own.
    made = 0
    for i in range(int(count)):
        sys.audit(f"usdtrace.batch_{i % int(distinct)}", i)
        made += 1
    sys.audit("usdtrace." + "n" * 80)
    print(made, flush=True)
    os._exit(0)


def run_stats(calls, collections, directory, modules, threads):
    # Only the named work calls Python functions: no comprehension (a function of its own in
    # 3.11), no return from here (os._exit), so `calls` leaf() calls are all the returns.
    for _ in range(int(calls)):
        leaf()
    found = 0
    for _ in range(int(collections)):
        found += gc.collect()
    sys.path.insert(0, directory)
    for i in range(int(modules)):
        __import__(f"stats_module_{i}")
    workers = []
    for _ in range(int(threads)):
        workers.append(threading.Thread(target=leaf))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(found, flush=True)
    os._exit(0)


def serve_request():
    leaf()
    os.getppid()


def serve_import():
    sys.modules.pop("churn_module", None)
    __import__("churn_module")


def serve_in_thread(serve):
    # A thread of its own per request, as socketserver's ThreadingMixIn starts, but through
    # _thread: threading's own Python code would be most of what is traced. Returns once the
    # work is done, with the thread's id.
    done = _thread.allocate_lock()
    done.acquire()
    native_id = []

    def run():
        serve()
        native_id.append(_thread.get_native_id())
        done.release()

    _thread.start_new_thread(run, ())
    done.acquire()
    return native_id[0]


def wait_until_gone(tid):
    # The thread may still be on its way out: the kernel drops its /proc entry once it has exited.
    while os.path.exists(f"/proc/self/task/{tid}"):
        time.sleep(0.001)


def run_thread_churn(count, work, directory=None):
    # One short-lived thread after another. The main thread serves once first, so it holds
    # whatever state a server thread does throughout. Prints "half" once half the threads have
    # exited and "done" once all have, and waits for a line after each.
    if directory:
        sys.path.insert(0, directory)
    serve = {"request": serve_request, "import": serve_import}[work]
    serve()
    for i in range(int(count)):
        tid = serve_in_thread(serve)
        if i + 1 in (int(count) // 2, int(count)):
            wait_until_gone(tid)
            print("half" if i + 1 < int(count) else "done", flush=True)
            sys.stdin.buffer.readline()


def descend(n):
    return 0 if n == 0 else descend(n - 1) + 1


def ping(n):
    return 0 if n == 0 else pong(n - 1) + 1


def pong(n):
    return 0 if n == 0 else ping(n - 1) + 1


def sink(n):
    if n == 0:
        raise ValueError("the bottom")
    sink(n - 1)


def deep_descend(n):
    descend(n)


def deep_mutual(n):
    ping(n)


def deep_unwind(n):
    try:
        sink(n)
    except ValueError:
        pass


def run_deep(kind, n):
    # N frames deep below deep_<kind>, which calls nothing else: descend, ping and pong in turn,
    # or sink until it raises. In a thread with a large stack: while traced, CPython 3.11 calls
    # each Python frame through C, some KiB of C stack a frame. Prints the thread's id and when
    # its deep_<kind> call began and ended (CLOCK_MONOTONIC, as the probes' timestamps).
    sys.setrecursionlimit(int(n) + 100)
    threading.stack_size(512 << 20)
    deep = globals()[f"deep_{kind}"]
    clock = []

    def run():
        clock.append(time.monotonic_ns())
        deep(int(n))
        clock.append(time.monotonic_ns())

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    print(worker.native_id, *clock, flush=True)


def run_nested_imports(directory, depth):
    # nested_0 imports nested_1, which imports nested_2, ... each while it loads: `depth` loads
    # open at once at the bottom. Through importlib's Python code, some twenty frames a level.
    sys.path.insert(0, directory)
    sys.setrecursionlimit(30 * int(depth) + 1000)
    threading.stack_size(512 << 20)
    worker = threading.Thread(target=__import__, args=("nested_0",))
    worker.start()
    worker.join()


def dive(n, at_bottom):
    return at_bottom() if n == 0 else dive(n - 1, at_bottom)


def pause(said):
    print(said, flush=True)
    sys.stdin.buffer.readline()


def frames_open():
    # The frames of the calling thread, this one included: its own count of its depth.
    frame, count = sys._getframe(), 0
    while frame is not None:
        count += 1
        frame = frame.f_back
    return count


def run_deep_count(n):
    # Down N frames in a new thread, as run_deep; prints how many frames were open at the bottom.
    sys.setrecursionlimit(int(n) + 100)
    threading.stack_size(512 << 20)
    counted = []
    worker = threading.Thread(target=lambda: counted.append(dive(int(n), frames_open)))
    worker.start()
    worker.join()
    print(counted[0], flush=True)


def run_deep_exit(n):
    # Down N frames, pausing at the bottom, and back up; then down again and out of the process
    # from the bottom.
    sys.setrecursionlimit(int(n) + 100)
    dive(int(n), lambda: pause("bottom"))
    pause("back")
    dive(int(n), lambda: os._exit(0))


class ExitsWhenCollected:
    def __del__(self):
        os._exit(0)


def run_exit_in_gc():
    # The finalizer runs inside the collection, between gc__start and gc__done.
    cycle = ExitsWhenCollected()
    cycle.self = cycle
    del cycle
    gc.collect()


def handle_request():
    # A bit of everything the examples in README.md and docs/ watch: a file read (syscalls, the
    # `open` audit event), a module load, a full collection over a live heap (over 1 ms), and a
    # 2 ms wait.
    with open(__file__, "rb") as source:
        source.read(64)
    sys.modules.pop("colorsys", None)
    __import__("colorsys")
    gc.collect()
    time.sleep(0.002)


def slow_step(seconds):
    time.sleep(seconds)


def quick_step():
    return 1


def slow_request(seconds):
    quick_step()
    slow_step(seconds)
    slow_step(seconds)


def run_slow(requests, seconds):
    # Each request is slow through its two slow steps; quick_step is never near it.
    for _ in range(int(requests)):
        slow_request(float(seconds))


def run_serve():
    # Like a service: one request after another, until it is killed.
    heap = [[] for _ in range(200_000)]  # alive, for every collection to walk
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
    "unique": run_unique,
    "lines": run_lines,
    "syscalls": run_syscalls,
    "syscall_threads": run_syscall_threads,
    "selftime": run_selftime,
    "churn": run_churn,
    "recreate": run_recreate,
    "phases": run_phases,
    "writes": run_writes,
    "getpid": run_getpid,
    "gc_generations": run_gc_generations,
    "gc_cycles": run_gc_cycles,
    "import_package": run_import_package,
    "audit": run_audit,
    "audit_events": run_audit_events,
    "stats": run_stats,
    "serve": run_serve,
    "slow": run_slow,
    "thread_churn": run_thread_churn,
    "exit_in_gc": run_exit_in_gc,
    "deep": run_deep,
    "nested_imports": run_nested_imports,
    "deep_exit": run_deep_exit,
    "deep_count": run_deep_count,
}

# Run before "ready": automatic collections would add events of their own.
SETUP = {
    "gc_generations": gc.disable,
    "gc_cycles": gc.disable,
    "stats": gc.disable,
    "exit_in_gc": gc.disable,
}

if __name__ == "__main__":
    workload = WORKLOADS[sys.argv[1]]
    SETUP.get(sys.argv[1], lambda: None)()
    print("ready", flush=True)
    # As bytes: a text read would run the utf-8 decoder's Python code, a call of its own.
    sys.stdin.buffer.readline()
    workload(*sys.argv[2:])
