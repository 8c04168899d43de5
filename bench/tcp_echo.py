"""Framed EDN inc-echo over TCP: twisted_aleph against raw Twisted.

Two servers, measured in the same run, each in its own process pinned to CPU
0 (``taskset -c 0``), driven by a lean raw-Twisted load generator pinned to
CPU 1:

* ``aleph``: ``demo.tcp.start_server(fast_echo_handler(inc))``: the
  stream-based framed server (Int32StringReceiver -> source stream -> map ->
  sink stream -> transport writer);
* ``raw``: an ``Int32StringReceiver`` subclass answering
  ``edn.dumps(edn.loads(payload) + 1)`` in ``stringReceived`` (same codec).

``--codec int`` swaps EDN for plain decimal payloads in both servers, which
leaves the cost of the transport and streams alone (the ratio's worst case).

Throughput: ``--connections`` (50) connections each keeping ``--inflight``
(16) requests in flight for ``--seconds`` (10); prints msgs/s for each server
and the ratio aleph/raw (goal >= 0.8). Memory: each server's RSS growth while
holding ``--idle`` (5000; 0 skips) idle connections, per connection.
Figures are noisy on a shared 2-core machine; compare the ratio.

    python bench/tcp_echo.py [--python PATH] [--seconds 10] [--warmup N] [--json]
                             [--idle 5000] [--codec edn|int]
"""

from __future__ import annotations

import argparse
import subprocess
from typing import Any, Optional, Tuple

import _harness

REQUEST = b"1"          # the EDN payload sent
REPLY = b"2"            # what inc answers


# -- roles run in child processes ---------------------------------------------

def int_encode(value: int) -> bytes:
    return b"%d" % value


def run_server(variant: str, codec: str) -> None:
    """Serve on a free port; print it; run until killed."""
    _harness.raise_fd_limit()
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory
    from twisted.protocols.basic import Int32StringReceiver

    from twisted_aleph import tcp

    # edn: the real workload. int: payloads are plain decimal integers, so
    # what is left is the cost of the transport and streams alone.
    encode, decode = (tcp.encode_edn, tcp.decode_edn) if codec == "edn" else (int_encode, int)
    if variant == "aleph":
        from twisted_aleph.demo.tcp import fast_echo_handler, inc
        port = tcp.start_framed_server(fast_echo_handler(inc), 0, interface="127.0.0.1",
                                       encode=encode, decode=decode).port
    else:
        class RawIncEcho(Int32StringReceiver):
            MAX_LENGTH = 16 * 1024 * 1024

            def stringReceived(self, payload: bytes) -> None:
                self.sendString(encode(decode(payload) + 1))

        factory = Factory.forProtocol(RawIncEcho)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1").getHost().port
    _harness.print_port(port)
    reactor.run()


def run_load(port: int, connections: int, inflight: int, seconds: float,
             warmup: float, server_pid: int) -> None:
    """Keep ``inflight`` requests per connection; print replies per second and
    the server's CPU microseconds per reply over the measured window."""
    _harness.raise_fd_limit()
    import struct

    from twisted.internet import reactor
    from twisted.internet.protocol import ClientFactory, Protocol

    request = struct.pack(">I", len(REQUEST)) + REQUEST
    reply_len = 4 + len(REPLY)
    counter = [0]

    class Load(Protocol):
        """Counts reply frames by length (all replies are the same size) and
        sends one request for each: no parsing beyond that."""

        buffered = 0

        def connectionMade(self) -> None:
            self.transport.setTcpNoDelay(True)
            self.transport.write(request * inflight)

        def dataReceived(self, data: bytes) -> None:
            total = self.buffered + len(data)
            n, self.buffered = divmod(total, reply_len)
            if n:
                counter[0] += n
                self.transport.write(request * n)

    factory = ClientFactory.forProtocol(Load)
    for _ in range(connections):
        reactor.connectTCP("127.0.0.1", port, factory)
    _harness.report_rate_after(reactor, counter, warmup, seconds, server_pid)
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

