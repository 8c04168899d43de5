"""statsd over UDP: datagrams/s absorbed with zero loss, twisted_aleph against raw Twisted.

Three workloads, measured in the same run, each server in its own process
pinned to CPU 0 (taskset), fed by a paced sender process pinned to CPU 1 that
counts what it sent:

* ``aleph``: ``twisted_aleph.statsd.start_server`` (parse + roll up every
  datagram, flush every second, rollups consumed from its stream) fed plain
  statsd lines;
* ``tagged``: the same server fed the same lines with DogStatsD tags
  (``|#env:prod,host:web1``), which take the general parser, not the fast path;
* ``raw``: a Twisted ``DatagramProtocol`` that only counts.

For each server the send rate is stepped up (x1.6) until datagrams go missing,
then bisected: the figure is the highest rate with no loss (goal: aleph >= 0.7
x raw). The two searches are interleaved trial by trial so that load from
elsewhere on the machine hits both alike, and a lossy trial is repeated once
before it counts. Then each server is flooded for ``--seconds``: datagrams/s
absorbed and the server's CPU microseconds per datagram (the steadiest figure
on a shared machine). The datagrams are a mix of statsd counters, sampled
counters, timers and gauges. Both servers run with CPython's garbage collector
tuned as ``twistd aleph-statsd`` tunes it (``twisted_aleph.server.tune_gc``;
nothing on PyPy).

    python bench/statsd.py [--python PATH] [--seconds 1] [--json]
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from typing import Any, Dict, Generator, Optional, Tuple

import _harness

KINDS = ("aleph", "tagged", "raw")
LINES = [b"api.requests:1|c", b"api.latency:12.5|ms", b"api.load:3|g",
         b"api.errors:1|c|@0.1"]
TAGGED_LINES = [b"api.requests:1|c|#env:prod,host:web1", b"api.latency:12.5|ms|#route:/users",
                b"api.load:3|g|#host:web1", b"api.errors:1|c|@0.1|#env:prod"]
STATE_SERIES = 100_000
FLOOD = 1e9  # a send rate no sender reaches: as fast as it can
BURST = 100  # datagrams sent between looks at the clock


# -- the server processes ----------------------------------------------------

def server_kind(kind: str) -> str:
    """The server process a workload runs against (tagged lines go to aleph)."""
    return "aleph" if kind == "tagged" else kind


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


# -- the sender process ------------------------------------------------------

def send(port: int, rate: float, seconds: float, kind: str = "aleph") -> None:
    """Send ``rate`` datagrams/s for ``seconds``, in bursts of at most
    :data:`BURST` paced by the clock; print ``SENT <count> <achieved rate>``.
    ``kind`` "tagged" sends the lines with tags."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))  # connected: send() skips address parsing
    send_one = sock.send
    burst = ((TAGGED_LINES if kind == "tagged" else LINES) * BURST)[:BURST]
    sent = 0
    start = time.perf_counter()
    end = start + seconds
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        owed = int((now - start) * rate) - sent
        if owed <= 0:
            time.sleep(0.0002)
            continue
        for data in burst[:owed] if owed < BURST else burst:
            try:
                send_one(data)
            except OSError:  # ENOBUFS, ECONNREFUSED: not sent, not counted
                break
            sent += 1
    print(f"SENT {sent} {sent / (time.perf_counter() - start)}", flush=True)


# -- the orchestrator ----------------------------------------------------------

class ServerProcess(_harness.Child):
    """A server child on CPU 0 with a "count" control channel on its stdin."""

    def __init__(self, python: str, kind: str) -> None:
        super().__init__(_harness.script_argv(python, __file__, "--serve", server_kind(kind)),
                         control=True)
        self.kind = kind
        self.cpu_used = 0.0

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


def trial(python: str, server: ServerProcess, rate: float, seconds: float) -> Trial:
    """One paced send; ``server.cpu_used`` is the server's CPU time meanwhile."""
    before = server.settled_count()
    cpu_before = server.cpu_seconds()
    out = _harness.run_pinned(_harness.LOAD_CPU, _harness.script_argv(
        python, __file__, "--send", server.port, rate, seconds, server.kind))
    sent, achieved = _harness.last_line(out, "SENT ").split()
    received = server.settled_count() - before
    server.cpu_used = server.cpu_seconds() - cpu_before
    return int(sent), received, float(achieved)


