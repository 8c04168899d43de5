"""statsd over UDP: datagrams/s absorbed with zero loss, twisted_aleph against raw Twisted;
tagged lines against plain ones; the flush and the RSS of 100,000 series.

Three workloads, measured in the same run, each on its own server process
pinned to CPU 0 (taskset), fed by ``udp_blast`` (``bench/loadgen/udp_blast.c``,
built with ``cc -O2`` at first use; ``sendmmsg``, paced or flat out) pinned to
CPU 1, which counts what the kernel took from it:

* ``aleph``: ``twisted_aleph.statsd.start_server`` (parse + roll up every
  datagram, flush every second, rollups consumed from its stream) fed plain
  statsd lines;
* ``tagged``: the same server fed the same lines with DogStatsD tags
  (``|#env:prod,host:web1``), which take the general parser, not the fast
  path, and are kept per tag set;
* ``raw``: a Twisted ``DatagramProtocol`` that only counts.

For each workload the send rate is stepped up (x1.6) until datagrams go
missing, then bisected: the figure is the highest rate with no loss (goal:
aleph >= 0.7 x raw). The three searches are interleaved trial by trial so
that load from elsewhere on the machine hits them alike, and a lossy trial is
repeated once before it counts; each trial prints how long the server was
queued behind other processes for its core, and a search in which that reached
5% of a trial is noted "noisy". Then each server is flooded for ``--seconds``,
``--runs`` (3) times alternating the workloads: the medians of datagrams/s
absorbed and of the server's CPU microseconds per datagram (the steadiest
figure on a shared machine), with the server core's and the sender core's CPU
over the windows; a server busy (running or queued for its core) under 90% of
a window was not saturated by the sender ("load-bound", no ratio). The
datagrams are a mix of statsd counters, sampled counters, timers and gauges,
one line each. The servers run with CPython's garbage collector tuned as
``twistd aleph-statsd`` tunes it (``twisted_aleph.server.tune_gc``; nothing on
PyPy).

Last, one process on CPU 0 holds ``--series`` (100,000) distinct series, a
quarter each counters, gauges, timers (4 timings each) and sets (2 members
each), in the server's ``StatsdRollup``, and flushes them ``--runs`` times
(after one flush not counted), fed again before each, as the server does:
``swap`` on the reactor thread, then the timers' statistics and the Graphite
lines (in the server, in the reactor's thread pool). It prints the RSS they
take over the empty process, and the medians of the flush's time, its CPU
time and the reactor thread's part of it; a flush queued behind other
processes for 5% of its time or more is noted "noisy".

    python bench/statsd.py [--python PATH] [--seconds 1] [--runs 3] [--series 100000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any, Dict, Generator, List, Optional, Tuple

import _harness
import _loadgen

KINDS = ("aleph", "tagged", "raw")
LABELS = {"aleph": "twisted_aleph.statsd", "tagged": "twisted_aleph.statsd, tagged lines",
          "raw": "raw DatagramProtocol"}
#: the server process each workload runs against
SERVER_KIND = {"aleph": "aleph", "tagged": "aleph", "raw": "raw"}
LINES = ["api.requests:1|c", "api.latency:12.5|ms", "api.load:3|g", "api.errors:1|c|@0.1"]
#: the same lines with DogStatsD tags (and ``|@rate|#tags`` on the sampled counter)
TAGGED_LINES = ["api.requests:1|c|#env:prod,host:web1", "api.latency:12.5|ms|#route:/users",
                "api.load:3|g|#host:web1", "api.errors:1|c|@0.1|#env:prod"]
WORKLOAD_LINES = {"aleph": LINES, "tagged": TAGGED_LINES, "raw": LINES}
FLOOD = 0  # udp_blast's rate for "as fast as it can"
#: a share of a window queued behind other processes from which a figure is "noisy"
NOISY = 0.05


# -- the server processes ----------------------------------------------------

def serve(kind: str) -> None:
    """Listen on 127.0.0.1:0, print PORT, answer each "count" line on stdin
    with the number of datagrams received and each "bad" line with the number
    of bad lines seen; exit when stdin closes."""
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

        def bad() -> int:
            return 0
    else:
        from twisted_aleph import statsd
        from twisted_aleph import stream as s
        from twisted_aleph.statsd_protocol import BAD_LINES, PACKETS_RECEIVED

        server = statsd.start_server(0, interface="127.0.0.1", flush_interval=1.0)
        port = server.listening_port
        flushed = [0.0, 0.0]

        def tally(rollup: statsd.Rollup) -> None:
            flushed[0] += rollup.counters[PACKETS_RECEIVED]
            flushed[1] += rollup.counters[BAD_LINES]

        s.consume(tally, server.rollups)

        def received() -> int:
            return int(flushed[0]) + server.rollup.packets

        def bad() -> int:
            return int(flushed[1]) + server.rollup.bad_lines

    class Control(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            command = line.strip()
            if command == b"count":
                self.sendLine(b"%d" % received())
            elif command == b"bad":
                self.sendLine(b"%d" % bad())

        def connectionLost(self, reason: object = None) -> None:
            if reactor.running:
                reactor.stop()

    from twisted_aleph.server import tune_gc
    tune_gc()  # as twistd aleph-statsd runs (CPython; a no-op on PyPy), for both servers
    _harness.print_port(port.getHost().port)
    stdio.StandardIO(Control())
    reactor.run()


# -- the state of many series ---------------------------------------------------

def state_packets(series: int) -> List[bytes]:
    """Datagrams making ``series`` distinct series, a quarter of each type:
    counters, gauges, timers (4 timings each), sets (2 members each)."""
    quarter = series // 4
    packets = []
    for i in range(0, quarter, 20):
        lines: List[bytes] = []
        for j in range(i, min(i + 20, quarter)):
            lines += [b"app.counter.%06d:1|c" % j, b"app.gauge.%06d:%d|g" % (j, j),
                      b"app.timer.%06d:%d|ms" % (j, j % 100), b"app.timer.%06d:1.5|ms" % j,
                      b"app.timer.%06d:2|ms" % j, b"app.timer.%06d:3|ms" % j,
                      b"app.set.%06d:a|s" % j, b"app.set.%06d:b|s" % j]
        packets.append(b"\n".join(lines))
    return packets


def state(series: int, runs: int) -> None:
    """Hold ``series`` distinct series in a ``StatsdRollup`` and flush them
    ``runs`` times (after one flush not counted), fed again before each; print
    ``STATE {json}``: RSS, state estimate, each measured flush's figures."""
    import gc

    from twisted_aleph.server import tune_gc
    from twisted_aleph.statsd_protocol import GraphiteNames, StatsdRollup

    def status_mb(field: str) -> float:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no %s in /proc/self/status" % field)

    def queued_s() -> float:
        sched = _harness.sched_ns(os.getpid())
        return sched[1] / 1e9 if sched else 0.0

    packets = state_packets(series)  # the load's, made before the empty process is measured
    rollup = StatsdRollup(max_metrics=series)
    names = GraphiteNames()
    tune_gc()
    gc.collect()
    empty = status_mb("VmRSS:")
    held = state_bytes = 0
    rss_first = rss_last = 0.0
    flushes: List[Dict[str, float]] = []
    payload = left_out = 0
    for n in range(runs + 1):
        for packet in packets:
            rollup.add_packet(packet)
        rss_last = status_mb("VmRSS:")
        if n == 0:
            held, state_bytes, rss_first = rollup.series, rollup.state_bytes, rss_last
        q0, c0, t0 = queued_s(), time.process_time(), time.perf_counter()
        taken = rollup.swap(float(n), 1.0)  # the server: on the reactor thread
        c1, t1 = time.process_time(), time.perf_counter()
        data, left_out = taken.rollup().graphite_payload(names)  # the server: in its thread pool
        c2, t2, q2 = time.process_time(), time.perf_counter(), queued_s()
        if n:
            flushes.append({"flush_s": t2 - t0, "flush_cpu_s": c2 - c0, "swap_s": t1 - t0,
                            "swap_cpu_s": c1 - c0, "queued": (q2 - q0) / max(t2 - t0, 1e-9)})
        payload = len(data)
        del taken, data
    print("STATE " + json.dumps({
        "series": held, "state_bytes": state_bytes, "rss_empty_mb": empty,
        "rss_mb": rss_first, "rss_steady_mb": rss_last, "rss_peak_mb": status_mb("VmHWM:"),
        "payload_bytes": payload, "left_out": left_out, "flushes": flushes}), flush=True)


