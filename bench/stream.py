"""Stream throughput: put+take pairs per second, against raw Twisted.

Workloads, each run for ``--seconds`` in its own process (the interpreter
given by ``--python``, pinned to CPU 0 with ``taskset`` when available):

* ``baseline``: what a hand-written Twisted queue costs, a
  ``collections.deque`` append/popleft plus one Deferred fired per item;
* ``stream-put-take``: ``Stream(1024).put(x)`` then ``take()`` (a Deferred
  each way), the pull path;
* ``stream-offer-take``: ``offer(x)`` (no Deferred when accepted) then
  ``take()``;
* ``connect-map``: ``offer(x)`` into a source connected through
  ``map(f, src)`` to a ``consume`` edge: the push path transports use.

It also counts the Deferreds allocated per message on the push path
(``offer`` into a connected edge that keeps up), which must stay 0.
Figures are noisy on a shared 2-core machine; compare the ratios.

    python bench/stream.py [--python PATH] [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import deque
from typing import Any, Callable, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# Run as a script, bench/ is sys.path[0], where sibling scripts named like
# stdlib modules (bench/http.py) would shadow them for Twisted's imports.
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == HERE:
    del sys.path[0]
BATCH = 1000


def _run_for(seconds: float, batch: Callable[[], None]) -> float:
    """Run ``batch`` (BATCH messages each) until ``seconds`` pass; msgs/s."""
    batch()  # warm up (and let PyPy's JIT see it)
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        batch()
        n += BATCH
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def baseline(seconds: float) -> float:
    from twisted.internet.defer import Deferred
    q: deque = deque()
    got: List[Any] = [None]

    def sink(x: Any) -> None:
        got[0] = x

    def batch() -> None:
        for i in range(BATCH):
            q.append(i)
            d: Deferred = Deferred()
            d.addCallback(sink)
            d.callback(q.popleft())

    return _run_for(seconds, batch)


def stream_put_take(seconds: float) -> float:
    from twisted_aleph.stream import Stream
    st = Stream(1024)
    got: List[Any] = [None]

    def sink(x: Any) -> None:
        got[0] = x

    def batch() -> None:
        put, take = st.put, st.take
        for i in range(BATCH):
            put(i)
            take().addCallback(sink)

    return _run_for(seconds, batch)


def stream_offer_take(seconds: float) -> float:
    from twisted_aleph.stream import Stream
    st = Stream(1024)
    got: List[Any] = [None]

    def sink(x: Any) -> None:
        got[0] = x

    def batch() -> None:
        offer, take = st.offer, st.take
        for i in range(BATCH):
            offer(i)
            take().addCallback(sink)

    return _run_for(seconds, batch)


def _connected_map() -> Any:
    from twisted_aleph import stream as s
    src = s.Stream()
    got: List[Any] = [None]

    def sink(x: Any) -> None:
        got[0] = x

    s.consume(sink, s.map(lambda x: x + 1, src))
    return src


def connect_map(seconds: float) -> float:
    src = _connected_map()

    def batch() -> None:
        offer = src.offer
        for i in range(BATCH):
            offer(i)

    return _run_for(seconds, batch)


def deferreds_per_offer() -> float:
    """Deferreds created per ``offer`` through connect(map(...)) -> consume."""
    from twisted.internet.defer import Deferred
    src = _connected_map()
    created = [0]
    original = Deferred.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        created[0] += 1
        original(self, *args, **kwargs)

    Deferred.__init__ = counting  # type: ignore[method-assign]
    try:
        for i in range(10000):
            src.offer(i)
    finally:
        Deferred.__init__ = original  # type: ignore[method-assign]
    return created[0] / 10000


WORKLOADS: Dict[str, Callable[[float], float]] = {
    "baseline": baseline,
    "stream-put-take": stream_put_take,
    "stream-offer-take": stream_offer_take,
    "connect-map": connect_map,
}


def _worker(name: str, seconds: float) -> None:
    sys.path.insert(0, ROOT)
    if name == "allocs":
        print(json.dumps({"deferreds_per_offer": deferreds_per_offer()}))
    else:
        print(json.dumps({"rate": WORKLOADS[name](seconds)}))


def _spawn(python: str, name: str, seconds: float) -> Dict[str, float]:
    cmd = [python, os.path.abspath(__file__), "--worker", name,
           "--seconds", str(seconds)]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0"] + cmd
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter for the workload processes")
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="duration of each workload")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args.seconds)
        return
    print(f"python: {args.python}; {args.seconds:g} s per workload; "
          f"taskset: {'yes' if shutil.which('taskset') else 'no'}")
    rates = {name: _spawn(args.python, name, args.seconds)["rate"]
             for name in WORKLOADS}
    base = rates["baseline"]
    print(f"{'workload':<20}{'pairs/s':>14}{'vs baseline':>14}")
    for name, rate in rates.items():
        print(f"{name:<20}{rate:>14,.0f}{rate / base:>13.2f}x")
    allocs = _spawn(args.python, "allocs", args.seconds)["deferreds_per_offer"]
    print(f"Deferreds allocated per offer on the push path: {allocs:g}")


if __name__ == "__main__":
    main()
