"""Targets for the stack tests, for every CPython from 3.10 on. Each mode sets its threads going,
prints what the test compares with as one JSON line, then "ready", and keeps running until
stdin closes (or, for some modes, until it is done)."""
import json
import os
import sys
import threading
import time


def frames_of(frame):
    """A stack as sys._current_frames() shows it: file, qualified name, line; innermost first."""
    frames = []
    while frame is not None:
        code = frame.f_code
        frames.append([code.co_filename, getattr(code, "co_qualname", code.co_name), frame.f_lineno or 0])
        frame = frame.f_back
    return frames


def report(expected):
    print(json.dumps(expected), flush=True)
    print("ready", flush=True)


def wait_for_stdin():
    sys.stdin.read()


parked = threading.Event()


def leaf(arrived):
    arrived.release()
    parked.wait()


def middle(arrived):
    leaf(arrived)


def outer(arrived):
    middle(arrived)


class Worker:
    def run(self, arrived):
        outer(arrived)


def countdown(arrived):
    leaf(arrived)
    yield 1


def drain(arrived):
    for _ in countdown(arrived):
        pass


def deep(arrived, depth):
    if depth == 0:
        leaf(arrived)
    else:
        deep(arrived, depth - 1)


def run_blocked(deep_frames):
    """Threads parked in known nested functions, a generator among them, one deeper than any bound;
    the main thread blocked on stdin. A helper thread reports every other thread's stack once all
    are still, then exits; the test waits for it to be gone."""
    arrived = threading.Semaphore(0)
    targets = [Worker().run, drain, lambda arrived: deep(arrived, int(deep_frames))]
    threads = [threading.Thread(target=target, args=(arrived,), name="stack-%d" % i) for i, target in enumerate(targets)]
    for thread in threads:
        thread.start()
    for _ in threads:
        arrived.acquire()
    main = threading.main_thread()

    def reporter():
        me = threading.get_ident()
        # The main thread is still when it is in wait_for_stdin's call for two looks in a row.
        seen = None
        while True:
            frame = sys._current_frames()[main.ident]
            now = (frame.f_code.co_name, frame.f_lineno)
            if now == seen and now[0] == "wait_for_stdin":
                break
            seen = now
            time.sleep(0.05)
        current = sys._current_frames()
        stacks = {}
        for thread in threading.enumerate():
            if thread.ident != me:
                stacks[thread.native_id] = frames_of(current[thread.ident])
        report({"stacks": stacks, "reporter": threading.get_native_id()})

    threading.Thread(target=reporter, name="reporter").start()
    wait_for_stdin()
    parked.set()


def spin(stop):
    """Runs in this frame alone until stop[0] is set: no call leaves it."""
    count = 0
    while not stop[0]:
        count += 1


def sleeper(stop, seconds):
    while not stop[0]:
        time.sleep(seconds)


def run_busy(sleep_seconds):
    """One thread spinning in spin(), one sleeping in sleeper(); their tids for the test."""
    stop = [False]
    spinning = threading.Thread(target=spin, args=(stop,), name="spinner")
    sleeping = threading.Thread(target=sleeper, args=(stop, float(sleep_seconds)), name="sleeper")
    spinning.start()
    sleeping.start()
    report({"spinner": spinning.native_id, "sleeper": sleeping.native_id})
    wait_for_stdin()
    stop[0] = True


def run_unique(count, spin_ms):
    """Runs `count` functions, each made by exec under a name and file of its own, each busy for
    spin_ms and then dropped, so code objects die and their memory is reused. Logs, on
    CLOCK_MONOTONIC, when each ran; starts on the first line of stdin, exits when done."""
    report({})
    sys.stdin.readline()
    log = []
    spin_ns = int(float(spin_ms) * 1e6)
    for i in range(int(count)):
        namespace = {"time": time}
        source = "def f_%d(until):\n    while time.monotonic_ns() < until:\n        pass\n" % i
        exec(compile(source, "<unique-%d>" % i, "exec"), namespace)
        function = namespace["f_%d" % i]
        start = time.monotonic_ns()
        function(start + spin_ns)
        log.append([i, start, time.monotonic_ns()])
        del function, namespace
    print(json.dumps(log), flush=True)


def run_idle():
    """Waits for stdin to close, doing nothing."""
    report({})
    wait_for_stdin()


def run_crowd(count):
    """A thread spinning in spin(), started first, then `count` threads waiting: the newest
    thread states come first in CPython's lists, so the spinner's is behind all of theirs. It
    spins only once they have started: a spinner holding the GIL would slow each start to a crawl."""
    stop = [False]
    crowded = threading.Event()
    spinning = threading.Thread(target=lambda: crowded.wait() and spin(stop), name="spinner")
    spinning.start()
    crowd = [threading.Thread(target=parked.wait) for _ in range(int(count))]
    for thread in crowd:
        thread.start()
    crowded.set()
    report({"spinner": spinning.native_id})
    wait_for_stdin()
    stop[0] = True
    parked.set()


def run_exit(seconds):
    """Spins once a line arrives on stdin, for `seconds` or until stdin ends, then exits by itself."""
    report({})
    sys.stdin.readline()
    stop = [False]
    timer = threading.Timer(float(seconds), lambda: stop.__setitem__(0, True))
    timer.start()

    def until_stdin_ends():
        sys.stdin.read()
        stop[0] = True

    threading.Thread(target=until_stdin_ends, daemon=True).start()
    spin(stop)
    timer.cancel()


def run_fork(children):
    """Forks children that spin until stdin closes: each is a process of the same interpreter."""
    pids = []
    for _ in range(int(children)):
        pid = os.fork()
        if pid == 0:
            spin([False])
        pids.append(pid)
    report({"children": pids})
    wait_for_stdin()
    for pid in pids:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def make_syscall(path):
    try:
        os.stat(path)  # event: syscall
    except FileNotFoundError:
        pass


def call_library():
    return os.getpid()  # event: library call


def collect_garbage():
    import gc
    return gc.collect()  # event: gc


def open_missing(path):
    try:
        open(path)  # event: audit
    except FileNotFoundError:
        pass


def run_events(path):
    """On each line of stdin, makes one of each event from a function of its own, then says so."""
    report({})
    for _ in sys.stdin:
        make_syscall(path)
        call_library()
        collect_garbage()
        open_missing(path)
        print("done", flush=True)


if __name__ == "__main__":
    globals()["run_" + sys.argv[1]](*sys.argv[2:])
