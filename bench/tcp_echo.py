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

    python bench/tcp_echo.py [--python PATH] [--seconds 10] [--idle 5000] [--codec edn|int]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from typing import Any, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# Run as a script, this directory is sys.path[0]: its other scripts (http.py)
# would shadow standard modules that Twisted imports.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
REQUEST = b"1"          # the EDN payload sent
REPLY = b"2"            # what inc answers


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# -- roles run in child processes ---------------------------------------------

def int_encode(value: int) -> bytes:
    return b"%d" % value


def run_server(variant: str, codec: str) -> None:
    """Serve on a free port; print it; run until killed."""
    raise_fd_limit()
    sys.path.insert(0, ROOT)
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
    print(f"PORT {port}", flush=True)
    reactor.run()


def run_load(port: int, connections: int, inflight: int, seconds: float,
             warmup: float) -> None:
    """Keep ``inflight`` requests per connection; print replies per second."""
    raise_fd_limit()
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
    marks: List[Any] = []

    def start() -> None:
        print("START", flush=True)
        marks.append((time.perf_counter(), counter[0]))
        reactor.callLater(seconds, stop)

    def stop() -> None:
        t0, c0 = marks[0]
        n = counter[0] - c0
        print(f"RATE {n / (time.perf_counter() - t0):.1f} {n}", flush=True)
        reactor.stop()

    reactor.callLater(warmup, start)
    reactor.run()


def run_idle(port: int, count: int) -> None:
    """Open ``count`` connections, one round trip each (so the server has
    accepted them all), print READY, then idle until stdin closes."""
    raise_fd_limit()
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

def pinned(cpu: int, argv: List[str]) -> List[str]:
    if shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)] + argv
    return argv


def child(python: str, *args: str) -> List[str]:
    return [python, os.path.abspath(__file__)] + list(args)


def start_server(python: str, variant: str, codec: str = "edn") -> "tuple[subprocess.Popen, int]":
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(pinned(0, child(python, "--role", "server", "--variant", variant,
                                            "--codec", codec)),
                            stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"{variant} server did not start: {line!r}")
    return proc, int(line.split()[1])


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by process ``pid``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_rate(python: str, variant: str, args: argparse.Namespace) -> "tuple[float, float]":
    """(replies per second, server CPU microseconds per reply)."""
    server, port = start_server(python, variant, args.codec)
    try:
        load = subprocess.Popen(
            pinned(1, child(python, "--role", "load", "--port", str(port),
                            "--connections", str(args.connections),
                            "--inflight", str(args.inflight),
                            "--seconds", str(args.seconds), "--warmup", str(args.warmup))),
            stdout=subprocess.PIPE, text=True)
        cpu0 = None
        for line in load.stdout or ():
            if line.startswith("START"):
                cpu0 = cpu_seconds(server.pid)
            elif line.startswith("RATE ") and cpu0 is not None:
                cpu = cpu_seconds(server.pid) - cpu0
                _, rate, count = line.split()
                load.wait()
                return float(rate), cpu / max(int(count), 1) * 1e6
        load.wait()
    finally:
        stop(server)
    raise SystemExit(f"{variant}: the load generator printed no rate")


def measure_idle(python: str, variant: str, count: int) -> Optional[float]:
    """Server RSS growth per idle connection, in KiB."""
    server, port = start_server(python, variant)
    try:
        before = rss_kib(server.pid)
        load = subprocess.Popen(pinned(1, child(python, "--role", "idle", "--port", str(port),
                                                "--idle", str(count))),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = load.stdout.readline() if load.stdout else ""
        after = rss_kib(server.pid)
        if load.stdin:
            load.stdin.close()
        load.wait(30)
        if not line.startswith("READY"):
            print(f"  idle load failed: {line.strip()}")
            return None
    finally:
        stop(server)
    return (after - before) / count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--python", default=sys.executable,
                   help="interpreter for the server and load processes")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds; best kept")
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--inflight", type=int, default=16)
    p.add_argument("--idle", type=int, default=5000, help="idle connections for RSS; 0 skips")
    p.add_argument("--codec", choices=["edn", "int"], default="edn",
                   help="payload codec; int leaves only the transport and stream cost")
    p.add_argument("--role", choices=["server", "load", "idle"], help=argparse.SUPPRESS)
    p.add_argument("--variant", choices=["aleph", "raw"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.role == "server":
        return run_server(args.variant, args.codec)
    if args.role == "load":
        return run_load(args.port, args.connections, args.inflight, args.seconds, args.warmup)
    if args.role == "idle":
        return run_idle(args.port, args.idle)

    print(f"framed {args.codec} inc-echo, {args.connections} connections x {args.inflight} in flight,"
          f" {args.seconds:g} s each; python: {args.python}"
          f"{'' if shutil.which('taskset') else ' (no taskset: not pinned)'}")
    # Alternate the variants for --rounds rounds and keep each one's best
    # round: other load on the machine only ever makes a round slower.
    best = {"aleph": (0.0, 0.0), "raw": (0.0, 0.0)}
    for r in range(args.rounds):
        for v in ("aleph", "raw"):
            rate, cpu_us = measure_rate(args.python, v, args)
            print(f"  round {r + 1} {v:5}: {rate:9.0f} msgs/s, server {cpu_us:5.2f} CPU us/msg")
            if rate > best[v][0]:
                best[v] = (rate, cpu_us)
    (a_rate, a_cpu), (r_rate, r_cpu) = best["aleph"], best["raw"]
    print(f"  twisted_aleph stream server: {a_rate:10.0f} msgs/s  {a_cpu:6.2f} CPU us/msg")
    print(f"  raw Int32StringReceiver:     {r_rate:10.0f} msgs/s  {r_cpu:6.2f} CPU us/msg")
    print(f"  ratio aleph/raw:             {a_rate / r_rate:10.2f}"
          f"  (by server CPU per msg: {r_cpu / a_cpu:.2f}; goal >= 0.8)")
    if args.idle:
        print(f"idle connections: {args.idle}")
        idle = {v: measure_idle(args.python, v, args.idle) for v in ("aleph", "raw")}
        for v, label in (("aleph", "twisted_aleph"), ("raw", "raw Twisted  ")):
            kib = idle[v]
            print(f"  {label} RSS per idle connection: "
                  + ("n/a" if kib is None else f"{kib:.1f} KiB"))


if __name__ == "__main__":
    main()
