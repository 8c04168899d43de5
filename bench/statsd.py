"""statsd over UDP: datagrams/s absorbed with zero loss, twisted_aleph against raw Twisted.

Two servers, measured in the same run, each in its own process pinned to CPU 0
(taskset), fed by ``udp_blast`` (``bench/loadgen/udp_blast.c``, built with
``cc -O2`` at first use; ``sendmmsg``, paced or flat out) pinned to CPU 1,
which counts what the kernel took from it:

* ``aleph``: ``twisted_aleph.statsd.start_server`` (parse + roll up every
  datagram, flush every second, rollups consumed from its stream);
* ``raw``: a Twisted ``DatagramProtocol`` that only counts.

For each server the send rate is stepped up (x1.6) until datagrams go missing,
then bisected: the figure is the highest rate with no loss (goal: aleph >= 0.7
x raw). The two searches are interleaved trial by trial so that load from
elsewhere on the machine hits both alike, and a lossy trial is repeated once
before it counts. Then each server is flooded for ``--seconds``, ``--runs``
(3) times alternating the servers: the medians of datagrams/s absorbed and
of the server's CPU microseconds per datagram (the steadiest figure on a
shared machine), with the server core's and the sender core's CPU over the
windows; a server busy (running or queued for its core) under 90% of a
window was not saturated by the sender ("load-bound", no ratio). The datagrams are a mix of statsd counters, sampled
counters, timers and gauges. Both servers run with CPython's garbage collector
tuned as ``twistd aleph-statsd`` tunes it (``twisted_aleph.server.tune_gc``;
nothing on PyPy).

    python bench/statsd.py [--python PATH] [--seconds 1] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Dict, Generator, Optional, Tuple

import _harness
import _loadgen

KINDS = ("aleph", "raw")
LABELS = {"aleph": "twisted_aleph.statsd", "raw": "raw DatagramProtocol"}
LINES = ["api.requests:1|c", "api.latency:12.5|ms", "api.load:3|g", "api.errors:1|c|@0.1"]
FLOOD = 0  # udp_blast's rate for "as fast as it can"


# -- the server processes ----------------------------------------------------

def serve(kind: str) -> None:
    """Listen on 127.0.0.1:0, print PORT, answer each "count" line on stdin
    with the number of datagrams received; exit when stdin closes."""
    from twisted.internet import reactor, stdio
    from twisted.internet.protocol import DatagramProtocol
    from twisted.protocols.basic import LineReceiver

    if kind == "raw":
        class Counter(DatagramProtocol):
            count = 0

            def datagramReceived(self, data: bytes, addr: Tuple[str, int]) -> None:
                self.count += 1

        counter = Counter()
        port = reactor.listenUDP(0, counter, interface="127.0.0.1")

        def received() -> int:
            return counter.count
    else:
        from twisted_aleph import statsd
        from twisted_aleph import stream as s
        from twisted_aleph.statsd_protocol import PACKETS_RECEIVED

        server = statsd.start_server(0, interface="127.0.0.1", flush_interval=1.0)
        port = server.listening_port
        flushed = [0.0]

        def tally(rollup: statsd.Rollup) -> None:
            flushed[0] += rollup.counters[PACKETS_RECEIVED]

        s.consume(tally, server.rollups)

        def received() -> int:
            return int(flushed[0]) + server.rollup.packets

    class Control(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            if line.strip() == b"count":
                self.sendLine(b"%d" % received())

        def connectionLost(self, reason: object = None) -> None:
            if reactor.running:
                reactor.stop()

    from twisted_aleph.server import tune_gc
    tune_gc()  # as twistd aleph-statsd runs (CPython; a no-op on PyPy), for both servers
    _harness.print_port(port.getHost().port)
    stdio.StandardIO(Control())
    reactor.run()


# -- the orchestrator ----------------------------------------------------------

class ServerProcess(_harness.Child):
    """A server child on CPU 0 with a "count" control channel on its stdin."""

    def __init__(self, python: str, kind: str) -> None:
        super().__init__(_harness.script_argv(python, __file__, "--serve", kind), control=True)

    def count(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("server process died")
        return int(line)

    def settled_count(self) -> int:
        """The count once the server has stopped receiving (queues drained)."""
        last = self.count()
        while True:
            time.sleep(0.2)
            now = self.count()
            if now == last:
                return now
            last = now


Trial = Tuple[int, int, float]  # (sent, received, achieved rate)


def send(server: ServerProcess, rate: float, seconds: float) -> Tuple[Trial, _harness.Window]:
    """One send of ``rate`` datagrams/s (:data:`FLOOD`: flat out) for ``seconds``;
    the trial and the CPU window of the sending."""
    before = server.settled_count()
    argv = [_loadgen.c_generator("udp_blast"), "127.0.0.1", str(server.port), str(seconds),
            str(rate)] + LINES
    out, window = _harness.run_load(argv, server.pid, "sent=", timeout=seconds + 60)
    got = _harness.result_fields(out, "sent=")
    received = server.settled_count() - before
    return (int(got["sent"]), received, got["rate_per_s"]), window


def trial(server: ServerProcess, rate: float, seconds: float) -> Trial:
    return send(server, rate, seconds)[0]


def lossless_trial(server: ServerProcess, rate: float, seconds: float) -> Trial:
    """A trial, run a second time if it lost datagrams: the machine is shared,
    and one scheduling hiccup should not decide the figure (same for both)."""
    sent, received, achieved = trial(server, rate, seconds)
    if received < sent:
        sent, received, achieved = trial(server, rate, seconds)
    return sent, received, achieved


def flood(server: ServerProcess, seconds: float) -> _harness.Run:
    """Datagrams/s absorbed while sent flat out, and the server's CPU per datagram."""
    (sent, received, achieved), window = send(server, FLOOD, seconds)
    return _harness.Run(received * achieved / max(sent, 1), received, window)


