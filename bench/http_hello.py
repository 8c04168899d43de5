"""HTTP server figures: twisted_aleph against plain Klein and raw twisted.web.

Each server runs in its own process (``--python``, pinned to CPU 0 with
``taskset`` when available); the load runs pinned to CPU 1. Named
``http_hello`` so that it cannot shadow the standard library's ``http``.

* ``/hello``: ``wrk -t1 -c50`` (keep-alive; a small Twisted keep-alive load
  generator if wrk is missing) against three servers: twisted_aleph's
  ``start_server`` with the seed's demo app (a response map), a plain Klein
  app with the same routing table whose /hello returns ``b"hello world!"``
  (Klein's own way), and a raw ``twisted.web`` Resource. ``--rounds``
  interleaved rounds, the best of each kept. Prints req/s and the server's
  CPU microseconds per request (steadier than req/s on a shared machine:
  it does not count time the server waited for a CPU); ratios against plain
  Klein (goal >= 0.9) and raw. No server writes an access log line
  (twisted_aleph's default), so the comparison is of the frameworks.
* 5,000 concurrent ``/delayed_hello`` (answered after 1 s):
  ``wrk -t1 -c5000 -d3s --timeout 10s --latency``, each connection asking
  again as soon as it is answered; latency p50/p99/max (ideal: 1 s each),
  requests answered, socket errors, and the server's peak RSS; baselines:
  the plain Klein app returning a Deferred of bytes, and a raw Resource that
  finishes each request from ``reactor.callLater(1, ...)``.
* ``/numbers?count=100`` to 500 concurrent clients (100 lines at 100 ms: ~10
  s whatever ``--seconds`` says; a raw-Twisted client that counts lines):
  whether every client got 100 lines, the wall time and peak RSS; baseline:
  a raw Resource writing from a ``LoopingCall``.

Figures are noisy on a shared 2-core machine; compare the ratios.

    python bench/http_hello.py [--python PATH] [--seconds 5] [--warmup N] [--json]
                               [--rounds 2] [--skip-concurrency]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import subprocess
import time
from typing import Any, Dict, List

import _harness

HELLO = b"hello world!"


# -- servers (run with --serve KIND, print the port, serve until killed) ----------

def _quiet_site(resource: Any) -> Any:
    from twisted.web.server import Site

    class QuietSite(Site):
        def log(self, request: Any) -> None:
            pass
    return QuietSite(resource)


def serve(kind: str) -> None:
    _harness.raise_fd_limit()
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
    _harness.print_port(port)
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
    _harness.raise_fd_limit()
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
    print("RESULT " + json.dumps(results), flush=True)


def keepalive_load(port: int, seconds: float, warmup: float, server_pid: int,
                   connections: int = 50) -> None:
    """wrk's stand-in: keep-alive GET /hello on ``connections`` sockets; prints
    req/s and the server's CPU microseconds per request."""
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
    start = [0.0, 0.0]

    def begin() -> None:
        counter[0] = 0
        start[:] = [time.perf_counter(), _harness.cpu_seconds(server_pid)]
        reactor.callLater(seconds, finish)

    def finish() -> None:
        n = max(counter[0], 1)
        cpu = _harness.cpu_seconds(server_pid) - start[1]
        print("RESULT " + json.dumps({"rps": n / (time.perf_counter() - start[0]),
                                      "cpu_us": cpu * 1e6 / n}), flush=True)
        reactor.stop()
    reactor.callLater(max(warmup, 0.2), begin)
    reactor.run()


# -- orchestration --------------------------------------------------------------------

KINDS = ("aleph", "klein", "raw")
LABELS = {"aleph": "twisted_aleph", "klein": "plain Klein", "raw": "raw twisted.web"}
SHORT = {"klein": "Klein", "raw": "raw"}  # for figure names in the --json rows
HAS_WRK = shutil.which("wrk") is not None


def _server(args: argparse.Namespace, kind: str) -> _harness.Child:
    return _harness.Child.server(args.python, __file__, "--serve", kind)


