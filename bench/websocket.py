"""WebSocket echo and chat fan-out: twisted_aleph against a bare Autobahn server.

Each server runs in its own process pinned to CPU 0 (``taskset -c 0``); a lean
raw-Twisted load generator (hand-built masked frames, replies counted by
size, no Autobahn on the client side) runs pinned to CPU 1.

* echo: ``--connections`` (50) connections each keeping ``--inflight`` (16)
  text messages in flight for ``--seconds``. ``aleph`` is the demo app's
  ``/echo`` (Klein route, ``websocket_connection`` takeover, the duplex stream
  connected to itself); ``autobahn`` is a ``WebSocketServerProtocol`` whose
  ``onMessage`` calls ``sendMessage``. Prints msgs/s for both and the ratio
  (goal >= 0.8), and the server's CPU microseconds per message over the
  measured window (steadier than msgs/s on a shared machine).
* chat fan-out: ``--room`` (200) clients in one room; one of them publishes
  with ``--inflight`` lines outstanding (counted on its own copies).
  ``aleph`` is the demo's ``/chat`` (EventBus, ``buffer(100)``, per-client
  backpressure); ``autobahn`` is a dict of rooms and a loop of
  ``sendMessage``. Prints deliveries per second (lines x receivers).

No compression (the load does not offer it) so framing, not zlib, is measured.
Figures are noisy on a shared 2-core machine; compare the ratios.

    python bench/websocket.py [--python PATH] [--seconds 10] [--warmup N] [--json]
"""

from __future__ import annotations

import argparse
import base64
import os
from typing import Any, Dict, List, Set, Tuple

import _harness

MESSAGE = b"hello websocket"
ROOM = b"bench room"
PUBLISHER = b"p"
LISTENER = b"l"


