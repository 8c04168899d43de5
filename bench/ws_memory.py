"""WebSocket memory: does a server give back what closed connections held?

A server process (the demo app of ``twistd aleph-http`` served by
``http.start_server``, CPython's collector tuned as the ready servers tune it:
``twisted_aleph.server.tune_gc()``, ``--gc-threshold`` to change) answers
``--cycles`` (40,000) WebSocket connections to ``/echo``, each negotiating
permessage-deflate, sending one compressed text message, reading its
compressed echo, and closing (close frame, then the server hangs up the TCP
connection). ``--parallel`` (8) connections are open at a time.

The server's resident memory is printed after the first ``--first`` (5,000)
cycles and every 5,000 after that. A closed connection freed by reference
counting leaves the figure flat; one kept in a reference cycle waits for the
cyclic collector, which the tuned server runs rarely, and the figure climbs.
Goal: RSS after all cycles within 10% of RSS after the first 5,000.

Standalone (stdlib + this checkout); Linux only (reads ``/proc``). The client
is a few blocking sockets speaking hand-made frames, so nothing on the load
side depends on the code measured.

    python bench/ws_memory.py [--python PATH] [--cycles 40000] [--first 5000]
                              [--parallel 8] [--gc-threshold N] [--json]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MESSAGE = ("hello compressed websocket " * 8).encode()
STEP = 5000


# -- the server (child process) ----------------------------------------------------

def serve(gc_threshold: Optional[int]) -> None:
    from twisted.internet import reactor

    from twisted_aleph.demo.http import app
    from twisted_aleph.http import start_server
    from twisted_aleph.server import SERVER_GC_THRESHOLD, tune_gc

    server = start_server(app, 0, interface="127.0.0.1")
    tune_gc(SERVER_GC_THRESHOLD if gc_threshold is None else gc_threshold)
    print(server.port, flush=True)
    reactor.run()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc status")


# -- the load: one echo round trip per connection ----------------------------------

def _recv_exact(sock: socket.socket, n: int, buf: bytearray) -> bytes:
    while len(buf) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server hung up early")
        buf += chunk
    out = bytes(buf[:n])
    del buf[:n]
    return out


def _read_frame(sock: socket.socket, buf: bytearray) -> "tuple[int, bool, bytes]":
    b0, b1 = _recv_exact(sock, 2, buf)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", _recv_exact(sock, 2, buf))[0]
    elif n == 127:
        n = struct.unpack(">Q", _recv_exact(sock, 8, buf))[0]
    return b0 & 0x0F, bool(b0 & 0x40), _recv_exact(sock, n, buf)


def _masked(first_byte: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([first_byte])
    if n < 126:
        head += bytes([0x80 | n])
    else:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def one_cycle(port: int) -> None:
    """Handshake offering permessage-deflate, a compressed echo, a clean close."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request)
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("no handshake answer")
            buf += chunk
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101") or b"permessage-deflate" not in head:
            raise RuntimeError(f"unexpected handshake answer: {head[:200]!r}")
        buf = bytearray(rest)
        compressor = zlib.compressobj(wbits=-15)
        deflated = compressor.compress(MESSAGE) + compressor.flush(zlib.Z_SYNC_FLUSH)
        sock.sendall(_masked(0x80 | 0x40 | 0x1, deflated[:-4]))  # FIN, RSV1, text
        opcode, compressed, payload = _read_frame(sock, buf)
        if compressed:
            payload = zlib.decompressobj(wbits=-15).decompress(payload + b"\x00\x00\xff\xff")
        if opcode != 1 or payload != MESSAGE:
            raise RuntimeError(f"bad echo: opcode {opcode}, {payload[:50]!r}")
        sock.sendall(_masked(0x80 | 0x8, struct.pack(">H", 1000)))
        opcode, _, _ = _read_frame(sock, buf)
        if opcode != 8:
            raise RuntimeError(f"expected the close answer, got opcode {opcode}")
        while sock.recv(65536):  # the server hangs up: the connection is over
            pass


def run_cycles(port: int, count: int, parallel: int) -> None:
    """``count`` cycles over ``parallel`` threads; raises the first failure."""
    left = [count]
    lock = threading.Lock()
    errors: List[BaseException] = []

    def worker() -> None:
        while not errors:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            try:
                one_cycle(port)
            except BaseException as e:  # reported by the main thread
                errors.append(e)
                return

    threads = [threading.Thread(target=worker) for _ in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


# -- orchestration ------------------------------------------------------------------

def measure(args: argparse.Namespace) -> Dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    command = [args.python, os.path.abspath(__file__), "--serve"]
    if args.gc_threshold is not None:
        command += ["--gc-threshold", str(args.gc_threshold)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        figures: List[Dict[str, float]] = []
        started = time.monotonic()
        done = 0
        marks = [args.first] + list(range(args.first + STEP, args.cycles, STEP)) + [args.cycles]
        for mark in sorted(set(m for m in marks if m <= args.cycles)):
            run_cycles(port, mark - done, args.parallel)
            done = mark
            figure = {"cycles": done, "rss_mb": round(rss_mb(child.pid), 1),
                      "seconds": round(time.monotonic() - started, 1)}
            figures.append(figure)
            if not args.json:
                print(f"{done:>7,} cycles: server RSS {figure['rss_mb']:7.1f} MB "
                      f"({figure['seconds']:.0f} s)", flush=True)
        return {"figures": figures}
    finally:
        child.terminate()
        child.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter for the server (default: this one)")
    parser.add_argument("--cycles", type=int, default=40000)
    parser.add_argument("--first", type=int, default=5000)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--gc-threshold", type=int, default=None,
                        help="the server's tune_gc threshold (default: the ready servers'; "
                             "0 leaves Python's collector settings alone)")
    parser.add_argument("--json", action="store_true",
                        help="end with a line 'BENCH-RESULT {json}'")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.gc_threshold)
        return
    if args.first > args.cycles:
        parser.error("--first must not be more than --cycles")
    result = measure(args)
    first, last = result["figures"][0], result["figures"][-1]
    growth = last["rss_mb"] / first["rss_mb"]
    verdict = "within" if growth <= 1.10 else "over"
    print(f"RSS after {first['cycles']:,}: {first['rss_mb']:.1f} MB; after {last['cycles']:,}: "
          f"{last['rss_mb']:.1f} MB; ratio {growth:.2f} ({verdict} the 1.10 goal)")
    if args.json:
        print("BENCH-RESULT " + json.dumps({
            "bench": "ws_memory", "python": args.python, "rows": [{
                "name": f"RSS after {last['cycles']:,} vs {first['cycles']:,} compressed /echo",
                "project": last["rss_mb"], "baseline": first["rss_mb"], "unit": "MB",
                "ratio": round(growth, 3), "better": "lower",
                "note": "goal: ratio <= 1.10"}],
            "figures": result["figures"]}))


if __name__ == "__main__":
    main()
