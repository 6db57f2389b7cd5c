"""The target of bench/cli-cost.js: a small Flask service (Debian's python3-flask), driven
in-process through Flask's test client so no network or server shares the measurement. Each
stdin line runs one round and prints the CPU seconds it took, measured inside the target (a uprobe trap is the target's own system time, so a busy shared machine does not inflate it): `route N`, N
requests to a route that renders a JSON page; `fib N`, fib(N), a Python call every few tens of
nanoseconds (the worst case of any per-call tracer); `count KIND N` prints the Python calls one
round makes (sys.setprofile), the tracer's own count to check against."""
import sys
import time

from flask import Flask, jsonify

app = Flask(__name__)


@app.route("/orders/<int:order>")
def order(order):
    items = [{"sku": f"item-{i}", "price": i * 1.25} for i in range(20)]
    return jsonify(order=order, items=items, total=sum(item["price"] for item in items))


client = app.test_client()


def route(n):
    for i in range(n):
        assert client.get(f"/orders/{i}").status_code == 200


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


WORK = {"route": route, "fib": fib}


def count(work, n):
    calls = 0

    def profile(frame, event, arg):
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(profile)
    WORK[work](n)
    sys.setprofile(None)
    # The profiled call of WORK[work] itself: a traced return too.
    return calls


route(5)
print("ready", flush=True)
for line in sys.stdin.buffer:
    words = line.split()
    if words[0] == b"count":
        print(count(words[1].decode(), int(words[2])), flush=True)
        continue
    work, n = WORK[words[0].decode()], int(words[1])
    start = time.process_time()
    work(n)
    print(time.process_time() - start, flush=True)
