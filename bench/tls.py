"""HTTPS figures: twisted_aleph's TLS server against plain Twisted, same run.

Two servers, each in its own process pinned to CPU 0 (``taskset``), with a
throwaway certificate (``tls.generate_pki``, EC P-256) made for the run:

* ``aleph``: ``http.start_server(demo app, tls=tls.server_context(...))``;
* ``raw``: ``reactor.listenSSL`` with a plain ``CertificateOptions`` (same
  certificate, TLS 1.2 floor) and a ``twisted.web`` Site whose /hello
  Resource returns ``b"hello world!"``.

Load, pinned to CPU 1:

* HTTPS ``/hello`` with keep-alive: ``wrk -t1 -c50 https://...``: req/s and
  server CPU us/request;
* new handshakes/s: a Python (Twisted) client keeping ``--concurrency`` (16)
  connections opening, each connecting, finishing its TLS handshake (no
  certificate check, to spend its CPU on the handshake alone) and closing:
  handshakes/s and server CPU us/handshake. Load-bound likely: the client's
  side of a handshake costs about what the server's does, so watch the
  server core's CPU printed with it;
* the same with mutual TLS (both servers require a client certificate, the
  client presents one); ``--skip-mutual`` leaves it out.

Each figure: ``--runs`` (3) runs alternating the servers, the medians, the
server core's and the load core's CPU over the windows; a server busy under
90% of a window makes it "load-bound" instead of a ratio. CPU per request or
handshake is steadier than the rates on a shared 2-core machine (it does not
count time the server waited for a CPU). The ratio is twisted_aleph / plain
Twisted.

    python bench/tls.py [--python PATH] [--seconds 5] [--warmup N] [--json]
                        [--runs 3] [--concurrency 16] [--skip-mutual]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import tempfile
from typing import Any, Dict

import _harness
import _loadgen
from http_hello import wrk_figures

HELLO = b"hello world!"
KINDS = ("aleph", "raw")
LABELS = {"aleph": "twisted_aleph", "raw": "plain Twisted"}


# -- servers (run with --serve KIND --pki DIR; print the port; serve until killed) --

def serve(kind: str, pki_dir: str, mutual: bool) -> None:
    _harness.raise_fd_limit()
    from twisted.internet import reactor

    from twisted_aleph import tls

    files = _pki_files(pki_dir)
    if kind == "aleph":
        from twisted_aleph import http
        from twisted_aleph.demo.http import make_app
        context = tls.server_context(files.server_cert, files.server_key,
                                     ca=files.ca_cert if mutual else None,
                                     require_client_cert=mutual)
        port = http.start_server(make_app(websocket=False), 0, interface="127.0.0.1",
                                 tls=context, backlog=4096).port
    else:
        port = reactor.listenSSL(0, _raw_site(), _raw_context(files, mutual), backlog=4096,
                                 interface="127.0.0.1").getHost().port
    _harness.print_port(port)
    reactor.run()


def _pki_files(directory: str) -> Any:
    from twisted_aleph import tls
    import os
    names = tls.PKIFiles._fields
    files = ["ca.crt", "ca.k8", "server.crt", "server.k8", "client.crt", "client.k8"]
    return tls.PKIFiles(**{n: os.path.join(directory, f) for n, f in zip(names, files)})


def _raw_context(files: Any, mutual: bool) -> Any:
    """Plain Twisted: CertificateOptions straight from the PEM files."""
    from twisted.internet import ssl

    def read(path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()
    private = ssl.PrivateCertificate.loadPEM(read(files.server_cert) + read(files.server_key))
    extra: Dict[str, Any] = {}
    if mutual:
        extra = dict(verify=True, requireCertificate=True,
                     caCerts=[ssl.Certificate.loadPEM(read(files.ca_cert)).original])
    return ssl.CertificateOptions(privateKey=private.privateKey.original,
                                  certificate=private.original,
                                  raiseMinimumTo=ssl.TLSVersion.TLSv1_2, **extra)


def _raw_site() -> Any:
    from twisted.web import resource

    root = resource.Resource()
    root.putChild(b"hello", _harness.hello_resource())
    return _harness.quiet_site(root)


# -- load (run with --handshakes PORT or --keepalive PORT) ---------------------------

def _client_creator(pki_dir: str, mutual: bool) -> Any:
    """A lean client TLS creator: no certificate check (the figure is the
    server's handshake), a client certificate when ``mutual``."""
    from OpenSSL import SSL
    from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
    from zope.interface import implementer

    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    if mutual:
        files = _pki_files(pki_dir)
        ctx.use_certificate_file(files.client_cert)
        ctx.use_privatekey_file(files.client_key)

    @implementer(IOpenSSLClientConnectionCreator)
    class Creator:
        def clientConnectionForTLS(self, tls_protocol: Any) -> Any:
            connection = SSL.Connection(ctx, None)
            connection.set_app_data(tls_protocol)
            connection.set_tlsext_host_name(b"localhost")
            connection.set_connect_state()
            return connection
    return Creator()


def _measure(seconds: float, warmup: float, server_pid: int, counter: list) -> None:
    """After ``warmup``, count ``counter[0]`` for ``seconds``; print the RATE line."""
    from twisted.internet import reactor
    _harness.report_rate_after(reactor, counter, max(warmup, 0.2), seconds, server_pid)
    reactor.run()


def handshake_load(port: int, pki_dir: str, mutual: bool, concurrency: int,
                   seconds: float, warmup: float, server_pid: int) -> None:
    """``concurrency`` loops of connect, TLS handshake, close."""
    from twisted.internet import protocol, reactor
    from twisted.internet.interfaces import IHandshakeListener
    from twisted.protocols.tls import TLSMemoryBIOFactory
    from zope.interface import implementer

    counter = [0]
    creator = _client_creator(pki_dir, mutual)

    @implementer(IHandshakeListener)
    class Handshake(protocol.Protocol):
        def handshakeCompleted(self) -> None:
            counter[0] += 1
            self.transport.loseConnection()

        def connectionLost(self, reason: Any = None) -> None:
            reactor.callLater(0, connect)

    factory = TLSMemoryBIOFactory(creator, True, protocol.ClientFactory.forProtocol(Handshake))

    def connect() -> None:
        if reactor.running:
            reactor.connectTCP("127.0.0.1", port, factory)

    for _ in range(concurrency):
        reactor.callWhenRunning(connect)
    _measure(seconds, warmup, server_pid, counter)


# -- orchestration ----------------------------------------------------------------------

def hello_figures(args: argparse.Namespace, server: _harness.Child) -> _harness.Run:
    wrk, start = _loadgen.wrk()
    argv = wrk + ["-t1", "-c50", f"-d{max(1, math.ceil(args.seconds))}s",
                  f"https://127.0.0.1:{server.port}/hello"]
    out, window = _harness.run_load(argv, server.pid, "Requests/sec:", start_prefix=start,
                                    timeout=args.seconds + 60)
    return _harness.Run(*wrk_figures(out), window)


def _load(args: argparse.Namespace, server: _harness.Child, role: str,
          *extra: Any) -> _harness.Run:
    out, window = _harness.run_load(_harness.script_argv(
        args.python, __file__, role, server.port, "--pki", args.pki, "--seconds",
        args.seconds, "--warmup", args.warmup, "--server-pid", server.pid, *extra),
        server.pid, "RATE ", timeout=args.seconds + args.warmup + 120)
    rate, _ = _harness.read_rate(out)
    return _harness.Run(rate, rate * window.seconds, window)


def handshake_figures(args: argparse.Namespace, server: _harness.Child,
                      mutual: bool) -> _harness.Run:
    extra = ["--concurrency", args.concurrency] + (["--mutual"] if mutual else [])
    return _load(args, server, "--handshakes", *extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _harness.add_common_options(parser, seconds=5.0)
    parser.add_argument("--concurrency", type=int, default=16,
                        help="connections the handshake client keeps opening")
    parser.add_argument("--skip-mutual", action="store_true",
                        help="leave out the mutual-TLS handshake figure")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--pki", help=argparse.SUPPRESS)
    parser.add_argument("--mutual", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--handshakes", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args.pki, args.mutual)
    if args.handshakes:
        return handshake_load(args.handshakes, args.pki, args.mutual, args.concurrency,
                              args.seconds, args.warmup or 0.0, args.server_pid)

    args = _harness.finish_options(args)
    _harness.raise_fd_limit()
    _harness.header("TLS", args)
    results = _harness.Results("tls", args)
    with tempfile.TemporaryDirectory(prefix="aleph-bench-tls-") as directory:
        args.pki = directory
        _generate_pki(args.python, directory)
        measure(args, results)
    results.emit()


def _generate_pki(python: str, directory: str) -> None:
    """The run's throwaway certificates, made by the interpreter under test."""
    subprocess.run([python, "-c", "import sys; from twisted_aleph import tls; "
                    "tls.generate_pki(sys.argv[1])", directory],
                   check=True, env=_harness.child_env(), timeout=60)


def measure(args: argparse.Namespace, results: _harness.Results) -> None:
    def start(kind: str, mutual: bool) -> _harness.Child:
        return _harness.Child.server(args.python, __file__, "--serve", kind, "--pki", args.pki,
                                     *(["--mutual"] if mutual else []))

    try:
        _loadgen.wrk()
        with_wrk = True
    except _loadgen.Unavailable as e:
        print(f"HTTPS /hello: skipped ({e})")
        with_wrk = False
    figures = [("HTTPS /hello keep-alive", "wrk -t1 -c50", "req/s", "request", False,
                hello_figures)] if with_wrk else []
    handshakes = f"Python client, {args.concurrency} at a time: load-bound likely"
    figures.append(("new TLS handshakes", handshakes, "handshakes/s", "handshake", False,
                    lambda a, s: handshake_figures(a, s, False)))
    if not args.skip_mutual:
        figures.append(("new mutual-TLS handshakes", handshakes, "handshakes/s", "handshake",
                        True, lambda a, s: handshake_figures(a, s, True)))
    for mutual in (False, True):
        mine = [f for f in figures if f[4] == mutual]
        if not mine:
            continue
        servers = {}
        try:
            for kind in KINDS:
                servers[kind] = start(kind, mutual)
            for title, how, unit, per, _, run in mine:
                print(f"{title} ({how}):", flush=True)
                outcomes = _harness.alternate(
                    KINDS, args.runs, lambda kind, run=run, servers=servers: run(args, servers[kind]),
                    LABELS, unit, per)
                _harness.print_outcomes(outcomes, LABELS, unit, per)
                _harness.print_ratio("twisted_aleph", "plain Twisted", outcomes["aleph"],
                                     outcomes["raw"])
                results.compare(f"{title} vs plain Twisted", outcomes["aleph"],
                                outcomes["raw"], unit, per)
        finally:
            for server in servers.values():
                server.stop()


if __name__ == "__main__":
    _loadgen.run_main(main)
