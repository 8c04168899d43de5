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

    python bench/stream.py [--python PATH] [--seconds 2] [--warmup N] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import deque
from typing import Any, Callable, Dict, List

import _harness

BATCH = 1000
#: seconds of the same batches before timing (set from --warmup in the worker)
WARMUP = [0.0]


def _run_for(seconds: float, batch: Callable[[], None]) -> float:
    """Run ``batch`` (BATCH messages each) until ``seconds`` pass, after
    ``WARMUP`` seconds of it (PyPy's JIT); msgs/s."""
    batch()
    deadline = time.perf_counter() + WARMUP[0]
    while time.perf_counter() < deadline:
        batch()
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


def _worker(name: str, seconds: float, warmup: float) -> None:
    WARMUP[0] = warmup
    if name == "allocs":
        print("RESULT " + json.dumps({"deferreds_per_offer": deferreds_per_offer()}))
    else:
        print("RESULT " + json.dumps({"rate": WORKLOADS[name](seconds)}))


def _spawn(args: argparse.Namespace, name: str) -> Dict[str, float]:
    argv = _harness.script_argv(args.python, __file__, "--worker", name,
                                "--seconds", args.seconds, "--warmup", args.warmup)
    out = _harness.run_pinned(_harness.SERVER_CPU, argv)
    return json.loads(_harness.last_line(out, "RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _harness.add_common_options(parser, seconds=2.0, warmup_pypy=1.0)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(args.worker, args.seconds, args.warmup)
    args = _harness.finish_options(args)
    _harness.header("Stream put+take", args, "each workload in its own process on CPU %d"
                    % _harness.SERVER_CPU)
    rates = {name: _spawn(args, name)["rate"] for name in WORKLOADS}
    base = rates["baseline"]
    print(f"{'workload':<20}{'pairs/s':>14}{'vs baseline':>14}")
    for name, rate in rates.items():
        print(f"{name:<20}{rate:>14,.0f}{rate / base:>13.2f}x")
    allocs = _spawn(args, "allocs")["deferreds_per_offer"]
    print(f"Deferreds allocated per offer on the push path: {allocs:g}")
    results = _harness.Results("stream", args)
    for name, rate in rates.items():
        if name != "baseline":
            results.add(name, rate, base, "msgs/s")
    results.add("Deferreds per offer (push path)", allocs, None, "count", better="lower",
                note="" if allocs == 0 else "should be 0")
    results.emit()


if __name__ == "__main__":
    main()
