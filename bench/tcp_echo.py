"""Framed EDN inc-echo over TCP: twisted_aleph against two raw-Twisted baselines.

Three servers, each in its own process pinned to CPU 0 (``taskset -c 0``),
started together and measured in turn:

* ``aleph``: the seed's server as shipped, ``python -m twisted aleph-tcp
  --handler inc`` (Int32StringReceiver -> source stream -> ``map(inc)`` ->
  sink stream -> transport; CPython's collector tuned as it tunes it);
* ``raw+edn``: an ``Int32StringReceiver`` answering
  ``edn.dumps(edn.loads(payload) + 1)`` with the project's EDN
  (``twisted_aleph.edn``): the same codec, so the difference is the streams;
* ``raw+int``: an ``Int32StringReceiver`` answering ``int(payload) + 1``:
  neither codec nor streams, what Twisted itself costs.

The raw servers run with the collector tuned the same way
(``twisted_aleph.server.tune_gc``; nothing on PyPy).

Load: ``tcp_frames`` (``bench/loadgen/tcp_frames.c``, built with ``cc -O2``
at first use), pinned to CPU 1: ``--connections`` (50) connections each
keeping ``--window`` (10) requests in flight; a request is the decimal text of
an integer (valid EDN), every reply is checked to be that integer + 1. After
``--warmup`` seconds of it per server (PyPy's JIT), ``--runs`` (3) rounds of
``--seconds`` each, alternating the servers; the medians are printed with the
server core's and the load core's CPU over the windows. A server busy
(running or queued for its core) under 90% of a window waited for the load:
the figure says "load-bound" instead of a ratio.

Memory: each server's RSS growth while holding ``--idle`` (5000; 0 skips)
idle connections (opened by a small Twisted client: no rate is measured),
per connection, project against ``raw+edn``.

    python bench/tcp_echo.py [--python PATH] [--seconds 5] [--warmup N] [--runs 3]
                             [--connections 50] [--window 10] [--idle 5000] [--json]
"""

from __future__ import annotations

import argparse
import subprocess
from typing import Any, Dict, Optional

import _harness
import _loadgen

REQUEST = b"1"          # what the idle connections send once

VARIANTS = ("aleph", "raw+edn", "raw+int")
LABELS = {"aleph": "twisted_aleph (aleph-tcp --handler inc)",
          "raw+edn": "raw Int32StringReceiver + project EDN",
          "raw+int": "raw Int32StringReceiver + int()"}


# -- roles run in child processes ---------------------------------------------

def run_server(variant: str) -> None:
    """A raw baseline on a free port; print it; run until killed."""
    _harness.raise_fd_limit()
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory
    from twisted.protocols.basic import Int32StringReceiver

    from twisted_aleph import edn
    from twisted_aleph.server import tune_gc

    if variant == "raw+edn":
        def answer(payload: bytes) -> bytes:
            return edn.dumps(edn.loads(payload.decode("utf-8")) + 1).encode("utf-8")
    else:
        def answer(payload: bytes) -> bytes:
            return b"%d" % (int(payload) + 1)

    class RawIncEcho(Int32StringReceiver):
        MAX_LENGTH = 16 * 1024 * 1024

        def stringReceived(self, payload: bytes) -> None:
            self.sendString(answer(payload))

    port = reactor.listenTCP(0, Factory.forProtocol(RawIncEcho),
                             interface="127.0.0.1").getHost().port
    tune_gc()  # as aleph-tcp runs (CPython; a no-op on PyPy)
    _harness.print_port(port)
    reactor.run()


def run_idle(port: int, count: int) -> None:
    """Open ``count`` connections, one round trip each (so the server has
    accepted them all), print READY, then idle until stdin closes."""
    _harness.raise_fd_limit()
    import struct

    from twisted.internet import defer, reactor, stdio
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
    from twisted.internet.protocol import Protocol

    request = struct.pack(">I", len(REQUEST)) + REQUEST

    class Idle(Protocol):
        def __init__(self) -> None:
            self.answered: defer.Deferred = defer.Deferred()

        def connectionMade(self) -> None:
            self.transport.write(request)

        def dataReceived(self, data: bytes) -> None:
            if not self.answered.called:
                self.answered.callback(None)

    class Quit(Protocol):
        def connectionLost(self, reason: Any = None) -> None:
            reactor.stop()

    async def open_all() -> None:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        batch = 100  # under the listen backlog
        for start in range(0, count, batch):
            protocols = await defer.gatherResults(
                [connectProtocol(endpoint, Idle()) for _ in range(min(batch, count - start))])
            await defer.gatherResults([p.answered for p in protocols])
        print("READY", flush=True)
        stdio.StandardIO(Quit())

    defer.ensureDeferred(open_all()).addErrback(lambda f: (print(f"FAILED {f.value}"),
                                                           reactor.stop()))
    reactor.run()


