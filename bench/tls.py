"""HTTPS figures: twisted_aleph's TLS server against plain Twisted, same run.

Two servers, each in its own process pinned to CPU 0 (``taskset``), with a
throwaway certificate (``tls.generate_pki``, EC P-256) made for the run:

* ``aleph``: ``http.start_server(demo app, tls=tls.server_context(...))``;
* ``raw``: ``reactor.listenSSL`` with a plain ``CertificateOptions`` (same
  certificate, TLS 1.2 floor) and a ``twisted.web`` Site whose /hello
  Resource returns ``b"hello world!"``.

Load, pinned to CPU 1:

* HTTPS ``/hello`` with keep-alive: ``wrk -t1 -c50 https://...`` (a Twisted
  keep-alive TLS client if wrk is missing): req/s and server CPU us/request;
* new handshakes/s: a lean Twisted client keeping ``--concurrency`` (16)
  connections opening, each connecting, finishing its TLS handshake (no
  certificate check, to spend its CPU on the handshake alone) and closing:
  handshakes/s and server CPU us/handshake;
* the same with mutual TLS (both servers require a client certificate, the
  client presents one); ``--skip-mutual`` leaves it out.

CPU per request or handshake is steadier than the rates on a shared 2-core
machine (it does not count time the server waited for a CPU). The ratio is
twisted_aleph / plain Twisted.

    python bench/tls.py [--python PATH] [--seconds 5] [--warmup N] [--json]
                        [--rounds 1] [--concurrency 16] [--skip-mutual]
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import subprocess
import tempfile
from typing import Any, Dict

import _harness

HELLO = b"hello world!"
HAS_WRK = shutil.which("wrk") is not None
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


def keepalive_load(port: int, pki_dir: str, seconds: float, warmup: float,
                   server_pid: int, connections: int = 50) -> None:
    """wrk's stand-in: keep-alive GET /hello over TLS on ``connections`` sockets."""
    from twisted.internet import reactor
    from twisted.protocols.tls import TLSMemoryBIOFactory

    counter = [0]
    factory = TLSMemoryBIOFactory(_client_creator(pki_dir, False), True,
                                  _harness.hello_keepalive_factory(counter))
    for _ in range(connections):
        reactor.connectTCP("127.0.0.1", port, factory)
    _measure(seconds, warmup, server_pid, counter)


# -- orchestration ----------------------------------------------------------------------

def _wrk(url: str, seconds: float) -> str:
    argv = ["wrk", "-t1", "-c50", f"-d{max(1, math.ceil(seconds))}s", url]
    return subprocess.run(_harness.pinned(_harness.LOAD_CPU, argv), capture_output=True,
                          text=True, preexec_fn=_harness.raise_fd_limit).stdout


def hello_figures(args: argparse.Namespace, server: _harness.Child) -> Dict[str, float]:
    if not HAS_WRK:
        return _load(args, server, "--keepalive")
    url = f"https://127.0.0.1:{server.port}/hello"
    if args.warmup > 0:
        _wrk(url, args.warmup)
    cpu = server.cpu_seconds()
    out = _wrk(url, args.seconds)
    cpu = server.cpu_seconds() - cpu
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if not rps or not total or not int(total.group(1)):
        raise RuntimeError(f"wrk said: {out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk got errors: {out}")
    return {"rate": float(rps.group(1)), "cpu_us": cpu * 1e6 / int(total.group(1))}


def _load(args: argparse.Namespace, server: _harness.Child, role: str,
          *extra: Any) -> Dict[str, float]:
    out = _harness.run_pinned(_harness.LOAD_CPU, _harness.script_argv(
        args.python, __file__, role, server.port, "--pki", args.pki, "--seconds",
        args.seconds, "--warmup", args.warmup, "--server-pid", server.pid, *extra),
        timeout=args.seconds + args.warmup + 120)
    rate, cpu_us = _harness.read_rate(out)
    return {"rate": rate, "cpu_us": cpu_us}


def handshake_figures(args: argparse.Namespace, server: _harness.Child,
                      mutual: bool) -> Dict[str, float]:
    extra = ["--concurrency", args.concurrency] + (["--mutual"] if mutual else [])
    return _load(args, server, "--handshakes", *extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _harness.add_common_options(parser, seconds=5.0)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (best kept)")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="connections the handshake client keeps opening")
    parser.add_argument("--skip-mutual", action="store_true",
                        help="leave out the mutual-TLS handshake figure")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--pki", help=argparse.SUPPRESS)
    parser.add_argument("--mutual", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--handshakes", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--keepalive", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args.pki, args.mutual)
    if args.handshakes:
        return handshake_load(args.handshakes, args.pki, args.mutual, args.concurrency,
                              args.seconds, args.warmup or 0.0, args.server_pid)
    if args.keepalive:
        return keepalive_load(args.keepalive, args.pki, args.seconds, args.warmup or 0.0,
                              args.server_pid)

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
    figures = [("hello", "HTTPS /hello keep-alive", "req/s", False)]
    figures.append(("handshake", "new TLS handshakes", "handshakes/s", False))
    if not args.skip_mutual:
        figures.append(("mutual", "new mutual-TLS handshakes", "handshakes/s", True))
    best: Dict[str, Dict[str, Dict[str, float]]] = {
        name: {k: {"rate": 0.0, "cpu_us": math.inf} for k in KINDS} for name, *_ in figures}

    def record(name: str, kind: str, got: Dict[str, float]) -> None:
        best[name][kind]["rate"] = max(best[name][kind]["rate"], got["rate"])
        best[name][kind]["cpu_us"] = min(best[name][kind]["cpu_us"], got["cpu_us"])

    def start(kind: str, mutual: bool) -> _harness.Child:
        return _harness.Child.server(args.python, __file__, "--serve", kind, "--pki", args.pki,
                                     *(["--mutual"] if mutual else []))

    for _ in range(args.rounds):  # interleaved, so a burst of noise hits one round
        for kind in KINDS:
            with start(kind, mutual=False) as server:
                record("hello", kind, hello_figures(args, server))
                record("handshake", kind, handshake_figures(args, server, False))
            if not args.skip_mutual:
                with start(kind, mutual=True) as server:
                    record("mutual", kind, handshake_figures(args, server, True))
    load = "wrk -t1 -c50" if HAS_WRK else "Twisted keep-alive TLS client x50"
    for name, title, unit, _mutual in figures:
        how = load if name == "hello" else f"lean Twisted client, {args.concurrency} at a time"
        print(f"{title} ({how}, best of {args.rounds}):")
        per = "request" if name == "hello" else "handshake"
        for kind in KINDS:
            f = best[name][kind]
            print(f"  {LABELS[kind]:14} {f['rate']:10.0f} {unit:13} "
                  f"{f['cpu_us']:8.1f} server CPU us/{per}")
        a, b = best[name]["aleph"], best[name]["raw"]
        print(f"  twisted_aleph / plain Twisted: {unit} {a['rate'] / b['rate']:.2f}, "
              f"CPU per {per} {a['cpu_us'] / b['cpu_us']:.2f}")
        results.add(f"{title} vs plain Twisted", a["rate"], b["rate"], unit)
        results.add(f"{title} CPU vs plain Twisted", a["cpu_us"], b["cpu_us"], f"us/{per}",
                    better="lower")


if __name__ == "__main__":
    main()
