"""The seed's ``aleph.examples.websocket`` handlers: echo, chat rooms, and a chat page.

``add_routes(app, bus)`` mounts ``/echo``, ``/chat`` and ``/`` (a small chat
page, ``static/chat.html`` + ``chat.js``) on a Klein app served by
``twisted_aleph.http.start_server``. Handlers return Ring-style response maps;
after a WebSocket takeover whatever they return is ignored. The chat rooms are
an EventBus: the in-process one by default, a Redis one
(:class:`twisted_aleph.redisbus.RedisEventBus`) to span processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from twisted_aleph import stream as s
from twisted_aleph.bus import EventBus
from twisted_aleph.deferred import catch, chain
from twisted_aleph.http.websocket import NotAWebSocket, websocket_connection

log = Logger()

STATIC = Path(__file__).parent / "static"

NON_WEBSOCKET_REQUEST: Dict[str, Any] = {
    "status": 400,
    "headers": {"content-type": "application/text"},
    "body": "Expected a websocket request.",
}


def non_websocket_request(_: Any = None) -> Dict[str, Any]:
    """A fresh copy of the 400 answer to a request that is not a WebSocket handshake."""
    return {"status": 400, "headers": dict(NON_WEBSOCKET_REQUEST["headers"]),
            "body": NON_WEBSOCKET_REQUEST["body"]}


# The seed's first echo handler derefs the handshake (``@(http/websocket-connection
# req)``), blocking its thread until the upgrade is done. Here the handshake
# completes on the reactor thread itself, so blocking would wait forever: the two
# non-blocking variants below are the whole story.


def echo_handler_chain(request: Any) -> Deferred:
    """Echo every message back: ``connect`` the duplex stream to itself (``d/chain``)."""
    return catch(
        chain(websocket_connection(request),
              lambda socket: s.connect(socket, socket)),
        non_websocket_request, NotAWebSocket)


async def echo_handler(request: Any) -> Optional[Dict[str, Any]]:
    """The same, written as ``let-flow`` is in Python: ``async def`` + ``await``."""
    try:
        socket = await websocket_connection(request)
    except NotAWebSocket:
        return non_websocket_request()
    s.connect(socket, socket)
    return None


def make_chat_handler(chatrooms: EventBus) -> Any:
    """The seed's chat: first two messages are room and name, then each line is
    published to the room as ``"name: line"`` and every room message is sent back."""

    async def chat_handler(request: Any) -> Optional[Dict[str, Any]]:
        try:
            conn = await websocket_connection(request)
        except NotAWebSocket:
            return non_websocket_request()
        room = await conn.take()
        name = await conn.take()
        if room is None or name is None:
            # Gone before saying who and where: nothing was subscribed.
            conn.close()
            return None
        # Every message of the room goes to this client. upstream=True: when the
        # client goes, its subscription closes and the bus drops it.
        s.connect(chatrooms.subscribe(room), conn, upstream=True)
        # A Redis bus subscribes asynchronously: publish this client's lines
        # only once it is in the room, so it sees its own lines too.
        when_subscribed = getattr(chatrooms, "when_subscribed", None)
        if when_subscribed is not None:
            await when_subscribed(room)
        # Every line from the client goes to the room, prefixed with its name.
        published = s.consume(
            lambda msg: chatrooms.publish(room, msg),
            s.buffer(100, s.map(lambda msg: f"{name}: {msg}", conn)))
        published.addErrback(lambda f: log.failure("chat publish failed", f))
        return None

    return chat_handler


def _static_response(name: str, content_type: str) -> Dict[str, Any]:
    return {"status": 200,
            "headers": {"content-type": content_type, "cache-control": "no-cache"},
            "body": (STATIC / name).read_bytes()}


def chat_page(request: Any) -> Dict[str, Any]:
    """The chat page: join a room, see its messages, send lines."""
    return _static_response("chat.html", "text/html; charset=utf-8")


def chat_script(request: Any) -> Dict[str, Any]:
    return _static_response("chat.js", "application/javascript; charset=utf-8")


def add_routes(app: Klein, bus: Optional[EventBus] = None) -> EventBus:
    """Mount ``/echo``, ``/chat``, ``/`` and ``/chat.js`` on ``app``; returns the chat bus."""
    chatrooms = bus if bus is not None else EventBus()
    app.route("/echo", methods=["GET"], endpoint="aleph_websocket_echo")(echo_handler)
    app.route("/chat", methods=["GET"], endpoint="aleph_websocket_chat")(
        make_chat_handler(chatrooms))
    app.route("/", methods=["GET"], endpoint="aleph_chat_page")(chat_page)
    app.route("/chat.js", methods=["GET"], endpoint="aleph_chat_script")(chat_script)
    return chatrooms


__all__ = [
    "NON_WEBSOCKET_REQUEST", "non_websocket_request", "echo_handler",
    "echo_handler_chain", "make_chat_handler", "chat_page", "add_routes",
]