# -- the orchestrator ---------------------------------------------------------

def start(args: argparse.Namespace, variant: str) -> _harness.Child:
    """One server, listening; the project's exactly as an operator starts it."""
    if variant == "aleph":
        port = _harness.free_port()
        return _harness.Child([args.python, "-m", "twisted", "aleph-tcp", "--port", str(port),
                               "--interface", "127.0.0.1", "--handler", "inc"], port=port)
    return _harness.Child.server(args.python, __file__, "--role", "server", "--variant", variant)


def load(args: argparse.Namespace, server: _harness.Child, seconds: float,
         settle: float) -> _harness.Run:
    """``tcp_frames`` against ``server`` for ``settle`` + ``seconds`` s."""
    argv = [_loadgen.c_generator("tcp_frames"), "127.0.0.1", str(server.port),
            str(args.connections), str(args.window), str(seconds), str(settle), "1"]
    out, window = _harness.run_load(argv, server.pid, "msgs_per_s=",
                                    timeout=seconds + settle + 60)
    got = _harness.result_fields(out, "msgs_per_s=")
    if got.get("mismatches") or got.get("errors"):
        raise RuntimeError("tcp_frames: %d wrong replies, %d errors" % (
            got.get("mismatches", 0), got.get("errors", 0)))
    return _harness.Run(got["msgs_per_s"], got["msgs"], window)


def measure_idle(args: argparse.Namespace, variant: str, count: int) -> Optional[float]:
    """Server RSS growth per idle connection, in KiB."""
    with start(args, variant) as server:
        before = server.rss_kib()
        idle = subprocess.Popen(
            _harness.pinned(_harness.LOAD_CPU, _harness.script_argv(
                args.python, __file__, "--role", "idle", "--port", server.port,
                "--idle", count)),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_harness.child_env())
        line = idle.stdout.readline() if idle.stdout else ""
        after = server.rss_kib()
        if idle.stdin:
            idle.stdin.close()
        idle.wait(30)
        if not line.startswith("READY"):
            print(f"  idle connections failed: {line.strip()}")
            return None
    return (after - before) / count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _harness.add_common_options(p, seconds=5.0)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--window", type=int, default=10, help="requests in flight per connection")
    p.add_argument("--idle", type=int, default=5000, help="idle connections for RSS; 0 skips")
    p.add_argument("--role", choices=["server", "idle"], help=argparse.SUPPRESS)
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.role == "server":
        return run_server(args.variant)
    if args.role == "idle":
        return run_idle(args.port, args.idle)

    args = _harness.finish_options(args)
    _loadgen.c_generator("tcp_frames")  # built (or refused) before any server starts
    _harness.header("TCP framed inc-echo", args)
    results = _harness.Results("tcp_echo", args)
    name = f"inc-echo {args.connections}x{args.window}"
    print(f"{name}: tcp_frames (C), {args.connections} connections x {args.window} in flight")
    servers: Dict[str, _harness.Child] = {}
    try:
        for v in VARIANTS:
            servers[v] = start(args, v)
            if args.warmup > 0:
                load(args, servers[v], args.warmup, 0)
        outcomes = _harness.alternate(
            VARIANTS, args.runs, lambda v: load(args, servers[v], args.seconds, 0.5),
            LABELS, "msgs/s", "msg")
    finally:
        for server in servers.values():
            server.stop()
    _harness.print_outcomes(outcomes, LABELS, "msgs/s", "msg")
    for base, goal, short in (("raw+edn", "(goal >= 0.95)", "raw+EDN"),
                              ("raw+int", "(goal >= 0.8)", "raw+int")):
        _harness.print_ratio("twisted_aleph", LABELS[base], outcomes["aleph"], outcomes[base],
                             goal)
        results.compare(f"{name} vs {short}", outcomes["aleph"], outcomes[base], "msgs/s",
                        "msg")
    if args.idle:
        print(f"idle connections: {args.idle}")
        idle = {v: measure_idle(args, v, args.idle) for v in ("aleph", "raw+edn")}
        for v in ("aleph", "raw+edn"):
            kib = idle[v]
            print(f"  {LABELS[v]:40} RSS per idle connection: "
                  + ("n/a" if kib is None else f"{kib:.1f} KiB"))
        results.add(f"RSS per idle connection (x{args.idle})", idle["aleph"], idle["raw+edn"],
                    "KiB", better="lower")
    results.emit()


if __name__ == "__main__":
    _loadgen.run_main(main)