def lossless_trial(python: str, server: ServerProcess, rate: float, seconds: float) -> Trial:
    """A trial, run a second time if it lost datagrams: the machine is shared,
    and one scheduling hiccup should not decide the figure (same for both)."""
    sent, received, achieved = trial(python, server, rate, seconds)
    if received < sent:
        sent, received, achieved = trial(python, server, rate, seconds)
    return sent, received, achieved


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


def measure(args: argparse.Namespace) -> Dict[str, Dict[str, Any]]:
    """Per kind: zero-loss rate, first lossy rate, absorbed/s and CPU us per
    datagram when flooded."""
    servers = {kind: ServerProcess(args.python, kind) for kind in KINDS}
    try:
        for server in servers.values():  # warm-up (PyPy's JIT), not counted
            trial(args.python, server, args.start / 2, args.warmup)
        searches = {kind: rate_search(args.start, args.steps) for kind in KINDS}
        rates = {kind: next(search) for kind, search in searches.items()}
        out: Dict[str, Dict[str, Any]] = {kind: {} for kind in KINDS}
        while not all("zero_loss" in out[kind] for kind in KINDS):
            for kind in KINDS:
                if "zero_loss" in out[kind]:
                    continue
                result = lossless_trial(args.python, servers[kind], rates[kind], args.seconds)
                if not args.quiet:
                    sent, received, achieved = result
                    print(f"  {kind:5} {rates[kind]:10.0f}/s: sent {sent}, received"
                          f" {received} (sender achieved {achieved:.0f}/s)", file=sys.stderr)
                try:
                    rates[kind] = searches[kind].send(result)
                except StopIteration as stop:
                    out[kind]["zero_loss"], out[kind]["lossy"] = stop.value
        for kind in KINDS:
            sent, received, achieved = trial(args.python, servers[kind], FLOOD, args.seconds)
            out[kind]["flooded"] = received * achieved / sent if sent else 0.0
            out[kind]["cpu_us"] = servers[kind].cpu_used / max(received, 1) * 1e6
        return out
    finally:
        for server in servers.values():
            server.stop()


# -- the state of 100k series ---------------------------------------------------

