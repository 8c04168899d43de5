"""HTTP server figures: twisted_aleph against plain Klein and raw twisted.web.

Each server runs in its own process (``--python``, pinned to CPU 0 with
``taskset`` when available); the load runs pinned to CPU 1. Named
``http_hello`` so that it cannot shadow the standard library's ``http``.

* ``/hello``: ``wrk -t1 -c50`` (keep-alive) against three servers, started
  together: twisted_aleph's ``start_server`` with the seed's demo app (a
  response map), a raw ``twisted.web`` Resource, and a plain Klein app with
  the same routing table whose /hello returns ``b"hello world!"`` (Klein's
  own way). After ``--warmup`` seconds of wrk per server, ``--runs`` (3)
  rounds alternating the servers; the medians of req/s and of the server's
  CPU microseconds per request (steadier than req/s on a shared machine: it
  does not count time the server waited for a CPU), with the server core's
  and wrk's core's CPU over the windows; ratios against raw (goal >= 1.0)
  and plain Klein, or "load-bound" where a server was busy under 90% of a window.
  No server writes an access log line
  (twisted_aleph's default), and every server runs with CPython's garbage
  collector tuned as ``twistd aleph-http`` tunes it
  (``twisted_aleph.server.tune_gc``; nothing on PyPy), so the comparison is
  of the frameworks.
* 5,000 concurrent ``/delayed_hello`` (answered after 1 s):
  ``wrk -t1 -c5000 -d3s --timeout 10s --latency``, each connection asking
  again as soon as it is answered; latency p50/p99/max (ideal: 1 s each),
  requests answered, socket errors, and the server's peak RSS; baselines:
  the plain Klein app returning ``deferLater(reactor, 1, ...)`` of bytes, and a
  raw Resource that finishes each request from ``reactor.callLater(1, ...)``.
  wrk re-asks for 3 s, so later requests queue behind earlier ones: this
  latency measures the queue as much as the server.
* The same 5,000 as a one-shot batch, against the same three servers: a raw
  ``selectors`` client (its own process under ``--python``, on CPU 1) opens
  5,000 keep-alive connections first, in waves the listen backlog holds,
  until the server holds them all (not timed); then sends one GET on every
  connection back to back and waits for all answers. Figures: seconds from
  the first send to the last complete response ("all answered in"; ideal
  1 s), latency min/p50/p99/max from each request's own send, the count
  answered 200 "hello world!", server and client CPU seconds during the
  batch (the client's stays a small fraction: it is not the bottleneck) and
  the server's peak RSS. ``--batches`` (default 2) batches run on the same
  connections; the first is the one-shot figure in ``--json``. On CPython a
  fourth server, twisted_aleph with Python's default collector settings,
  shows what the tuning is worth here.
* ``/numbers?count=100`` to 500 concurrent clients (100 lines at 100 ms: ~10
  s whatever ``--seconds`` says; a raw-Twisted client that counts lines):
  whether every client got 100 lines, the wall time and peak RSS; baseline:
  a raw Resource writing from a ``LoopingCall``.

Figures are noisy on a shared 2-core machine; compare the ratios.

    python bench/http_hello.py [--python PATH] [--seconds 5] [--warmup N] [--json]
                               [--runs 3] [--skip-concurrency] [--batches 2]
                               [--only hello|delayed-wrk|delayed-batch|numbers ...]
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import re
import selectors
import shutil
import socket
import subprocess
import time
from typing import Any, Dict, List, Optional, Tuple

import _harness
import _loadgen

HELLO = b"hello world!"


# -- servers (run with --serve KIND, print the port, serve until killed) ----------

def serve(kind: str) -> None:
    _harness.raise_fd_limit()
    from twisted.internet import reactor
    from twisted.web import resource, server

    from twisted_aleph.server import tune_gc
    kind, _, gc_mode = kind.partition("+")
    if kind == "aleph":
        from twisted_aleph import http
        from twisted_aleph.demo.http import make_app
        port = http.start_server(make_app(), 0, interface="127.0.0.1", backlog=4096).port
    else:
        if kind == "klein":
            root = _plain_klein_app().resource()
        else:
            root = _raw_resource()
        port = reactor.listenTCP(0, _harness.quiet_site(root), backlog=4096,
                                 interface="127.0.0.1").getHost().port
    del server, resource
    if gc_mode != "python-gc":
        tune_gc()  # as twistd aleph-http runs (CPython; a no-op on PyPy), for every server here
    _harness.print_port(port)
    reactor.run()


def _plain_klein_app() -> Any:
    """The demo app's routing table, /hello returning bytes the Klein way."""
    from klein import Klein
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    from twisted_aleph.demo import http as demo, websocket as websocket_demo
    app = Klein()

    @app.route("/hello", methods=["GET", "HEAD"])
    def hello(request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        return HELLO

    @app.route("/delayed_hello", methods=["GET", "HEAD"])
    def delayed_hello(request: Any) -> Any:
        request.setHeader(b"content-type", b"text/plain")
        return deferLater(reactor, demo.DELAY, lambda: HELLO)

    @app.route("/numbers", methods=["GET", "HEAD"])
    def numbers(request: Any) -> Any:
        return b"not benchmarked"

    websocket_demo.add_routes(app)
    return app


def _raw_resource() -> Any:
    from twisted.internet import reactor, task
    from twisted.web import resource, server

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
    root.putChild(b"hello", _harness.hello_resource())
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


# -- the one-shot /delayed_hello batch (run with --batch): a raw selectors client ------
#
# wrk keeps every connection busy for its whole run, so answers queue behind the
# previous round's and latency measures the queue. Here each connection asks exactly
# once per batch: connections are opened first (not timed), then every GET goes out
# back to back, and the batch ends at the last complete response. Plain sockets and
# one selector, so the client spends a few microseconds per request and cannot be
# the bottleneck (it runs on its own CPU).

DELAYED_REQUEST = b"GET /delayed_hello HTTP/1.1\r\nHost: bench\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.I)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[ \t]*chunked", re.I)


