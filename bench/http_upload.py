"""A large upload through a slow handler: the server's memory, against raw twisted.web.

One client (its own process under ``--python``, pinned to CPU 1) sends one
``--megabytes`` (default 200) MB POST as fast as the socket takes it; the
handler reads the body at ``--rate`` MB/s (default 50), slower than the
network. Figures: the server's RSS growth during the upload (peak RSS,
``VmHWM``, minus RSS before it; the issue's goal is under 32 MB) and the
seconds from the first byte sent to the answer.

* twisted_aleph: ``http.start_server`` with a ``raw_stream`` route
  (``body_options(raw_stream=True, max_request_body=None)``): the handler
  runs at the head and reads ``request.body_stream``; while it is behind, the
  server stops reading the socket, so the client waits in the kernel.
* baseline: a raw twisted.web ``Resource``: the body is stored whole (in a
  temporary file past 100 KB) before ``render_POST`` runs, which then reads
  it at the same rate. Its RSS stays low too, but it writes the whole upload
  to disk first, and the handler starts only once the upload is over.

Usage: ``python bench/http_upload.py [--python PATH] [--megabytes 200] [--rate 50] [--json]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness  # noqa: E402

MiB = 1024 * 1024


# -- the servers (child processes) ----------------------------------------------

def serve_aleph(rate: float) -> None:
    from klein import Klein
    from twisted.internet import reactor, task

    from twisted_aleph import http

    app = Klein()

    @app.route("/upload", methods=["POST"])
    @http.body_options(raw_stream=True, max_request_body=None)
    async def upload(request: Any) -> dict:
        size = 0
        while True:
            data = await request.body_stream.take()
            if data is None:
                break
            size += len(data)
            await task.deferLater(reactor, len(data) / rate, lambda: None)
        return {"body": b"%d" % size}

    server = http.start_server(app, 0, interface="127.0.0.1")
    _harness.print_port(server.port)
    reactor.run()


def serve_twisted(rate: float) -> None:
    from twisted.internet import reactor, task
    from twisted.web import resource, server

    class Upload(resource.Resource):
        isLeaf = True

        def render_POST(self, request: Any) -> Any:
            def read(size: int) -> None:
                data = request.content.read(65536)
                if not data:
                    request.write(b"%d" % size)
                    request.finish()
                    return
                task.deferLater(reactor, len(data) / rate, read, size + len(data))
            read(0)
            return server.NOT_DONE_YET

    site = _harness.quiet_site(Upload())
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    _harness.print_port(port.getHost().port)
    reactor.run()


# -- the client (a child process) ------------------------------------------------

def upload(port: int, megabytes: int) -> None:
    """Send the POST, wait for the answer; print ``SECONDS <s>`` and the body."""
    total = megabytes * MiB
    block = b"\0" * MiB
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n" % total)
        for _ in range(megabytes):
            sock.sendall(block)
        answer = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    elapsed = time.monotonic() - started
    if not answer.startswith(b"HTTP/1.1 200 ") or b"\r\n%d" % total not in answer:
        raise SystemExit("bad answer: %r" % answer[-200:])
    print("SECONDS %.3f" % elapsed, flush=True)


# -- the orchestrator --------------------------------------------------------------

def measure(args: argparse.Namespace, impl: str) -> Any:
    with _harness.Child.server(args.python, __file__, "--role", "server", "--impl", impl,
                               "--rate", args.rate) as server:
        before = server.rss_kib() / 1024
        out = _harness.run_pinned(_harness.LOAD_CPU, _harness.script_argv(
            args.python, __file__, "--role", "client", "--port", server.port,
            "--megabytes", args.megabytes), timeout=600)
        growth = server.peak_rss_mb() - before
        seconds = float(_harness.last_line(out, "SECONDS"))
    print("  %-14s RSS growth %7.1f MB   upload answered in %6.2f s" % (impl, growth, seconds),
          flush=True)
    return growth, seconds


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _harness.add_common_options(parser, seconds=0)
    parser.add_argument("--role", choices=["orchestrator", "server", "client"],
                        default="orchestrator")
    parser.add_argument("--impl", choices=["aleph", "twisted"], default="aleph")
    parser.add_argument("--port", type=int)
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0,
                        help="MB/s the handler reads at (default 50)")
    args = parser.parse_args(argv)
    rate = args.rate * MiB
    if args.role == "server":
        (serve_aleph if args.impl == "aleph" else serve_twisted)(rate)
        return
    if args.role == "client":
        upload(args.port, args.megabytes)
        return
    _harness.finish_options(args)
    _harness.header("HTTP upload of %d MB through a handler reading %g MB/s"
                    % (args.megabytes, args.rate), args)
    aleph_growth, aleph_seconds = measure(args, "aleph")
    twisted_growth, twisted_seconds = measure(args, "twisted")
    results = _harness.Results("http_upload", args)
    results.add("RSS growth, %d MB upload" % args.megabytes, aleph_growth, twisted_growth,
                "MB", better="lower",
                note="twisted.web writes the whole body to a temporary file first")
    results.add("upload answered in", aleph_seconds, twisted_seconds, "s", better="lower")
    results.emit()


if __name__ == "__main__":
    main()
