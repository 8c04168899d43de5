"""WebSocket echo and chat fan-out: twisted_aleph against a bare Autobahn server.

Both servers run in their own processes pinned to CPU 0 (``taskset -c 0``),
started together and measured in turn; the load is node with the npm package
``ws`` (``bench/loadgen/ws_load.js``; ``ws`` installed into ``bench/.build``
at first use), pinned to CPU 1.

* echo: ``--connections`` (50) connections each keeping ``--window`` (10)
  text messages in flight, every reply checked. ``aleph`` is the demo app's
  ``/echo`` (Klein route, ``websocket_connection`` takeover, the duplex stream
  connected to itself); ``autobahn`` is a ``WebSocketServerProtocol`` whose
  ``onMessage`` calls ``sendMessage``.
* chat fan-out: ``--room`` (200) clients in one room; one of them publishes
  with ``--window`` lines outstanding (its own copies coming back are the
  answers); the figure is deliveries per second (lines x receivers).
  ``aleph`` is the demo's ``/chat`` (EventBus, ``buffer(100)``, per-client
  backpressure); ``autobahn`` is a dict of rooms and a loop of
  ``sendMessage``.

After ``--warmup`` seconds of the same load per server (PyPy's JIT),
``--runs`` (3) rounds alternating the servers; the medians are printed with
the server core's and the load core's CPU over the windows; a server busy
(running or queued for its core) under 90% of a window means the figure is
the load's ("load-bound", no ratio). No
compression (the load does not offer it), so framing, not zlib, is measured.

    python bench/websocket.py [--python PATH] [--seconds 5] [--warmup N] [--runs 3]
                              [--connections 50] [--room 200] [--window 10] [--json]
"""

from __future__ import annotations

import argparse
from typing import Any, Dict, List, Set

import _harness
import _loadgen

VARIANTS = ("aleph", "autobahn")
LABELS = {"echo": {"aleph": "twisted_aleph /echo (stream)",
                   "autobahn": "bare Autobahn echo protocol"},
          "chat": {"aleph": "twisted_aleph /chat (EventBus)",
                   "autobahn": "bare Autobahn broadcast"}}


# -- servers (child processes) -----------------------------------------------------

def run_server(variant: str) -> None:
    _harness.raise_fd_limit()
    from twisted.internet import reactor

    if variant == "aleph":
        from klein import Klein

        from twisted_aleph.demo.websocket import add_routes
        from twisted_aleph.http import start_server

        app = Klein()
        add_routes(app)
        port = start_server(app, 0, interface="127.0.0.1").port
    else:
        from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
        from autobahn.websocket.compress import (
            PerMessageDeflateOffer, PerMessageDeflateOfferAccept,
        )

        rooms: Dict[bytes, Set[Any]] = {}

        class EchoOrChat(WebSocketServerProtocol):
            """/echo: send each message back. /chat: room, name, then broadcast."""

            def onConnect(self, request: Any) -> None:
                self.chat = request.path == "/chat"
                self.intro: List[bytes] = []
                self.room: Any = None

            def onMessage(self, payload: bytes, isBinary: bool) -> None:
                if not self.chat:
                    self.sendMessage(payload, isBinary)
                    return
                if self.room is None:
                    self.intro.append(payload)
                    if len(self.intro) == 2:
                        self.room = self.intro[0]
                        rooms.setdefault(self.room, set()).add(self)
                    return
                line = self.intro[1] + b": " + payload
                for peer in rooms[self.room]:
                    peer.sendMessage(line)

            def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
                if getattr(self, "room", None) is not None:
                    rooms[self.room].discard(self)

        def accept(offers: Any) -> Any:
            for offer in offers:
                if isinstance(offer, PerMessageDeflateOffer):
                    return PerMessageDeflateOfferAccept(offer)
            return None

        factory = WebSocketServerFactory()
        factory.protocol = EchoOrChat
        factory.setProtocolOptions(perMessageCompressionAccept=accept, failByDrop=False,
                                   maxMessagePayloadSize=1024 * 1024)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1").getHost().port
    _harness.print_port(port)
    reactor.run()


# -- the orchestrator ------------------------------------------------------------

def load(args: argparse.Namespace, server: _harness.Child, mode: str, seconds: float,
         settle: float) -> _harness.Run:
    """``ws_load.js`` in ``mode`` against ``server`` for ``settle`` + ``seconds`` s."""
    node, env = _loadgen.node_ws()
    clients = args.connections if mode == "echo" else args.room
    argv = node + [mode, f"ws://127.0.0.1:{server.port}/{mode}", str(clients),
                   str(args.window), str(seconds), str(settle)]
    out, window = _harness.run_load(argv, server.pid, "msgs_per_s=", env=env,
                                    timeout=seconds + settle + 90)
    got = _harness.result_fields(out, "msgs_per_s=")
    if got.get("mismatches") or got.get("errors"):
        raise RuntimeError("ws_load: %d wrong replies, %d errors" % (
            got.get("mismatches", 0), got.get("errors", 0)))
    return _harness.Run(got["msgs_per_s"], got["msgs"], window)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _harness.add_common_options(p, seconds=5.0)
    p.add_argument("--connections", type=int, default=50, help="echo connections")
    p.add_argument("--room", type=int, default=200, help="chat clients in the room")
    p.add_argument("--window", type=int, default=10,
                   help="messages (echo) or lines (chat) in flight per sender")
    p.add_argument("--role", choices=["server"], help=argparse.SUPPRESS)
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.role == "server":
        return run_server(args.variant)

    args = _harness.finish_options(args)
    _loadgen.node_ws()  # installed (or refused) before any server starts
    _harness.header("WebSocket", args)
    results = _harness.Results("websocket", args)
    figures = (("echo", f"echo: {args.connections} connections x {args.window} in flight",
                f"echo {args.connections}x{args.window}", "msgs/s", "msg"),
               ("chat", f"chat fan-out: one room of {args.room} clients, one publisher, "
                        f"{args.window} lines in flight", f"chat fan-out x{args.room}",
                "deliveries/s", "delivery"))
    servers: Dict[str, _harness.Child] = {}
    try:
        for v in VARIANTS:
            servers[v] = _harness.Child.server(args.python, __file__, "--role", "server",
                                               "--variant", v)
        for mode, title, name, unit, per in figures:
            print(title + " (node ws)", flush=True)
            if args.warmup > 0:
                for v in VARIANTS:
                    load(args, servers[v], mode, args.warmup, 0)
            outcomes = _harness.alternate(
                VARIANTS, args.runs,
                lambda v, mode=mode: load(args, servers[v], mode, args.seconds, 0.5),
                LABELS[mode], unit, per)
            _harness.print_outcomes(outcomes, LABELS[mode], unit, per)
            _harness.print_ratio("twisted_aleph", "bare Autobahn", outcomes["aleph"],
                                 outcomes["autobahn"],
                                 "(goal >= 1.0)" if mode == "echo" else "(goal >= 0.9)")
            results.compare(name, outcomes["aleph"], outcomes["autobahn"], unit, per)
    finally:
        for server in servers.values():
            server.stop()
    results.emit()


if __name__ == "__main__":
    _loadgen.run_main(main)