def client_frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked client text frame (payload < 126 bytes)."""
    mask = b"\x11\x22\x33\x44"
    return (bytes([0x80 | opcode, 0x80 | len(payload)]) + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def server_frame_len(payload: bytes) -> int:
    return 2 + len(payload)  # unmasked, short


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


# -- load (child process) ------------------------------------------------------------

def handshake(path: str, port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n").encode()


def run_load(mode: str, port: int, connections: int, inflight: int, seconds: float,
             warmup: float, server_pid: int) -> None:
    _harness.raise_fd_limit()
    from twisted.internet import reactor
    from twisted.internet.protocol import ClientFactory, Protocol

    counter = [0]
    request = client_frame(MESSAGE)
    line_len = server_frame_len(PUBLISHER + b": " + MESSAGE)
    echo_len = server_frame_len(MESSAGE)

    class Client(Protocol):
        """Handshake, then count fixed-size replies; the sender refills its window."""

        publisher = False

        def connectionMade(self) -> None:
            self.transport.setTcpNoDelay(True)
            self.upgraded = False
            self.head = b""
            self.buffered = 0
            path = "/echo" if mode == "echo" else "/chat"
            self.transport.write(handshake(path, port))

        def dataReceived(self, data: bytes) -> None:
            if not self.upgraded:
                self.head += data
                head, sep, rest = self.head.partition(b"\r\n\r\n")
                if not sep:
                    return
                if not head.startswith(b"HTTP/1.1 101"):
                    print(f"FAILED handshake: {head[:80]!r}", flush=True)
                    reactor.stop()
                    return
                self.upgraded = True
                self.on_open()
                data = rest
            size = echo_len if mode == "echo" else line_len
            n, self.buffered = divmod(self.buffered + len(data), size)
            if n:
                counter[0] += n
                if mode == "echo" or self.publisher:
                    self.transport.write(request * n)

        def on_open(self) -> None:
            if mode == "echo":
                self.transport.write(request * inflight)
            else:
                name = PUBLISHER if self.publisher else LISTENER
                self.transport.write(client_frame(ROOM) + client_frame(name))

    class Factory(ClientFactory):
        protocol = Client

    listeners = Factory()
    for _ in range(connections if mode == "echo" else connections - 1):
        reactor.connectTCP("127.0.0.1", port, listeners)

    if mode == "chat":
        class Publisher(Client):
            publisher = True

        def start_publishing() -> None:
            class PublisherFactory(ClientFactory):
                protocol = Publisher

                def buildProtocol(self, addr: Any) -> Any:
                    p = ClientFactory.buildProtocol(self, addr)
                    orig = p.on_open

                    def on_open() -> None:
                        orig()
                        reactor.callLater(0.5, p.transport.write, request * inflight)
                    p.on_open = on_open
                    return p
            reactor.connectTCP("127.0.0.1", port, PublisherFactory())
        reactor.callLater(0.5, start_publishing)  # listeners first
        warmup += 1.0

    _harness.report_rate_after(reactor, counter, warmup, seconds, server_pid)
    reactor.run()


# -- the orchestrator ------------------------------------------------------------

def measure(variant: str, mode: str, connections: int,
            args: argparse.Namespace) -> Tuple[float, float]:
    """(messages/s, server CPU microseconds per message) for one server."""
    with _harness.Child.server(args.python, __file__, "--role", "server",
                               "--variant", variant) as server:
        argv = _harness.script_argv(
            args.python, __file__, "--role", "load", "--mode", mode, "--port", server.port,
            "--connections", connections, "--inflight", args.inflight,
            "--seconds", args.seconds, "--warmup", args.warmup, "--server-pid", server.pid)
        out = _harness.run_pinned(_harness.LOAD_CPU, argv)
    return _harness.read_rate(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _harness.add_common_options(p, seconds=10.0)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--room", type=int, default=200, help="chat clients in the room")
    p.add_argument("--inflight", type=int, default=16)
    p.add_argument("--role", choices=["server", "load"], help=argparse.SUPPRESS)
    p.add_argument("--variant", choices=["aleph", "autobahn"], help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=["echo", "chat"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.role == "server":
        return run_server(args.variant)
    if args.role == "load":
        return run_load(args.mode, args.port, args.connections, args.inflight,
                        args.seconds, args.warmup, args.server_pid)

    args = _harness.finish_options(args)
    _harness.header("WebSocket", args)
    results = _harness.Results("websocket", args)
    print(f"echo: {args.connections} connections x {args.inflight} in flight")
    echo = {v: measure(v, "echo", args.connections, args) for v in ("aleph", "autobahn")}
    print(f"  twisted_aleph /echo (stream):  {echo['aleph'][0]:10.0f} msgs/s"
          f"  {echo['aleph'][1]:5.1f} server CPU us/msg")
    print(f"  bare Autobahn echo protocol:   {echo['autobahn'][0]:10.0f} msgs/s"
          f"  {echo['autobahn'][1]:5.1f} server CPU us/msg")
    print(f"  ratio aleph/autobahn:          {echo['aleph'][0] / echo['autobahn'][0]:10.2f}"
          "  (goal >= 0.8)")
    results.add(f"echo x{args.connections}", echo["aleph"][0], echo["autobahn"][0], "msgs/s")
    results.add(f"echo x{args.connections} server CPU", echo["aleph"][1], echo["autobahn"][1],
                "us/msg", better="lower")
    print(f"chat fan-out: one room of {args.room} clients, one publisher,"
          f" {args.inflight} lines in flight")
    chat = {v: measure(v, "chat", args.room, args) for v in ("aleph", "autobahn")}
    print(f"  twisted_aleph /chat (EventBus): {chat['aleph'][0]:10.0f} deliveries/s"
          f"  {chat['aleph'][1]:5.1f} server CPU us/delivery")
    print(f"  bare Autobahn broadcast:        {chat['autobahn'][0]:10.0f} deliveries/s"
          f"  {chat['autobahn'][1]:5.1f} server CPU us/delivery")
    print(f"  ratio aleph/autobahn:           {chat['aleph'][0] / chat['autobahn'][0]:10.2f}")
    results.add(f"chat fan-out x{args.room}", chat["aleph"][0], chat["autobahn"][0],
                "deliveries/s")
    results.emit()


if __name__ == "__main__":
    main()
