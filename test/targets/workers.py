"""Forks WORKERS processes that each wait for SIGUSR1, then call leaf() CALLS times and exit
without returning from anything else (os._exit), so CALLS returns of leaf are all each traces.
Prints the workers' pids and "ready", then waits for them; exits once they have."""
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
        signal.sigwait({signal.SIGUSR1})
        for _ in range(calls):
            leaf()
        os._exit(0)
    pids.append(pid)
print(*pids, flush=True)
print("ready", flush=True)
for pid in pids:
    os.waitpid(pid, 0)