# -- the orchestrator ----------------------------------------------------------

class ServerProcess(_harness.Child):
    """A server child on CPU 0 with a control channel on its stdin, and the
    lines its workload sends."""

    def __init__(self, python: str, kind: str) -> None:
        super().__init__(_harness.script_argv(python, __file__, "--serve", SERVER_KIND[kind]),
                         control=True)
        self.lines = WORKLOAD_LINES[kind]

    def ask(self, command: str) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("server process died")
        return int(line)

    def count(self) -> int:
        return self.ask("count")

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
            str(rate)] + server.lines
    out, window = _harness.run_load(argv, server.pid, "sent=", timeout=seconds + 60)
    got = _harness.result_fields(out, "sent=")
    received = server.settled_count() - before
    return (int(got["sent"]), received, got["rate_per_s"]), window


def lossless_trial(server: ServerProcess, rate: float,
                   seconds: float) -> Tuple[Trial, _harness.Window]:
    """A trial, run a second time if it lost datagrams: the machine is shared,
    and one scheduling hiccup should not decide the figure (same for all)."""
    result, window = send(server, rate, seconds)
    if result[1] < result[0]:
        result, window = send(server, rate, seconds)
    return result, window


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
    """Per workload: zero-loss rate, first lossy rate and the largest share of
    a trial its server was queued for its core; the flood's outcomes."""
    servers: Dict[str, ServerProcess] = {}
    try:
        for kind in KINDS:
            servers[kind] = ServerProcess(args.python, kind)
        for kind, server in servers.items():  # warm-up (PyPy's JIT), not counted
            send(server, args.start / 2, max(args.warmup, 0.1))
            if server.ask("bad"):
                raise RuntimeError("the %s server counted bad lines in %s: the bench's lines "
                                   "are no longer valid statsd" % (kind, server.lines))
        searches = {kind: rate_search(args.start, args.steps) for kind in KINDS}
        rates = {kind: next(search) for kind, search in searches.items()}
        out: Dict[str, Dict[str, Any]] = {kind: {"queued": 0.0} for kind in KINDS}
        while not all("zero_loss" in out[kind] for kind in KINDS):
            for kind in KINDS:
                if "zero_loss" in out[kind]:
                    continue
                result, window = lossless_trial(servers[kind], rates[kind], args.seconds)
                queued = window.queued or 0.0
                out[kind]["queued"] = max(out[kind]["queued"], queued)
                if not args.quiet:
                    sent, received, achieved = result
                    print(f"  {kind:6} {rates[kind]:10.0f}/s: sent {sent}, received"
                          f" {received} (sender achieved {achieved:.0f}/s; server queued"
                          f" {queued * 100:.0f}%)", file=sys.stderr)
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


