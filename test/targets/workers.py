"""Forks WORKERS processes that each say "worker PID" once past what a fork runs in the child,
wait for SIGUSR1, then call leaf() CALLS times and exit without returning from anything else
(os._exit), so from SIGUSR1 on CALLS returns of leaf are all each makes. Prints the workers'
pids and "ready", then waits for them; exits once they have."""
import _signal
import os
import signal
import sys


def leaf():
    return 1


workers, calls = int(sys.argv[1]), int(sys.argv[2])
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
pids = []
for _ in range(workers):
    pid = os.fork()
    if pid == 0:
        os.write(1, f"worker {os.getpid()}\n".encode())
        # The C function: signal.sigwait's Python wrapper would add returns of its own.
        _signal.sigwait({signal.SIGUSR1})
        for _ in range(calls):
            leaf()
        os._exit(0)
    pids.append(pid)
# One write each, whole lines: the workers write to the same pipe.
os.write(1, f"{' '.join(map(str, pids))}\nready\n".encode())
for pid in pids:
    os.waitpid(pid, 0)
