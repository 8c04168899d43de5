"""HTTP server figures: twisted_aleph against plain Klein and raw twisted.web.

Each server runs in its own process (``--python``, pinned to CPU 0 with
``taskset`` when available); the load runs pinned to CPU 1.

* ``/hello`` requests per second with ``wrk`` (keep-alive; a small Twisted
  keep-alive load generator if wrk is missing) against three servers:
  twisted_aleph's ``start_server`` with the seed's demo app (a response map),
  a plain Klein app with the same routing table whose /hello returns
  ``b"hello world!"`` (Klein's own way), and a raw
  ``twisted.web`` Resource. Ratios against plain Klein (goal >= 0.9) and raw.
  Every server here writes no access log line (twisted_aleph's default), so
  the comparison is of the frameworks.
* 5,000 concurrent ``/delayed_hello`` (answered after 1 s): time until all are
  answered (connecting 5,000 sockets from one Python client is most of the
  time past the 1 s) and the server's peak RSS; baselines: the plain Klein app
  returning a Deferred of bytes, and a raw Resource that finishes each
  request from ``reactor.callLater(1, ...)``.
* ``/numbers?count=100`` to 500 concurrent clients (100 lines at 100 ms: ~10 s
  whatever ``--seconds`` says): whether every client got 100 lines, and the
  wall time; baseline: a raw Resource writing from a ``LoopingCall``.

Figures are noisy on a shared 2-core machine; compare the ratios.

    python bench/http.py [--python PATH] [--seconds 5] [--skip-concurrency]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# This file is named like the standard library's ``http``: keep its directory
# off sys.path, or ``import http`` (Twisted does) would find this script.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

HELLO = b"hello world!"


# -- servers (run with --serve KIND, print the port, serve until killed) ----------

def _quiet_site(resource: Any) -> Any:
    from twisted.web.server import Site

    class QuietSite(Site):
        def log(self, request: Any) -> None:
            pass
    return QuietSite(resource)


def serve(kind: str) -> None:
    from twisted.internet import reactor
    from twisted.web import resource, server

    if kind == "aleph":
        from twisted_aleph import http
        from twisted_aleph.demo.http import make_app
        port = http.start_server(make_app(), 0, interface="127.0.0.1", backlog=4096).port
    else:
        if kind == "klein":
            root = _plain_klein_app().resource()
        else:
            root = _raw_resource()
        port = reactor.listenTCP(0, _quiet_site(root), backlog=4096,
                                 interface="127.0.0.1").getHost().port
    del server, resource
    print(port, flush=True)
    reactor.run()


def _plain_klein_app() -> Any:
    """The demo app's routing table, /hello returning bytes the Klein way."""
    from klein import Klein
    from twisted.internet.defer import Deferred

    from twisted_aleph import deferred
    from twisted_aleph.demo import http as demo, websocket as websocket_demo
    app = Klein()

    @app.route("/hello", methods=["GET", "HEAD"])
    def hello(request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        return HELLO

    @app.route("/delayed_hello", methods=["GET", "HEAD"])
    def delayed_hello(request: Any) -> Any:
        request.setHeader(b"content-type", b"text/plain")
        return deferred.timeout(Deferred(), demo.DELAY, value=HELLO)

    @app.route("/numbers", methods=["GET", "HEAD"])
    def numbers(request: Any) -> Any:
        return b"not benchmarked"

    websocket_demo.add_routes(app)
    return app


def _raw_resource() -> Any:
    from twisted.internet import reactor, task
    from twisted.web import resource, server

    class Hello(resource.Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> bytes:
            request.setHeader(b"content-type", b"text/plain")
            return HELLO

    class Delayed(resource.Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> Any:
            request.setHeader(b"content-type", b"text/plain")
            call = reactor.callLater(1.0, lambda: (request.write(HELLO), request.finish()))
            request.notifyFinish().addErrback(lambda _: call.active() and call.cancel())
            return server.NOT_DONE_YET

    class Numbers(resource.Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> Any:
            count = int(request.args.get(b"count", [b"0"])[0])
            sent = [0]

            def tick() -> None:
                if sent[0] >= count:
                    loop.stop()
                    request.finish()
                    return
                sent[0] += 1
                request.write(b"%d\n" % sent[0])
            loop = task.LoopingCall(tick)
            loop.start(0.1, now=False)
            request.notifyFinish().addErrback(lambda _: loop.running and loop.stop())
            return server.NOT_DONE_YET

    root = resource.Resource()
    root.putChild(b"hello", Hello())
    root.putChild(b"delayed_hello", Delayed())
    root.putChild(b"numbers", Numbers())
    return root


# -- load (run with --load) ------------------------------------------------------------

def concurrent_load(port: int, path: str, clients: int) -> None:
    """Open ``clients`` connections at once, one HTTP/1.0 GET each; print JSON
    with the wall time until the last answer and each body's line count."""
    from twisted.internet import defer, protocol, reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    class OneRequest(protocol.Protocol):
        def __init__(self) -> None:
            self.data: List[bytes] = []
            self.done: defer.Deferred = defer.Deferred()

        def connectionMade(self) -> None:
            self.transport.write(b"GET " + path.encode() + b" HTTP/1.0\r\nHost: b\r\n\r\n")

        def dataReceived(self, data: bytes) -> None:
            self.data.append(data)

        def connectionLost(self, reason: Any) -> None:
            self.done.callback(b"".join(self.data))

    results: Dict[str, Any] = {}

    async def run() -> None:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=60)
        start = time.perf_counter()

        async def one() -> Any:
            try:
                proto = await connectProtocol(endpoint, OneRequest())
                return await proto.done
            except Exception as e:  # counted as a failure
                return e
        answers = await defer.gatherResults(
            [defer.ensureDeferred(one()) for _ in range(clients)])
        results["seconds"] = time.perf_counter() - start
        ok = [a for a in answers if isinstance(a, bytes) and a.startswith(b"HTTP/1.")
              and b" 200 " in a.split(b"\r\n", 1)[0]]
        results["ok"] = len(ok)
        results["lines"] = sorted({a.split(b"\r\n\r\n", 1)[1].count(b"\n") for a in ok})
        results["failed"] = clients - len(ok)

    def main() -> None:
        defer.ensureDeferred(run()).addBoth(lambda r: (print(r) if r else None, reactor.stop()))
    reactor.callWhenRunning(main)
    reactor.run()
    print(json.dumps(results), flush=True)


def keepalive_load(port: int, seconds: float, connections: int = 32) -> None:
    """wrk's stand-in: keep-alive GET /hello on ``connections`` sockets; prints req/s."""
    from twisted.internet import protocol, reactor

    request = b"GET /hello HTTP/1.1\r\nHost: b\r\n\r\n"
    counter = [0]
    end_of_response = re.compile(rb"\r\n\r\nhello world!")

    class KeepAlive(protocol.Protocol):
        buf = b""

        def connectionMade(self) -> None:
            self.transport.write(request)

        def dataReceived(self, data: bytes) -> None:
            self.buf += data
            n = len(end_of_response.findall(self.buf))
            if n:
                self.buf = self.buf[self.buf.rfind(b"hello world!") + len(HELLO):]
                counter[0] += n
                self.transport.write(request * n)

    factory = protocol.ClientFactory.forProtocol(KeepAlive)
    for _ in range(connections):
        reactor.connectTCP("127.0.0.1", port, factory)
    start = [0.0]

    def begin() -> None:
        counter[0] = 0
        start[0] = time.perf_counter()
        reactor.callLater(seconds, finish)

    def finish() -> None:
        print(json.dumps({"rps": counter[0] / (time.perf_counter() - start[0])}), flush=True)
        reactor.stop()
    reactor.callLater(0.5, begin)  # warm-up
    reactor.run()


# -- orchestration --------------------------------------------------------------------

def _pinned(cpu: int, argv: List[str]) -> List[str]:
    if shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)] + argv
    return argv


class ServerProcess:
    def __init__(self, python: str, kind: str) -> None:
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(
            _pinned(0, [python, os.path.abspath(__file__), "--serve", kind]),
            stdout=subprocess.PIPE, env=env, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"{kind} server did not start")
        self.port = int(line)

    def peak_rss_mb(self) -> Optional[float]:
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return None

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def hello_load(python: str, server: "ServerProcess", seconds: float) -> Dict[str, float]:
    """req/s, and the server's CPU microseconds per request (steadier than
    req/s when other processes share the machine)."""
    url = f"http://127.0.0.1:{server.port}/hello"
    if shutil.which("wrk"):
        subprocess.run(_pinned(1, ["wrk", "-t1", "-c32", "-d1s", url]),
                       capture_output=True, text=True)  # warm-up
        cpu = server.cpu_seconds()
        out = subprocess.run(_pinned(1, ["wrk", "-t1", "-c32", f"-d{max(1, round(seconds))}s",
                                         url]), capture_output=True, text=True).stdout
        cpu = server.cpu_seconds() - cpu
        rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
        total = re.search(r"(\d+) requests in", out)
        if not rps or not total:
            raise RuntimeError(f"wrk said: {out}")
        return {"rps": float(rps.group(1)), "cpu_us": cpu * 1e6 / max(int(total.group(1)), 1)}
    cpu = server.cpu_seconds()
    out = subprocess.run(_pinned(1, [python, os.path.abspath(__file__), "--keepalive",
                                     str(server.port), "--seconds", str(seconds)]),
                         capture_output=True, text=True).stdout
    cpu = server.cpu_seconds() - cpu
    rps = float(json.loads(out.strip().splitlines()[-1])["rps"])
    return {"rps": rps, "cpu_us": cpu * 1e6 / max(rps * (seconds + 0.5), 1)}


def concurrency(python: str, port: int, path: str, clients: int) -> Dict[str, Any]:
    out = subprocess.run(_pinned(1, [python, os.path.abspath(__file__), "--load", str(port),
                                     "--path", path, "--clients", str(clients)]),
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--skip-concurrency", action="store_true")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--load", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--keepalive", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", default="/hello", help=argparse.SUPPRESS)
    parser.add_argument("--clients", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    if args.load:
        return concurrent_load(args.load, args.path, args.clients)
    if args.keepalive:
        return keepalive_load(args.keepalive, args.seconds)

    print(f"python: {args.python}; load: {'wrk' if shutil.which('wrk') else 'twisted'}; "
          f"taskset: {bool(shutil.which('taskset'))}")
    # Three rounds, servers interleaved; the best round of each counts.
    best: Dict[str, Dict[str, float]] = {}
    kinds = ("aleph", "klein", "raw")
    for _ in range(3):
        for kind in kinds:
            server = ServerProcess(args.python, kind)
            try:
                got = hello_load(args.python, server, args.seconds / 3)
            finally:
                server.stop()
            mine = best.setdefault(kind, {"rps": 0.0, "cpu_us": float("inf")})
            mine["rps"] = max(mine["rps"], got["rps"])
            mine["cpu_us"] = min(mine["cpu_us"], got["cpu_us"])
    for kind in kinds:
        print(f"/hello {kind:>6}: {best[kind]['rps']:10.0f} req/s, "
              f"{best[kind]['cpu_us']:6.0f} server CPU us/request")
    for base, label in (("klein", "plain Klein (goal >= 0.9)"), ("raw", "raw twisted.web")):
        print(f"/hello twisted_aleph vs {label}: req/s ratio "
              f"{best['aleph']['rps'] / best[base]['rps']:.2f}, CPU-per-request ratio "
              f"{best[base]['cpu_us'] / best['aleph']['cpu_us']:.2f} (higher is better)")
    if args.skip_concurrency:
        return

    for path, clients, expect in (("/delayed_hello", 5000, None),
                                  ("/numbers?count=100", 500, 100)):
        figures = {}
        for kind in ("aleph", "klein", "raw") if expect is None else ("aleph", "raw"):
            server = ServerProcess(args.python, kind)
            try:
                result = concurrency(args.python, server.port, path, clients)
                result["rss"] = server.peak_rss_mb()
            finally:
                server.stop()
            figures[kind] = result
            good = result["failed"] == 0 and (expect is None or result["lines"] == [expect])
            print(f"{path} x{clients} {kind:>6}: {result['ok']}/{clients} answered in "
                  f"{result['seconds']:.2f} s, lines per body {result['lines']}, peak RSS "
                  f"{result['rss']:.0f} MB{'' if good else '  <-- NOT ALL OK'}")
        for base in figures:
            if base != "aleph":
                print(f"{path} twisted_aleph / {base}: time "
                      f"{figures['aleph']['seconds'] / figures[base]['seconds']:.2f}, "
                      f"peak RSS {figures['aleph']['rss'] / figures[base]['rss']:.2f}")


if __name__ == "__main__":
    main()
