"""Target of test/thread-names.test.ts, for every CPython from 3.10 on. Starts threads whose
names take every form a str can (ASCII, Latin-1, UCS-2, UCS-4, long), a default name, one renamed
after it started, one of a subclass, one whose attributes are a dict of its own, a pool of as
many more as asked, and threads started by _thread, one of which asks threading for itself (and so gets a _DummyThread). With
all of them blocked, prints the threads as the process sees them, then "ready", and waits for
stdin to close. "bare" mode never imports threading; "churn" starts and ends threads as it is read."""
import _thread
import json
import sys


def kernel_names(tids):
    """The kernel's name of each thread, as this process reads it."""
    names = {}
    for tid in tids:
        with open("/proc/self/task/%d/comm" % tid) as comm:
            names[tid] = comm.read().strip()
    return names


def raw_thread(ask_threading):
    """Starts a thread with _thread alone; returns its tid once it is blocked for good."""
    started = _thread.allocate_lock()
    started.acquire()
    tid = []

    def run():
        if ask_threading:
            import threading
            threading.current_thread()
        tid.append(_thread.get_native_id())
        started.release()
        never = _thread.allocate_lock()
        never.acquire()
        never.acquire()

    _thread.start_new_thread(run, ())
    started.acquire()
    return tid[0]


def run_bare():
    raw = [raw_thread(False) for _ in range(2)]
    print(json.dumps({"threading": "threading" in sys.modules, "kernel": kernel_names(raw + [_thread.get_native_id()])}), flush=True)


def run_named(pool):
    import threading

    stop = threading.Event()

    class Worker(threading.Thread):
        def __init__(self, name):
            super().__init__(name=name, daemon=True)
            self.jobs = list(range(3))

        def run(self):
            stop.wait()

    names = ["worker-0", "w\u00f6rker-\u00fc", "\u0440\u0430\u0431\u043e\u0442\u043d\u0438\u043a-\u03b2", "\U0001f40d-snake", "long-" + "x" * 1000]
    threads = [threading.Thread(target=stop.wait, name=name, daemon=True) for name in names]
    threads.append(threading.Thread(target=stop.wait, daemon=True))
    threads.append(Worker("subclassed"))
    renamed = threading.Thread(target=stop.wait, name="before", daemon=True)
    threads.append(renamed)
    own_dict = threading.Thread(target=stop.wait, name="own-dict", daemon=True)
    # A key that is not a str: the instance's attributes can no longer share their type's keys.
    own_dict.__dict__[0] = "not a str"
    threads.append(own_dict)
    # More than a dict's entries read at once, and indices wider than a byte.
    threads += [threading.Thread(target=stop.wait, name="pool-%d" % i, daemon=True) for i in range(int(pool))]
    for thread in threads:
        thread.start()
    renamed.name = "after"
    raw = raw_thread(False)
    dummy = raw_thread(True)
    named = {thread.native_id: thread.name for thread in threading.enumerate()}
    print(json.dumps({"threading": named, "raw": raw, "dummy": dummy, "kernel": kernel_names([raw])}), flush=True)


def run_churn():
    """A few threads that stay, and one that starts and joins threads named churn-N without end,
    so threading._active changes (and grows and shrinks) while it is read."""
    import threading
    import time

    stop = threading.Event()
    for i in range(3):
        threading.Thread(target=stop.wait, name="stay-%d" % i, daemon=True).start()

    def churn():
        started = 0
        while True:
            batch = [threading.Thread(target=time.sleep, args=(0.005,), name="churn-%d" % (started + i)) for i in range(50)]
            started += len(batch)
            for thread in batch:
                thread.start()
            for thread in batch:
                thread.join()

    threading.Thread(target=churn, name="churner", daemon=True).start()
    stay = {thread.native_id: thread.name for thread in threading.enumerate() if not thread.name.startswith("churn-")}
    print(json.dumps({"threading": stay}), flush=True)


if __name__ == "__main__":
    globals()["run_" + sys.argv[1]](*sys.argv[2:])
    print("ready", flush=True)
    sys.stdin.read()