def _wrk(url: str, connections: int, seconds: float, *extra: str) -> str:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, math.ceil(seconds))}s"]
    argv += list(extra) + [url]
    return subprocess.run(_harness.pinned(_harness.LOAD_CPU, argv), capture_output=True,
                          text=True, preexec_fn=_harness.raise_fd_limit).stdout


def _wrk_count(out: str, pattern: str) -> int:
    found = re.search(pattern, out)
    return int(found.group(1)) if found else 0


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([a-z]+)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def hello_load(args: argparse.Namespace, server: _harness.Child) -> Dict[str, float]:
    """req/s and the server's CPU microseconds per request, after a warm-up."""
    if not HAS_WRK:
        out = _harness.run_pinned(_harness.LOAD_CPU, _harness.script_argv(
            args.python, __file__, "--keepalive", server.port, "--seconds", args.seconds,
            "--warmup", args.warmup, "--server-pid", server.pid))
        return json.loads(_harness.last_line(out, "RESULT "))
    url = f"http://127.0.0.1:{server.port}/hello"
    if args.warmup > 0:
        _wrk(url, 50, args.warmup)
    cpu = server.cpu_seconds()
    out = _wrk(url, 50, args.seconds)
    cpu = server.cpu_seconds() - cpu
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = _wrk_count(out, r"(\d+) requests in")
    if not rps or not total:
        raise RuntimeError(f"wrk said: {out}")
    return {"rps": float(rps.group(1)), "cpu_us": cpu * 1e6 / total}


def delayed_load(args: argparse.Namespace, server: _harness.Child,
                 clients: int) -> Dict[str, Any]:
    """wrk with ``clients`` connections on /delayed_hello: latency percentiles (ms),
    requests answered, errors, and the server's peak RSS (MB)."""
    base = f"http://127.0.0.1:{server.port}"
    if args.warmup > 0:
        _wrk(base + "/hello", 50, args.warmup)  # the same server code, JIT-warm
    out = _wrk(base + "/delayed_hello", clients, 3, "--timeout", "10s", "--latency")
    latency = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    percentiles = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", out, re.M))
    if not latency or "99" not in percentiles:
        raise RuntimeError(f"wrk said: {out}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    return {"p50": _ms(percentiles["50"]), "p99": _ms(percentiles["99"]),
            "max": _ms(latency.group(3)),
            "answered": _wrk_count(out, r"(\d+) requests in"),
            "non2xx": _wrk_count(out, r"Non-2xx or 3xx responses: (\d+)"),
            "errors": sum(int(n) for n in errors.groups()) if errors else 0,
            "rss": server.peak_rss_mb()}


def numbers_load(args: argparse.Namespace, server: _harness.Child,
                 clients: int) -> Dict[str, Any]:
    out = _harness.run_pinned(_harness.LOAD_CPU, _harness.script_argv(
        args.python, __file__, "--load", server.port, "--path", "/numbers?count=100",
        "--clients", clients))
    result = json.loads(_harness.last_line(out, "RESULT "))
    result["rss"] = server.peak_rss_mb()
    return result


def measure_hello(args: argparse.Namespace, results: _harness.Results) -> None:
    best: Dict[str, Dict[str, float]] = {k: {"rps": 0.0, "cpu_us": math.inf} for k in KINDS}
    for _ in range(args.rounds):  # interleaved, so a burst of noise hits one round
        for kind in KINDS:
            with _server(args, kind) as server:
                got = hello_load(args, server)
            best[kind]["rps"] = max(best[kind]["rps"], got["rps"])
            best[kind]["cpu_us"] = min(best[kind]["cpu_us"], got["cpu_us"])
    print(f"/hello, {'wrk -t1 -c50' if HAS_WRK else 'Twisted keep-alive client x50'}, "
          f"best of {args.rounds} interleaved rounds:")
    for kind in KINDS:
        print(f"  {LABELS[kind]:16} {best[kind]['rps']:10.0f} req/s "
              f"{best[kind]['cpu_us']:7.1f} server CPU us/request")
    for base, goal in (("klein", " (goal >= 0.9)"), ("raw", "")):
        print(f"  twisted_aleph / {LABELS[base]}: req/s {best['aleph']['rps'] / best[base]['rps']:.2f}"
              f", CPU per request {best['aleph']['cpu_us'] / best[base]['cpu_us']:.2f}{goal}")
        results.add(f"/hello vs {SHORT[base]}", best["aleph"]["rps"], best[base]["rps"], "req/s")
        results.add(f"/hello CPU vs {SHORT[base]}", best["aleph"]["cpu_us"],
                    best[base]["cpu_us"], "us/req", better="lower")