def measure_rate(args: argparse.Namespace, variant: str) -> Tuple[float, float]:
    """(replies per second, server CPU microseconds per reply)."""
    with _harness.Child.server(args.python, __file__, "--role", "server", "--variant", variant,
                               "--codec", args.codec) as server:
        out = _harness.run_pinned(_harness.LOAD_CPU, _harness.script_argv(
            args.python, __file__, "--role", "load", "--port", server.port,
            "--connections", args.connections, "--inflight", args.inflight,
            "--seconds", args.seconds, "--warmup", args.warmup, "--server-pid", server.pid))
    return _harness.read_rate(out)


def measure_idle(python: str, variant: str, count: int) -> Optional[float]:
    """Server RSS growth per idle connection, in KiB."""
    with _harness.Child.server(python, __file__, "--role", "server",
                               "--variant", variant) as server:
        before = server.rss_kib()
        load = subprocess.Popen(
            _harness.pinned(_harness.LOAD_CPU, _harness.script_argv(
                python, __file__, "--role", "idle", "--port", server.port, "--idle", count)),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_harness.child_env())
        line = load.stdout.readline() if load.stdout else ""
        after = server.rss_kib()
        if load.stdin:
            load.stdin.close()
        load.wait(30)
        if not line.startswith("READY"):
            print(f"  idle load failed: {line.strip()}")
            return None
    return (after - before) / count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _harness.add_common_options(p, seconds=10.0)
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds; best kept")
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--inflight", type=int, default=16)
    p.add_argument("--idle", type=int, default=5000, help="idle connections for RSS; 0 skips")
    p.add_argument("--codec", choices=["edn", "int"], default="edn",
                   help="payload codec; int leaves only the transport and stream cost")
    p.add_argument("--role", choices=["server", "load", "idle"], help=argparse.SUPPRESS)
    p.add_argument("--variant", choices=["aleph", "raw"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.role == "server":
        return run_server(args.variant, args.codec)
    if args.role == "load":
        return run_load(args.port, args.connections, args.inflight, args.seconds, args.warmup,
                        args.server_pid)
    if args.role == "idle":
        return run_idle(args.port, args.idle)

    args = _harness.finish_options(args)
    _harness.header(f"TCP framed {args.codec} inc-echo", args)
    print(f"{args.connections} connections x {args.inflight} in flight")
    results = _harness.Results("tcp_echo", args)
    # Alternate the variants for --rounds rounds and keep each one's best
    # round: other load on the machine only ever makes a round slower.
    best = {"aleph": (0.0, 0.0), "raw": (0.0, 0.0)}
    for r in range(args.rounds):
        for v in ("aleph", "raw"):
            rate, cpu_us = measure_rate(args, v)
            print(f"  round {r + 1} {v:5}: {rate:9.0f} msgs/s, server {cpu_us:5.2f} CPU us/msg")
            if rate > best[v][0]:
                best[v] = (rate, cpu_us)
    (a_rate, a_cpu), (r_rate, r_cpu) = best["aleph"], best["raw"]
    print(f"  twisted_aleph stream server: {a_rate:10.0f} msgs/s  {a_cpu:6.2f} CPU us/msg")
    print(f"  raw Int32StringReceiver:     {r_rate:10.0f} msgs/s  {r_cpu:6.2f} CPU us/msg")
    print(f"  ratio aleph/raw:             {a_rate / r_rate:10.2f}"
          f"  (by server CPU per msg: {r_cpu / a_cpu:.2f}; goal >= 0.8)")
    name = f"{args.codec} inc-echo x{args.connections}"
    results.add(name, a_rate, r_rate, "msgs/s")
    results.add(name + " server CPU", a_cpu, r_cpu, "us/msg", better="lower")
    if args.idle:
        print(f"idle connections: {args.idle}")
        idle = {v: measure_idle(args.python, v, args.idle) for v in ("aleph", "raw")}
        for v, label in (("aleph", "twisted_aleph"), ("raw", "raw Twisted  ")):
            kib = idle[v]
            print(f"  {label} RSS per idle connection: "
                  + ("n/a" if kib is None else f"{kib:.1f} KiB"))
        results.add(f"RSS per idle connection (x{args.idle})", idle["aleph"], idle["raw"],
                    "KiB", better="lower")
    results.emit()


if __name__ == "__main__":
    main()