def rate_search(start: float, steps: int) -> Generator[float, Trial,
                                                       Tuple[float, Optional[float]]]:
    """Yields rates to try, is sent each one's :data:`Trial`; returns (highest
    zero-loss rate, lowest lossy rate or None if the sender ran out of speed
    first). Steps up by 1.6x until loss, then bisects ``steps`` times."""
    good, bad = 0.0, None
    rate = start
    while bad is None:
        sent, received, achieved = yield rate
        if received >= sent:
            good = achieved
            if achieved < rate * 0.9:  # the sender is the bottleneck
                return good, None
            rate *= 1.6
        else:
            bad = rate
    for _ in range(steps):
        rate = (good + bad) / 2
        sent, received, achieved = yield rate
        if received >= sent:
            good = achieved
        else:
            bad = rate
    return good, bad


def measure(args: argparse.Namespace) -> Tuple[Dict[str, Dict[str, Any]],
                                               Dict[str, _harness.Outcome]]:
    """Per kind: zero-loss rate and first lossy rate; the flood's outcomes."""
    servers = {kind: ServerProcess(args.python, kind) for kind in KINDS}
    try:
        for server in servers.values():  # warm-up (PyPy's JIT), not counted
            trial(server, args.start / 2, max(args.warmup, 0.1))
        searches = {kind: rate_search(args.start, args.steps) for kind in KINDS}
        rates = {kind: next(search) for kind, search in searches.items()}
        out: Dict[str, Dict[str, Any]] = {kind: {} for kind in KINDS}
        while not all("zero_loss" in out[kind] for kind in KINDS):
            for kind in KINDS:
                if "zero_loss" in out[kind]:
                    continue
                result = lossless_trial(servers[kind], rates[kind], args.seconds)
                if not args.quiet:
                    sent, received, achieved = result
                    print(f"  {kind:5} {rates[kind]:10.0f}/s: sent {sent}, received"
                          f" {received} (sender achieved {achieved:.0f}/s)", file=sys.stderr)
                try:
                    rates[kind] = searches[kind].send(result)
                except StopIteration as stop:
                    out[kind]["zero_loss"], out[kind]["lossy"] = stop.value
        print("flooded (udp_blast flat out), %d runs:" % args.runs, flush=True)
        flooded = _harness.alternate(KINDS, args.runs,
                                     lambda kind: flood(servers[kind], args.seconds),
                                     LABELS, "datagrams/s", "datagram")
        return out, flooded
    finally:
        for server in servers.values():
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _harness.add_common_options(parser, seconds=1.0)
    parser.add_argument("--start", type=float, default=10000.0,
                        help="first send rate, datagrams/s (default 10000)")
    parser.add_argument("--steps", type=int, default=4,
                        help="bisection steps after the first loss (default 4)")
    parser.add_argument("--quiet", action="store_true", help="no per-trial lines")
    parser.add_argument("--serve", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    args = _harness.finish_options(args)
    _loadgen.c_generator("udp_blast")  # built (or refused) before any server starts
    _harness.header("statsd over UDP", args)
    print("zero-loss rate: udp_blast (C) paced, stepped up until loss, then bisected",
          flush=True)
    r, flooded = measure(args)
    _harness.print_outcomes(flooded, LABELS, "datagrams/s", "datagram")
    _harness.print_ratio("twisted_aleph", "raw", flooded["aleph"], flooded["raw"])
    for kind in KINDS:
        fig = r[kind]
        note = (f"loss from {fig['lossy']:.0f}/s" if fig["lossy"] is not None
                else "sender-bound: no loss at the sender's top speed")
        print(f"{LABELS[kind]:22} {fig['zero_loss']:9.0f} datagrams/s with zero loss ({note})")
    aleph, raw = r["aleph"], r["raw"]
    print(f"ratio aleph/raw: zero-loss {aleph['zero_loss'] / raw['zero_loss']:.2f}"
          f" (goal >= 0.7)")
    results = _harness.Results("statsd", args)
    sender_bound = "sender-bound" if aleph["lossy"] is None or raw["lossy"] is None else ""
    results.add("zero-loss rate", aleph["zero_loss"], raw["zero_loss"], "datagrams/s",
                note=sender_bound)
    results.compare("absorbed when flooded", flooded["aleph"], flooded["raw"], "datagrams/s",
                    "datagram")
    results.emit()


if __name__ == "__main__":
    _loadgen.run_main(main)