def zero_loss_note(*figs: Dict[str, Any]) -> str:
    """What zero-loss figures do not say: sender-bound, or noisy."""
    notes = []
    if any(fig["lossy"] is None for fig in figs):
        notes.append("sender-bound: no loss at the sender's top speed")
    queued = max(fig["queued"] for fig in figs)
    if queued >= NOISY:
        notes.append("noisy: other processes kept a server off its core up to %.0f%% of a"
                     " trial" % (queued * 100))
    return "; ".join(notes)


def print_state(st: Dict[str, Any]) -> Dict[str, float]:
    """The state figures, printed; their medians."""
    med = {key: statistics.median(f[key] for f in st["flushes"]) for key in st["flushes"][0]}
    queued = max(f["queued"] for f in st["flushes"])
    print(f"{st['series']:,} distinct series (a quarter each counters, gauges, timers, sets):")
    print(f"  RSS {st['rss_mb']:.0f} MB, {st['rss_mb'] - st['rss_empty_mb']:.0f} MB over the"
          f" empty process (estimated state {st['state_bytes'] / 2**20:.0f} MiB); after"
          f" {len(st['flushes']) + 1} flushes {st['rss_steady_mb']:.0f} MB, peak"
          f" {st['rss_peak_mb']:.0f} MB")
    print(f"  flush (median of {len(st['flushes'])}), {st['payload_bytes'] / 2**20:.1f} MiB of"
          f" Graphite lines{' (%d left out)' % st['left_out'] if st['left_out'] else ''}:"
          f" {med['flush_s'] * 1000:.0f} ms ({med['flush_cpu_s'] * 1000:.0f} ms CPU), of which"
          f" {med['swap_s'] * 1000:.1f} ms ({med['swap_cpu_s'] * 1000:.1f} ms CPU) on the reactor"
          f" thread, the rest in the thread pool; queued behind other processes up to"
          f" {queued * 100:.0f}%{'  <- noisy' if queued >= NOISY else ''}")
    med["queued_max"] = queued
    return med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _harness.add_common_options(parser, seconds=1.0)
    parser.add_argument("--start", type=float, default=10000.0,
                        help="first send rate, datagrams/s (default 10000)")
    parser.add_argument("--steps", type=int, default=4,
                        help="bisection steps after the first loss (default 4)")
    parser.add_argument("--series", type=int, default=100_000,
                        help="distinct series held for the flush and RSS figures "
                             "(default 100000)")
    parser.add_argument("--quiet", action="store_true", help="no per-trial lines")
    parser.add_argument("--serve", choices=("aleph", "raw"), help=argparse.SUPPRESS)
    parser.add_argument("--state", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    if args.state:
        return state(args.series, args.runs)
    args = _harness.finish_options(args)
    _loadgen.c_generator("udp_blast")  # built (or refused) before any server starts
    _harness.header("statsd over UDP", args)
    print("zero-loss rate: udp_blast (C) paced, stepped up until loss, then bisected; plain"
          " lines, the same with DogStatsD tags, and a raw counting server", flush=True)
    r, flooded = measure(args)
    _harness.print_outcomes(flooded, LABELS, "datagrams/s", "datagram")
    _harness.print_ratio("twisted_aleph", "raw", flooded["aleph"], flooded["raw"])
    _harness.print_ratio("tagged lines", "raw", flooded["tagged"], flooded["raw"])
    _harness.print_ratio("tagged lines", "plain", flooded["tagged"], flooded["aleph"])
    width = max(len(label) for label in LABELS.values())
    for kind in KINDS:
        fig = r[kind]
        lossy = (f"loss from {fig['lossy']:.0f}/s" if fig["lossy"] is not None else "")
        note = "; ".join(n for n in (lossy, zero_loss_note(fig)) if n)
        print(f"{LABELS[kind]:{width}} {fig['zero_loss']:9.0f} datagrams/s with zero loss"
              f" ({note})")
    aleph, tagged, raw = r["aleph"], r["tagged"], r["raw"]
    print(f"ratio zero-loss: aleph/raw {aleph['zero_loss'] / raw['zero_loss']:.2f} (goal >= 0.7);"
          f" tagged/raw {tagged['zero_loss'] / raw['zero_loss']:.2f};"
          f" tagged/plain {tagged['zero_loss'] / aleph['zero_loss']:.2f}", flush=True)
    st = json.loads(_harness.last_line(_harness.run_pinned(_harness.SERVER_CPU, _harness.script_argv(
        args.python, __file__, "--state", "--series", args.series, "--runs", args.runs)),
        "STATE "))
    med = print_state(st)
    results = _harness.Results("statsd", args)

    results.add("zero-loss rate", aleph["zero_loss"], raw["zero_loss"], "datagrams/s",
                note=zero_loss_note(aleph, raw))
    results.add("zero-loss rate, tagged lines", tagged["zero_loss"], raw["zero_loss"],
                "datagrams/s", note=zero_loss_note(tagged, raw))
    results.compare("absorbed when flooded", flooded["aleph"], flooded["raw"], "datagrams/s",
                    "datagram")
    results.compare("absorbed when flooded, tagged lines", flooded["tagged"], flooded["raw"],
                    "datagrams/s", "datagram")
    series = f"{st['series'] // 1000}k series"
    flush_note = ("noisy: other processes kept it off its core up to %.0f%% of a flush"
                  % (med["queued_max"] * 100) if med["queued_max"] >= NOISY else "")
    results.add(f"flush of {series}", med["flush_s"] * 1000, None, "ms", better="lower",
                note=flush_note)
    results.add(f"flush of {series} CPU", med["flush_cpu_s"] * 1000, None, "ms",
                better="lower")
    results.add(f"flush of {series}, its part on the reactor thread", med["swap_s"] * 1000, None, "ms",
                better="lower", note=flush_note)
    results.add(f"RSS with {series}", st["rss_mb"], None, "MB", better="lower",
                note="%.0f MB over the empty process" % (st["rss_mb"] - st["rss_empty_mb"]))
    results.emit()


if __name__ == "__main__":
    _loadgen.run_main(main)