def parse_response(buf: bytes) -> Optional[Tuple[int, bytes, bytes]]:
    """(status, body, what follows) of the first complete HTTP/1.1 response in
    ``buf`` (Content-Length or chunked), or None while it is incomplete."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = buf[:head_end + 2]
    status = int(head.split(b" ", 2)[1])
    pos = head_end + 4
    length = _CONTENT_LENGTH.search(head)
    if length:
        end = pos + int(length.group(1))
        return (status, buf[pos:end], buf[end:]) if len(buf) >= end else None
    if not _CHUNKED.search(head):
        return (status, b"", buf[pos:]) if status in (204, 304) else None
    body = []
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(buf[pos:line_end].split(b";", 1)[0], 16)
        pos = line_end + 2
        if size == 0:
            trailer_end = buf.find(b"\r\n\r\n", pos - 2)
            if trailer_end < 0:
                return None
            return status, b"".join(body), buf[trailer_end + 4:]
        if len(buf) < pos + size + 2:
            return None
        body.append(buf[pos:pos + size])
        pos += size + 2


def _server_fd_count(pid: int) -> Optional[int]:
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def _connect_wave_size() -> int:
    """Connections per wave: half the kernel's cap on a listen backlog, at most 500,
    so no wave can overflow the server's accept queue (and drop SYNs for 1 s)."""
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            somaxconn = int(f.read())
    except (OSError, ValueError):
        somaxconn = 128
    return max(32, min(500, somaxconn // 2))


def open_connections(port: int, clients: int, server_pid: int,
                     sel: selectors.BaseSelector, timeout: float = 60.0) -> List[socket.socket]:
    """``clients`` connected keep-alive sockets, opened in waves; after each wave,
    wait until the server process holds that many more file descriptors (that is,
    it has accepted them all), so the batch starts with every connection live."""
    baseline = _server_fd_count(server_pid)
    wave = _connect_wave_size()
    socks: List[socket.socket] = []
    while len(socks) < clients:
        pending = set()
        for _ in range(min(wave, clients - len(socks))):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = sock.connect_ex(("127.0.0.1", port))
            if err not in (0, errno.EINPROGRESS):
                raise OSError(err, "connect: " + os.strerror(err))
            sel.register(sock, selectors.EVENT_WRITE)
            pending.add(sock)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError("%d connections still not connected after %g s" % (
                    len(pending), timeout))
            for key, _ in sel.select(1.0):
                sock = key.fileobj  # type: ignore[assignment]
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, "connect: " + os.strerror(err))
                sel.unregister(sock)
                pending.discard(sock)
                socks.append(sock)
        if baseline is None:
            continue
        while (_server_fd_count(server_pid) or 0) - baseline < len(socks):
            if time.monotonic() > deadline:
                raise RuntimeError("the server accepted %d of %d connections in %g s" % (
                    (_server_fd_count(server_pid) or 0) - baseline, len(socks), timeout))
            time.sleep(0.01)  # polling another process's fd table; nothing here is timed
    return socks


def _percentile(ordered: List[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def one_batch(socks: List[socket.socket], sel: selectors.BaseSelector, server_pid: int,
              timeout: float = 60.0) -> Dict[str, Any]:
    """One GET /delayed_hello on every socket, back to back; wait for every answer.

    Returns seconds from the first send to the last complete response
    (``wall``), how long the sends took (``send_spread``), per-request latency
    from its own send (min/p50/p99/max, ms), counts (answered at all, answered
    200 with "hello world!" as ``ok``, connections the server closed), and the
    CPU seconds the server and this client used meanwhile (the client's should
    be a small fraction of the wall time: it is not the bottleneck)."""
    n = len(socks)
    clock = time.perf_counter
    server_cpu, client_cpu = _harness.cpu_seconds(server_pid), time.process_time()
    sent = [0.0] * n
    done: List[Optional[float]] = [None] * n
    buffers = [b""] * n
    for i, sock in enumerate(socks):
        sel.register(sock, selectors.EVENT_READ, i)
    request = DELAYED_REQUEST
    refused = []
    for i, sock in enumerate(socks):
        sent[i] = clock()
        try:
            sock.send(request)  # 45 bytes into an idle socket's empty buffer: never short
        except OSError:  # the server closed it (in an earlier batch): counted as lost
            refused.append(i)
    send_spread = clock() - sent[0]
    for i in refused:
        sel.unregister(socks[i])
    remaining, ok, closed = n - len(refused), 0, len(refused)
    deadline = sent[0] + timeout
    while remaining and clock() < deadline:
        for key, _ in sel.select(1.0):
            i = key.data
            try:
                data = socks[i].recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            now = clock()
            if not data:
                sel.unregister(socks[i])
                closed += 1
                if done[i] is None:
                    remaining -= 1
                continue
            if done[i] is not None:
                continue  # bytes after the answer: not ours to judge
            parsed = parse_response(buffers[i] + data)
            if parsed is None:
                buffers[i] += data
                continue
            status, body, buffers[i] = parsed
            done[i] = now
            remaining -= 1
            ok += status == 200 and body == HELLO
    server_cpu = _harness.cpu_seconds(server_pid) - server_cpu
    client_cpu = time.process_time() - client_cpu
    for sock in socks:
        if sel.get_map().get(sock.fileno()) is not None:
            sel.unregister(sock)
    latencies = sorted(d - s for d, s in zip(done, sent) if d is not None)
    answered = len(latencies)
    last = max((d for d in done if d is not None), default=None)
    ms = [x * 1e3 for x in latencies] or [math.nan]
    return {"clients": n, "answered": answered, "ok": ok, "closed": closed,
            "wall": None if last is None else last - sent[0], "send_spread": send_spread,
            "min": ms[0], "p50": _percentile(ms, 0.5), "p99": _percentile(ms, 0.99),
            "max": ms[-1], "server_cpu": server_cpu, "client_cpu": client_cpu}


def batch_load(port: int, clients: int, server_pid: int, batches: int) -> None:
    """Open the connections, run ``batches`` batches on them one after the other
    (the first is the one-shot figure), print ``RESULT {"batches": [...]}``."""
    _harness.raise_fd_limit()
    with selectors.DefaultSelector() as sel:
        socks = open_connections(port, clients, server_pid, sel)
        results = [one_batch(socks, sel, server_pid) for _ in range(batches)]
        for sock in socks:
            sock.close()
    print("RESULT " + json.dumps({"batches": results}), flush=True)


# -- orchestration --------------------------------------------------------------------

KINDS = ("aleph", "raw", "klein")
#: twisted_aleph with CPython's collector left as Python sets it (the batch shows both)
UNTUNED = "aleph+python-gc"
LABELS = {"aleph": "twisted_aleph", "klein": "plain Klein", "raw": "raw twisted.web",
          UNTUNED: "aleph, Python GC"}
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


def hello_load(args: argparse.Namespace, server: _harness.Child, seconds: float) -> _harness.Run:
    """``wrk -t1 -c50`` on /hello for ``seconds``: req/s, server CPU per request."""
    wrk, start = _loadgen.wrk()
    argv = wrk + ["-t1", "-c50", f"-d{max(1, math.ceil(seconds))}s",
                  f"http://127.0.0.1:{server.port}/hello"]
    out, window = _harness.run_load(argv, server.pid, "Requests/sec:", start_prefix=start,
                                    timeout=seconds + 60)
    return _harness.Run(*wrk_figures(out), window)


def wrk_figures(out: str) -> Tuple[float, int]:
    """(wrk's requests/s, requests answered) from its report; any error is a
    RuntimeError showing the report."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = _wrk_count(out, r"(\d+) requests in")
    if not rps or not total or re.search(r"Non-2xx or 3xx responses|Socket errors", out):
        raise RuntimeError(f"wrk said: {out}")
    return float(rps.group(1)), total


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
    try:
        _loadgen.wrk()
    except _loadgen.Unavailable as e:
        print(f"/hello: skipped ({e})")
        results.add("/hello vs raw", None, None, "req/s", note="no wrk")
        return
    print("/hello, wrk -t1 -c50:", flush=True)
    servers: Dict[str, _harness.Child] = {}
    try:
        for kind in KINDS:
            servers[kind] = _server(args, kind)
            if args.warmup > 0:
                hello_load(args, servers[kind], args.warmup)
        outcomes = _harness.alternate(KINDS, args.runs,
                                      lambda kind: hello_load(args, servers[kind], args.seconds),
                                      LABELS, "req/s", "request")
    finally:
        for server in servers.values():
            server.stop()
    _harness.print_outcomes(outcomes, LABELS, "req/s", "request")
    for base, goal in (("raw", "(goal >= 1.0)"), ("klein", "")):
        _harness.print_ratio("twisted_aleph", LABELS[base], outcomes["aleph"], outcomes[base],
                             goal)
        results.compare(f"/hello vs {SHORT[base]}", outcomes["aleph"], outcomes[base], "req/s",
                        "req")


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


def warm_up(args: argparse.Namespace, server: _harness.Child) -> None:
    """``--warmup`` seconds of keep-alive /hello with wrk (the same server code,
    JIT-warm); without wrk, the batch's own second round shows the warm figure."""
    if args.warmup > 0 and HAS_WRK:
        _wrk(f"http://127.0.0.1:{server.port}/hello", 50, args.warmup)


def batch_figures(args: argparse.Namespace, server: _harness.Child,
                  clients: int) -> List[Dict[str, Any]]:
    """The batch client's figures, one dict per batch, each with the server's peak RSS."""
    warm_up(args, server)
    out = _harness.run_pinned(_harness.LOAD_CPU, _harness.script_argv(
        args.python, __file__, "--batch", server.port, "--clients", clients,
        "--server-pid", server.pid, "--batches", args.batches), timeout=600)
    batches = json.loads(_harness.last_line(out, "RESULT "))["batches"]
    for batch in batches:
        batch["rss"] = server.peak_rss_mb()
    return batches


def _batch_note(f: Dict[str, Any]) -> str:
    if f["ok"] == f["clients"]:
        return ""
    return f"{f['ok']}/{f['clients']} answered 200 hello world!" + (
        f", {f['closed']} closed" if f["closed"] else "")


def measure_batch(args: argparse.Namespace, results: _harness.Results,
                  clients: int = 5000) -> None:
    print(f"/delayed_hello x{clients}, one-shot batch: {clients} keep-alive connections opened "
          f"first (not timed), then one GET each, sent back to back (ideal: all answered 1 s "
          f"after the first send):")
    figures = {}
    for kind in KINDS + (() if args.is_pypy else (UNTUNED,)):
        with _server(args, kind) as server:
            batches = batch_figures(args, server, clients)
        figures[kind] = batches[0]
        for number, f in enumerate(batches, 1):
            wall = "never" if f["wall"] is None else f"{f['wall']:5.2f} s"
            note = _batch_note(f)
            print(f"  {LABELS[kind]:16} batch {number}: {f['ok']:5d}/{clients} answered in {wall}"
                  f" (sent in {f['send_spread'] * 1e3:3.0f} ms)  min {f['min']:5.0f}  p50 "
                  f"{f['p50']:5.0f}  p99 {f['p99']:5.0f}  max {f['max']:5.0f} ms  CPU server "
                  f"{f['server_cpu']:4.2f} s client {f['client_cpu']:4.2f} s  peak RSS "
                  f"{f['rss']:4.0f} MB{'  <-- ' + note if note else ''}")
    a = figures["aleph"]
    for base in ("klein", "raw"):
        b = figures[base]
        note = "; ".join(x for x in (_batch_note(a), _batch_note(b) and
                                     f"{SHORT[base]}: {_batch_note(b)}") if x)
        results.add(f"/delayed x{clients} batch: all answered in vs {SHORT[base]}",
                    a["wall"], b["wall"], "s", better="lower", note=note)


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
    parser.add_argument("--skip-concurrency", action="store_true",
                        help="only /hello (skip /delayed_hello and /numbers)")
    parser.add_argument("--only", action="append", choices=PARTS,
                        help="run only this part (repeat; default: all of %s)" % ", ".join(PARTS))
    parser.add_argument("--batches", type=int, default=2,
                        help="/delayed_hello batches on the same connections; the first is "
                             "the one-shot figure (default 2)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--load", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", default="/hello", help=argparse.SUPPRESS)
    parser.add_argument("--clients", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    if args.load:
        return concurrent_load(args.load, args.path, args.clients)
    if args.batch:
        return batch_load(args.batch, args.clients, args.server_pid, args.batches)

    args = _harness.finish_options(args)
    _harness.raise_fd_limit()
    _harness.header("HTTP", args)
    results = _harness.Results("http", args)
    parts = args.only or (PARTS[:1] if args.skip_concurrency else PARTS)
    for part in PARTS:
        if part in parts:
            MEASURES[part](args, results)
    results.emit()


#: the parts of the run, in order (``--only``)
PARTS = ("hello", "delayed-wrk", "delayed-batch", "numbers")
MEASURES = {"hello": measure_hello, "delayed-wrk": measure_delayed,
            "delayed-batch": measure_batch, "numbers": measure_numbers}


if __name__ == "__main__":
    _loadgen.run_main(main)