def measure_delayed(args: argparse.Namespace, results: _harness.Results,
                    clients: int = 5000) -> None:
    if not HAS_WRK:
        print(f"/delayed_hello x{clients}: skipped (needs wrk)")
        return
    print(f"/delayed_hello, wrk -t1 -c{clients} -d3s --latency (ideal: every request 1 s):")
    figures = {}
    for kind in KINDS:
        with _server(args, kind) as server:
            f = figures[kind] = delayed_load(args, server, clients)
        f["note"] = "" if not f["errors"] and not f["non2xx"] else (
            f"{f['errors']} socket errors, {f['non2xx']} non-2xx")
        print(f"  {LABELS[kind]:16} p50 {f['p50']:6.0f} ms  p99 {f['p99']:6.0f} ms  max "
              f"{f['max']:6.0f} ms  {f['answered']:6d} answered  peak RSS {f['rss']:5.0f} MB"
              f"{'  ' + f['note'] if f['note'] else ''}")
    a = figures["aleph"]
    for base in ("klein", "raw"):
        b = figures[base]
        for key, unit in (("p99", "ms"), ("rss", "MB")):
            name = "peak RSS" if key == "rss" else key
            results.add(f"/delayed x{clients} {name} vs {SHORT[base]}", a[key], b[key], unit,
                        better="lower", note=a["note"] or b["note"])


def measure_numbers(args: argparse.Namespace, results: _harness.Results,
                    clients: int = 500) -> None:
    print(f"/numbers?count=100 to {clients} concurrent clients (~10 s each):")
    figures = {}
    for kind in ("aleph", "raw"):
        with _server(args, kind) as server:
            f = figures[kind] = numbers_load(args, server, clients)
        f["good"] = f["failed"] == 0 and f["lines"] == [100]
        print(f"  {LABELS[kind]:16} {f['ok']}/{clients} answered in {f['seconds']:.2f} s, "
              f"lines per body {f['lines']}, peak RSS {f['rss']:.0f} MB"
              f"{'' if f['good'] else '  <-- NOT ALL GOT 100 LINES'}")
    a, b = figures["aleph"], figures["raw"]
    note = "" if a["good"] else f"{a['ok']}/{clients} ok, lines {a['lines']}"
    results.add(f"/numbers x{clients} wall time vs raw", a["seconds"], b["seconds"], "s",
                better="lower", note=note)
    results.add(f"/numbers x{clients} peak RSS vs raw", a["rss"], b["rss"], "MB",
                better="lower", note=note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _harness.add_common_options(parser, seconds=5.0)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved /hello rounds")
    parser.add_argument("--skip-concurrency", action="store_true",
                        help="only /hello (skip /delayed_hello and /numbers)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--load", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--keepalive", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", default="/hello", help=argparse.SUPPRESS)
    parser.add_argument("--clients", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    if args.load:
        return concurrent_load(args.load, args.path, args.clients)
    if args.keepalive:
        return keepalive_load(args.keepalive, args.seconds, args.warmup or 0.0, args.server_pid)

    args = _harness.finish_options(args)
    _harness.raise_fd_limit()
    _harness.header("HTTP", args)
    results = _harness.Results("http", args)
    measure_hello(args, results)
    if not args.skip_concurrency:
        measure_delayed(args, results)
        measure_numbers(args, results)
    results.emit()


if __name__ == "__main__":
    main()
