"""Scaling out: ``twistd aleph-http --workers N``, and chat across workers on Redis.

* ``/hello`` req/s with ``--workers 2`` against ``--workers 1`` (the
  baseline): ``wrk -t2 -c100`` on a fresh twistd each time. NOT pinned:
  two workers need both cores, so wrk shares them with the servers; on this
  2-core machine the ratio is what the servers gain with wrk competing
  (issue 9's goal: >= 1.4).
* chat: ``--clients`` WebSocket clients in one room, each sending lines with
  at most ``--window`` of its own unanswered (its line coming back to it is
  the answer), so nothing is dropped; figure: lines delivered to clients per
  second. Project: ``--workers 2 --bus redis://...`` with the clients split
  evenly between the two processes (they reconnect until the
  ``x-aleph-worker`` header says so), every line crossing Redis; baseline:
  one process with its in-process bus. Needs ``redis-server`` (skipped with
  a note without it).

Servers run under ``--python`` (this checkout first on PYTHONPATH), as twistd
would; the chat load runs under it too: a Python client on the same two cores
(load-bound likely: it is what puts the lines through the room, and the JSON
row says so). Figures are noisy on a shared machine.

    python bench/scale.py [--python PATH] [--seconds 5] [--warmup N] [--json]
                          [--clients 20] [--window 8]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any, Dict, List, Optional

import _harness

HAS_WRK = shutil.which("wrk") is not None
REDIS = shutil.which("redis-server")
TWISTD = ["-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile="]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- processes -------------------------------------------------------------------------

class Process:
    """A child process writing to a log file, ready once ``ready`` appears there
    ``count`` times (a file, not a pipe: a pipe nobody reads would block it)."""

    def __init__(self, argv: List[str], ready: bytes, count: int = 1,
                 timeout: float = 60.0) -> None:
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=_harness.child_env())
        try:
            self._wait_for(ready, count, timeout)
        except BaseException:
            self.stop()
            raise

    def output(self) -> bytes:
        self.log.seek(0)
        return self.log.read()

    def _wait_for(self, ready: bytes, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.output().count(ready) < count:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited: {self.output()[-800:]!r}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready in {timeout} s: {self.output()[-800:]!r}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def __enter__(self) -> "Process":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def redis_server(port: int) -> Process:
    return Process([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no"], b"Ready to accept connections")


def aleph_http(args: argparse.Namespace, port: int, workers: int,
               bus: Optional[str] = None) -> Process:
    argv = [args.python] + TWISTD + ["aleph-http", "--port", str(port),
                                     "--interface", "127.0.0.1", "--workers", str(workers)]
    if bus:
        argv += ["--bus", bus]
    return Process(argv, b"aleph-http listening on", count=workers)


# -- /hello ------------------------------------------------------------------------------

def wrk(url: str, seconds: float) -> float:
    argv = ["wrk", "-t2", "-c100", f"-d{max(1, math.ceil(seconds))}s", url]
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not found:
        raise RuntimeError(f"wrk said: {out}")
    return float(found.group(1))


def hello_rps(args: argparse.Namespace, workers: int) -> float:
    port = free_port()
    with aleph_http(args, port, workers):
        url = f"http://127.0.0.1:{port}/hello"
        if args.warmup > 0:
            wrk(url, args.warmup)
        return wrk(url, args.seconds)


# -- chat ----------------------------------------------------------------------------------

def chat_load(port: int, clients: int, window: int, seconds: float, warmup: float,
              spread: int) -> None:
    """Run in the --python interpreter: prints ``RESULT {"rate":..., ...}``."""
    from twisted.internet import defer, reactor, task

    from twisted_aleph.http.websocket import websocket_client

    url = f"ws://127.0.0.1:{port}/chat"
    delivered = [0]

    async def connect_spread() -> List[Any]:
        """``clients`` connections, ``clients/spread`` on each server process."""
        per: Dict[str, List[Any]] = {}
        want = clients // spread
        for _ in range(clients * 20):
            if sum(min(len(v), want) for v in per.values()) >= clients:
                break
            conn = await websocket_client(url, ping_interval=None)
            pid = conn.info["headers"].get("x-aleph-worker", "one")
            group = per.setdefault(pid, [])
            if len(group) >= want:
                conn.close()
                continue
            group.append(conn)
        conns = [c for group in per.values() for c in group]
        if len(conns) < clients:
            raise RuntimeError(f"could not spread {clients} clients over {spread} processes")
        return conns

    async def client(conn: Any, name: str, stop: Any) -> None:
        await conn.put("bench")
        await conn.put(name)
        mine = name + ": "
        in_flight = [0]
        room: List[Any] = [None]

        async def receive() -> None:
            while True:
                msg = await conn.take()
                if msg is None:
                    return
                delivered[0] += 1
                if msg.startswith(mine):
                    in_flight[0] -= 1
                    if room[0] is not None and not room[0].called:
                        d, room[0] = room[0], None
                        d.callback(None)

        receiving = defer.ensureDeferred(receive())
        i = 0
        while not stop.called:
            if in_flight[0] >= window:
                room[0] = defer.Deferred()
                await room[0]
                continue
            in_flight[0] += 1
            i += 1
            await conn.put(str(i))
        conn.close()
        await receiving

    async def run() -> Dict[str, float]:
        conns = await connect_spread()
        stop: defer.Deferred = defer.Deferred()
        running = [defer.ensureDeferred(client(c, f"c{n}", stop)) for n, c in enumerate(conns)]
        await task.deferLater(reactor, warmup, lambda: None)
        start, count = time.perf_counter(), delivered[0]
        await task.deferLater(reactor, seconds, lambda: None)
        elapsed, count = time.perf_counter() - start, delivered[0] - count
        stop.callback(None)
        await defer.DeferredList(running)
        return {"rate": count / elapsed, "clients": len(conns)}

    result: Dict[str, Any] = {}

    def main() -> None:
        d = defer.ensureDeferred(run())
        d.addCallbacks(result.update, lambda f: result.update(error=f.getErrorMessage()))
        d.addBoth(lambda _: reactor.stop())
    reactor.callWhenRunning(main)
    reactor.run()
    print("RESULT " + json.dumps(result), flush=True)


def chat_rate(args: argparse.Namespace, workers: int, bus: Optional[str]) -> Dict[str, Any]:
    port = free_port()
    with aleph_http(args, port, workers, bus):
        out = subprocess.run(_harness.script_argv(
            args.python, __file__, "--chat-load", port, "--clients", args.clients,
            "--window", args.window, "--seconds", args.seconds, "--warmup",
            max(args.warmup, 0.5), "--spread", workers),
            stdout=subprocess.PIPE, text=True, env=_harness.child_env(), timeout=300).stdout
    result = json.loads(_harness.last_line(out, "RESULT "))
    if "error" in result:
        raise RuntimeError(result["error"])
    return result


# -- main ------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _harness.add_common_options(parser, seconds=5.0)
    parser.add_argument("--clients", type=int, default=20, help="chat clients (default 20)")
    parser.add_argument("--window", type=int, default=8,
                        help="unanswered lines per chat client (default 8)")
    parser.add_argument("--chat-load", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--spread", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.chat_load:
        return chat_load(args.chat_load, args.clients, args.window, args.seconds,
                         args.warmup or 0.0, args.spread)
    args = _harness.finish_options(args)
    _harness.raise_fd_limit()
    _harness.header("Scaling out", args,
                    pinning="not pinned: two workers need both cores, the load shares them")
    results = _harness.Results("scale", args)

    if HAS_WRK:
        one = hello_rps(args, 1)
        two = hello_rps(args, 2)
        print(f"/hello, wrk -t2 -c100: 1 worker {one:,.0f} req/s, 2 workers {two:,.0f} req/s, "
              f"ratio {two / one:.2f} (goal >= 1.4)", flush=True)
        results.add("/hello req/s, 2 workers vs 1", two, one, "req/s",
                    note="wrk on the same 2 cores")
    else:
        print("/hello: skipped (wrk not installed)", flush=True)
        results.add("/hello req/s, 2 workers vs 1", None, None, "req/s", note="no wrk")

    name = f"chat deliveries/s, {args.clients} clients: 2 workers on Redis vs 1 process"
    if REDIS is None:
        print("chat: skipped (redis-server not installed)", flush=True)
        results.add(name, None, None, "msgs/s", note="no redis-server")
    else:
        baseline = chat_rate(args, 1, None)["rate"]
        redis_port = free_port()
        with redis_server(redis_port):
            project = chat_rate(args, 2, f"redis://127.0.0.1:{redis_port}")["rate"]
        print(f"chat, {args.clients} clients in one room, window {args.window}: "
              f"1 process (in-process bus) {baseline:,.0f} deliveries/s, "
              f"2 workers via Redis {project:,.0f} deliveries/s, "
              f"ratio {project / baseline:.2f}", flush=True)
        results.add(name, project, baseline, "msgs/s",
                    note="Python clients on the same cores: load-bound likely")
    results.emit()


if __name__ == "__main__":
    main()