def state(series: int) -> None:
    """Feed ``series`` distinct series, then flush three times (refeeding each
    time); print ``STATE {json}``: RSS before and after, flush times, payload."""
    import gc
    import json
    import resource

    from twisted_aleph.server import tune_gc
    from twisted_aleph.statsd_protocol import GraphiteNames, StatsdRollup

    def rss_mb() -> float:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    quarter = series // 4
    packets = []
    for i in range(0, quarter, 20):
        lines = []
        for j in range(i, min(i + 20, quarter)):
            lines += [b"app.counter.%06d:1|c" % j, b"app.gauge.%06d:%d|g" % (j, j),
                      b"app.timer.%06d:%d|ms" % (j, j % 100), b"app.timer.%06d:1.5|ms" % j,
                      b"app.timer.%06d:2|ms" % j, b"app.timer.%06d:3|ms" % j,
                      b"app.set.%06d:a|s" % j, b"app.set.%06d:b|s" % j]
        packets.append(b"\n".join(lines))
    rollup = StatsdRollup(max_metrics=series + 100)
    names = GraphiteNames()
    tune_gc()
    gc.collect()
    before = rss_mb()
    flushes, swaps, payload, peak = [], [], 0, 0.0
    for n in range(3):
        for packet in packets:
            rollup.add_packet(packet)
        if n == 0:
            peak = rss_mb()
            held = rollup.series
            state_bytes = rollup.state_bytes
        start = time.perf_counter()
        taken = rollup.swap(float(n), 1.0)  # on the reactor thread
        swapped = time.perf_counter()
        data, _ = taken.rollup().graphite_payload(names, 1 << 40)  # in the thread pool
        flushes.append(time.perf_counter() - start)
        swaps.append(swapped - start)
        payload = len(data)
        del taken, data
    print("STATE " + json.dumps({"series": held, "rss_before_mb": before, "rss_mb": peak,
                                 "state_bytes": state_bytes, "flush_s": sorted(flushes),
                                 "swap_s": sorted(swaps), "payload_bytes": payload}),
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _harness.add_common_options(parser, seconds=1.0)
    parser.add_argument("--start", type=float, default=10000.0,
                        help="first send rate, datagrams/s (default 10000)")
    parser.add_argument("--steps", type=int, default=4,
                        help="bisection steps after the first loss (default 4)")
    parser.add_argument("--quiet", action="store_true", help="no per-trial lines")
    parser.add_argument("--serve", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--send", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--state", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    if args.send:
        return send(int(args.send[0]), float(args.send[1]), float(args.send[2]), args.send[3])
    if args.state:
        return state(args.state)
    args = _harness.finish_options(args)
    _harness.header("statsd over UDP", args)
    r = measure(args)
    import json
    st = json.loads(_harness.last_line(_harness.run_pinned(_harness.SERVER_CPU, _harness.script_argv(
        args.python, __file__, "--state", STATE_SERIES)), "STATE "))
    for kind, label in (("aleph", "twisted_aleph.statsd"), ("tagged", "  the same, tagged lines"),
                        ("raw", "raw DatagramProtocol")):
        fig = r[kind]
        note = (f"loss from {fig['lossy']:.0f}/s" if fig["lossy"] is not None
                else "sender-bound: no loss at the sender's top speed")
        print(f"{label:22} {fig['zero_loss']:9.0f} datagrams/s with zero loss ({note});"
              f" flooded: {fig['flooded']:.0f}/s absorbed, {fig['cpu_us']:.2f} us CPU/datagram")
    aleph, tagged, raw = r["aleph"], r["tagged"], r["raw"]
    print(f"ratio aleph/raw: zero-loss {aleph['zero_loss'] / raw['zero_loss']:.2f}"
          f" (goal >= 0.7); flooded {aleph['flooded'] / raw['flooded']:.2f};"
          f" CPU per datagram raw/aleph {raw['cpu_us'] / aleph['cpu_us']:.2f}")
    print(f"ratio tagged/plain lines: zero-loss {tagged['zero_loss'] / aleph['zero_loss']:.2f};"
          f" CPU per datagram {tagged['cpu_us'] / aleph['cpu_us']:.2f}x")
    print(f"{st['series']:,} distinct series: RSS {st['rss_mb']:.0f} MB"
          f" ({st['rss_mb'] - st['rss_before_mb']:.0f} MB over the empty process;"
          f" estimated state {st['state_bytes'] / 2**20:.0f} MiB);"
          f" a flush rendering them for Graphite ({st['payload_bytes'] / 2**20:.1f} MiB)"
          f" takes {st['flush_s'][1] * 1000:.0f} ms (best {st['flush_s'][0] * 1000:.0f} ms),"
          f" of which {st['swap_s'][1] * 1000:.0f} ms on the reactor thread (the rest in the"
          f" thread pool)")
    results = _harness.Results("statsd", args)
    sender_bound = "sender-bound" if aleph["lossy"] is None or raw["lossy"] is None else ""
    results.add("zero-loss rate", aleph["zero_loss"], raw["zero_loss"], "datagrams/s",
                note=sender_bound)
    results.add("absorbed when flooded", aleph["flooded"], raw["flooded"], "datagrams/s")
    results.add("CPU per datagram (flooded)", aleph["cpu_us"], raw["cpu_us"], "us",
                better="lower")
    results.add("zero-loss rate, tagged lines", tagged["zero_loss"], raw["zero_loss"],
                "datagrams/s", note="sender-bound" if tagged["lossy"] is None else "")
    results.add("CPU per datagram (flooded), tagged lines", tagged["cpu_us"], raw["cpu_us"],
                "us", better="lower")
    results.add("flush of 100k series (median of 3)", st["flush_s"][1] * 1000, None, "ms",
                better="lower")
    results.add("  of which on the reactor thread", st["swap_s"][1] * 1000, None, "ms",
                better="lower")
    results.add("RSS with 100k series", st["rss_mb"], None, "MB", better="lower",
                note=f"{st['rss_mb'] - st['rss_before_mb']:.0f} MB over the empty process")
    results.emit()


if __name__ == "__main__":
    main()
