"""WebSocket connections as duplex streams, on Autobahn (Aleph's ``websocket-connection``).

``websocket_connection(request)`` is called inside an HTTP handler: it checks
the upgrade request (a pure function, :func:`handshake_problem`), takes over
the request's TCP transport the way ``autobahn.twisted.resource.
WebSocketResource`` does, and fires with a :class:`SplicedStream`: put ``str``
to send a text frame, ``bytes`` for a binary one; take yields the same.
``websocket_client(url)`` is the client side of the same thing.

Backpressure both ways. Incoming: a message the stream cannot accept at once
pauses reading from the socket until it is taken (what is already read stays
queued in the stream, at most one socket read's worth). Outgoing: the sink is
drained by an :class:`Edge` that writes frames and, while the transport's write
buffer is full (it paused us as its producer), answers with a Deferred, so puts
wait. Cost per message: one Autobahn frame encode/decode and one stream offer,
no Deferred on the fast path; a message put to many server connections in a
row (a broadcast) is framed once for all of them.

Closing the stream sends a close frame once queued messages are written; the
peer closing, failing a ping, or vanishing closes it. ``stream.info`` holds
``close_code``, ``close_reason`` and ``was_clean`` afterwards. A server's
graceful shutdown sends every open WebSocket it accepted a close frame 1001,
going away (:func:`going_away`; the site keeps them in ``site.websockets``,
and the HTTP protocol a WebSocket took over points to it, ``aleph_websocket``).

A peer's bad input (a protocol error, invalid UTF-8, a message over the
maximum size, an invalid close code, a bad opening handshake, an unanswered
ping) closes that connection only, with the close code RFC 6455 names, and
is reported through a :class:`~twisted_aleph.peerlog.PeerLog`: counted,
logged at most once per peer per interval, short, no traceback. Autobahn's
own lines about such peers are demoted to debug.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Any, Callable, Dict, Hashable, Mapping, Optional, Tuple

from autobahn.exception import PayloadExceededError
from autobahn.twisted.websocket import (
    WebSocketClientFactory, WebSocketClientProtocol, WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.compress import (
    PerMessageDeflateOffer, PerMessageDeflateOfferAccept,
    PerMessageDeflateResponse, PerMessageDeflateResponseAccept,
)
from autobahn.websocket.protocol import PreparedMessage, WebSocketProtocol
from autobahn.websocket.util import parse_url
from twisted.internet import defer, endpoints, ssl
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper

from twisted_aleph.peerlog import PeerLog
from twisted_aleph.stream import SplicedStream, Stream
from twisted_aleph.stream.core import Edge, attach
from twisted_aleph.tls import TLSError, connection_creator, tls_error_in

log = Logger()

#: largest message (and frame) accepted; a bigger one closes that connection with 1009.
DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024
#: seconds between keep-alive pings, and how long to wait for the pong.
DEFAULT_PING_INTERVAL = 30.0
DEFAULT_PING_TIMEOUT = 10.0
#: incoming messages held before reading from the socket pauses.
DEFAULT_BUFFER_SIZE = 16

CLOSE_NORMAL = WebSocketProtocol.CLOSE_STATUS_CODE_NORMAL
CLOSE_MESSAGE_TOO_BIG = WebSocketProtocol.CLOSE_STATUS_CODE_MESSAGE_TOO_BIG
CLOSE_GOING_AWAY = WebSocketProtocol.CLOSE_STATUS_CODE_GOING_AWAY
CLOSE_PROTOCOL_ERROR = WebSocketProtocol.CLOSE_STATUS_CODE_PROTOCOL_ERROR
_OPEN = WebSocketProtocol.STATE_OPEN
_CLOSED = WebSocketProtocol.STATE_CLOSED


class NotAWebSocket(ValueError):
    """The HTTP request is not a valid WebSocket opening handshake."""


class WebSocketHandshakeError(ConnectionError):
    """The WebSocket opening handshake failed (client side, or a dropped peer)."""


# -- the handshake check: pure, no I/O ------------------------------------------

SUPPORTED_VERSIONS = ("13",)


def handshake_problem(method: bytes, headers: Mapping[str, str]) -> Optional[str]:
    """Why this request is not a WebSocket handshake (RFC 6455 4.2.1), or None.

    ``headers`` maps lower-case header names to values.
    """
    if method != b"GET":
        return "the method must be GET"
    if not headers.get("host"):
        return "missing Host header"
    if "websocket" not in _tokens(headers.get("upgrade", "")):
        return "missing 'Upgrade: websocket'"
    if "upgrade" not in _tokens(headers.get("connection", "")):
        return "missing 'Connection: Upgrade'"
    version = headers.get("sec-websocket-version", "").strip()
    if version not in SUPPORTED_VERSIONS:
        return f"unsupported Sec-WebSocket-Version {version!r} (expected 13)"
    key = headers.get("sec-websocket-key", "").strip()
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raw = b""
    if len(raw) != 16:
        return "Sec-WebSocket-Key must be 16 random bytes in base64"
    return None


def _tokens(value: str) -> Tuple[str, ...]:
    return tuple(t.strip().lower() for t in value.split(","))


def valid_close_code(code: int) -> bool:
    """Whether a peer may send ``code`` in a close frame (RFC 6455 7.4):
    the defined codes 1000-1003 and 1007-1013 (Autobahn's list), and 3000-4999
    for libraries and applications. Not 0-999, the reserved 1004, nor 1005,
    1006 and 1015 (which only report, never travel), 1014-2999 or 5000 and up."""
    return 3000 <= code <= 4999 or code in WebSocketProtocol.CLOSE_STATUS_CODES_ALLOWED


# -- logging: a peer's bad input goes to a PeerLog ------------------------------

#: what a close code our side sends on failing a connection says of the peer's input
_BAD_INPUT_KINDS = {
    WebSocketProtocol.CLOSE_STATUS_CODE_PROTOCOL_ERROR: "protocol error",
    WebSocketProtocol.CLOSE_STATUS_CODE_UNSUPPORTED_DATA: "unsupported data",
    WebSocketProtocol.CLOSE_STATUS_CODE_INVALID_PAYLOAD: "invalid UTF-8",
    WebSocketProtocol.CLOSE_STATUS_CODE_POLICY_VIOLATION: "policy violation",
    WebSocketProtocol.CLOSE_STATUS_CODE_MESSAGE_TOO_BIG: "message too big",
}


class _AutobahnLog:
    """The logger Autobahn uses inside our protocols.

    Autobahn logs each failed connection, unclean drop, bad handshake and
    stray pong at info or warning level, one line per event with no rate
    limit: a lever a hostile peer could pull on the log. Those lines are
    demoted to debug here; the protocol reports the same events through its
    :class:`PeerLog`. Errors and failures (a bug in code Autobahn calls) pass
    through unchanged, tracebacks included.
    """

    __slots__ = ("_log",)

    def __init__(self, autobahn_log: Any) -> None:
        self._log = autobahn_log

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)

    def info(self, *args: Any, **kwargs: Any) -> None:
        self._log.debug(*args, **kwargs)

    warn = info


# -- permessage-deflate's native memory -----------------------------------------

try:  # PyPy: tell its collector about memory it cannot see
    from __pypy__ import add_memory_pressure as _add_memory_pressure  # type: ignore[import-not-found]
except ImportError:
    _add_memory_pressure = None

#: zlib memory a permessage-deflate connection holds outside Python's heap:
#: a deflate stream (~262 KiB at zlib's default memLevel 8, window 32 KiB)
#: and an inflate stream (~7 KiB and a 32 KiB window).
DEFLATE_NATIVE_BYTES = 262 * 1024 + 39 * 1024


def _deflate_opened() -> None:
    """A connection negotiated permessage-deflate: on PyPy, tell the
    collector the zlib memory it will hold. PyPy sees only the small Python
    objects of a connection, so without this it rarely runs a major
    collection, the only one that frees zlib streams: 40,000 compressed
    connections held 4 GB. (CPython frees them with their objects.)"""
    if _add_memory_pressure is not None:
        _add_memory_pressure(DEFLATE_NATIVE_BYTES)


def _end_deflate(deflate: Any) -> None:
    """Release a closed connection's permessage-deflate streams now:
    ``flush(Z_FINISH)`` frees the compressor's zlib memory on both
    interpreters, whoever still holds the Python objects. (zlib's Python
    binding has no way to end a decompressor early; it goes with its object.)"""
    compressor, deflate._compressor = getattr(deflate, "_compressor", None), None
    deflate._decompressor = None
    if compressor is not None:
        try:
            compressor.flush(zlib.Z_FINISH)
        except zlib.error:
            pass  # ended already: nothing to free


# -- frames <-> stream --------------------------------------------------------


class _OutgoingStream(Stream):
    """The sink half: refuses anything but text (str) or binary (bytes) at once."""

    __slots__ = ("protocol",)

    def __init__(self, protocol: Any) -> None:
        super().__init__(0, "websocket out")
        self.protocol = protocol

    def offer(self, msg: Any) -> Any:
        if not isinstance(msg, (str, bytes, bytearray, memoryview)):
            raise TypeError(
                f"a WebSocket message is str or bytes, not {type(msg).__name__}")
        return Stream.offer(self, msg)


class _FrameWriter(Edge):
    """Drains the outgoing stream into frames; waits while the transport is full.

    A server's frames are neither masked nor, without permessage-deflate,
    compressed: the same message makes the same bytes on every connection. So
    on such connections a ``str``/``bytes`` message sent again right after
    (a bus broadcasting one line to a room) is framed once, through Autobahn's
    own PreparedMessage, and that frame written to the next connections.
    """

    __slots__ = ("protocol", "shares_frames")

    def __init__(self, protocol: "_StreamBridge") -> None:
        super().__init__(None, False, "websocket writer")
        self.protocol = protocol
        p: Any = protocol
        self.shares_frames = bool(
            p.factory.isServer and not p.maskServerFrames and p._perMessageCompress is None
            and not p.autoFragmentSize)

    def deliver(self, msg: Any) -> Any:
        p = self.protocol
        if p.state != _OPEN:
            # The connection is gone or closing: let the stream drain so no put hangs.
            p.dropped_messages += 1
            return True
        last = _last_sent
        if msg is last[0] and self.shares_frames:
            size, frame = last[1], last[2]
            if frame is None:
                size, frame = last[1], last[2] = _frame(msg)
            if 0 < p.maxMessagePayloadSize < size:
                p.message_too_big_to_send(size)
                return True
            p.sendPreparedMessage(frame)
        else:
            kind = type(msg)
            if kind is str or kind is bytes:
                last[0], last[2] = msg, None  # framed if it is sent again
            if isinstance(msg, str):
                payload, binary = msg.encode("utf-8"), False
            else:
                payload, binary = bytes(msg), True
            try:
                p.sendMessage(payload, binary)
            except PayloadExceededError:
                p.message_too_big_to_send(len(payload))
                return True
        if p.write_paused:
            return p.wait_writable()
        return True

    def source_drained(self) -> None:
        """The user closed the stream and everything queued is written."""
        p = self.protocol
        if p.state == _OPEN:
            p.sendClose(CLOSE_NORMAL)


# The last str/bytes message sent (on any connection) and, once it is sent
# again, its payload size and frame. Keeps that one message alive until the
# next is sent.
_last_sent: list = [None, 0, None]


def _frame(msg: "str | bytes") -> Tuple[int, PreparedMessage]:
    """(payload size, unmasked uncompressed frame) of ``msg``."""
    binary = not isinstance(msg, str)
    payload = msg.encode("utf-8") if isinstance(msg, str) else msg
    return len(payload), PreparedMessage(payload, binary, False, True)


def _network_reader(transport: Any) -> Any:
    """What to pause to stop reading: the transport, or under TLS the TCP below it."""
    while not hasattr(transport, "pauseProducing") and hasattr(transport, "transport"):
        transport = transport.transport
    return transport


_LEFTOVER_TIMERS = ("closeHandshakeTimeoutCall", "serverConnectionDropTimeoutCall",
                    "openHandshakeTimeoutCall")


class _StreamBridge:
    """Mixed into Autobahn's protocols: WebSocket messages <-> a duplex Stream.

    ``opened`` fires with the stream once the handshake is done, or fails with
    :class:`WebSocketHandshakeError` if the connection ends first; it is None
    once fired (take it before: ``_take_over`` and ``websocket_client`` do).

    Memory: a closed connection is freed by reference counting alone, not
    left to CPython's cyclic collector (which a tuned server runs rarely, so
    40,000 closed connections would pile up). The stream points at this
    protocol (``websocket_close`` needs it), so this protocol must not point
    back at the stream once closed: ``opened`` does not keep the stream it
    fired with, and :meth:`_forget` drops the rest when the connection is lost.
    """

    factory: Any
    transport: Any
    state: int
    failedByMe: bool

    def connectionMade(self) -> None:
        self.opened: Optional[Deferred] = Deferred()
        self.info: Dict[str, Any] = {}
        self.stream: Optional[SplicedStream] = None
        self._incoming = Stream(self.factory.aleph_buffer_size, "websocket in")
        self._outgoing = _OutgoingStream(self)
        self.ended: Deferred = Deferred()  # fires with self.info once the connection is gone
        self.write_paused = False
        self._writable: Optional[Deferred] = None
        self._waiting_puts = 0
        self._reading_paused = False
        self._reader = _network_reader(self.transport)
        self._lost = False
        self.dropped_messages = 0
        self.http_protocol: Any = getattr(self, "http_protocol", None)
        peer = self.transport.getPeer()
        self.info["remote_addr"] = getattr(peer, "host", None)
        # We are the transport's producer: it tells us when its buffer is full.
        self.transport.registerProducer(self, True)
        super().connectionMade()  # type: ignore[misc]

    def connectionLost(self, reason: Any) -> None:
        self.lost_reason = reason  # onClose (called from here) reports it
        super().connectionLost(reason)  # type: ignore[misc]
        # Autobahn leaves its close-handshake timers running after the
        # connection is gone; they would only find it closed. Cancel them.
        for name in _LEFTOVER_TIMERS:
            call = getattr(self, name, None)
            if call is not None:
                call.cancel()
                setattr(self, name, None)
        http_protocol, self.http_protocol = self.http_protocol, None
        if http_protocol is not None:
            # Let twisted.web (and the Server tracking this connection) clean up.
            try:
                http_protocol.connectionLost(reason)
            except Exception:
                log.failure("error telling the HTTP channel its connection is gone")

        registry = getattr(self, "aleph_registry", None)
        if registry is not None:
            registry.discard(self)
        self._forget()

    def _forget(self) -> None:
        """Break the reference cycles a closed connection would otherwise sit
        in until the cyclic collector runs: this protocol -> its stream (and
        the stream's writer edge) -> this protocol; Autobahn's ``is_closed``,
        which fires with the protocol itself; the reason of the loss, whose
        traceback (if any) holds frames that hold the protocol."""
        self.stream = None
        self._incoming = self._outgoing = None  # type: ignore[assignment]
        self.is_closed = self.is_open = defer.succeed(None)
        self.lost_reason = None
        deflate = getattr(self, "_perMessageCompress", None)
        if deflate is not None:
            _end_deflate(deflate)

    # Autobahn callbacks ------------------------------------------------------

    def onOpen(self) -> None:
        extensions = getattr(self, "websocket_extensions_in_use", None) or []
        self.info["extensions"] = [e.EXTENSION_NAME for e in extensions]
        if getattr(self, "_perMessageCompress", None) is not None:
            _deflate_opened()
        self.stream = SplicedStream(self._outgoing, self._incoming, self.info)
        attach(self._outgoing, _FrameWriter(self))
        opened, self.opened = self.opened, None
        if opened is not None:
            opened.callback(self.stream)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        msg: Any = payload if isBinary else payload.decode("utf-8")
        r = self._incoming.offer(msg)
        if r is True:
            return
        if r is False:
            self.dropped_messages += 1
            return
        # Not taken yet: stop reading until the stream has accepted it.
        self._waiting_puts += 1
        if not self._reading_paused:
            self._reading_paused = True
            self._reader.pauseProducing()
        r.addBoth(self._accepted)

    def _accepted(self, _: Any) -> None:
        self._waiting_puts -= 1
        if self._waiting_puts == 0 and self._reading_paused:
            self._reading_paused = False
            if not self._lost:
                self._reader.resumeProducing()

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        self._lost = True
        self.info["was_clean"] = wasClean
        self.info["close_code"] = code
        self.info["close_reason"] = reason
        self.info["local_close_code"] = getattr(self, "localCloseCode", None)
        self.ended.callback(self.info)
        opened, self.opened = self.opened, None
        if opened is not None:
            lost = getattr(self, "lost_reason", None)
            if lost is not None and tls_error_in(lost) is not None:
                opened.errback(lost)  # the TLS handshake failed: say so
                return
            why = getattr(self, "wasNotCleanReason", None) or reason
            opened.errback(WebSocketHandshakeError(
                why or "connection closed during the WebSocket handshake"))
            return
        # Sink first: whoever is woken by the source draining sees a closed stream.
        self._outgoing.close()
        self._fire_writable()
        self._incoming.close()
        if self.dropped_messages:
            log.debug("websocket to {peer} closed with {n} unsent messages dropped",
                      peer=self.info.get("remote_addr"), n=self.dropped_messages)

    # IPushProducer: the transport pauses us when its write buffer is full ----

    def pauseProducing(self) -> None:
        self.write_paused = True

    def resumeProducing(self) -> None:
        self.write_paused = False
        self._fire_writable()

    def stopProducing(self) -> None:
        """The transport is going away; connectionLost/onClose follows."""

    def wait_writable(self) -> Deferred:
        if self._writable is None:
            self._writable = Deferred()
        return self._writable

    def _fire_writable(self) -> None:
        d, self._writable = self._writable, None
        if d is not None:
            d.callback(True)

    def message_too_big_to_send(self, size: int) -> None:
        """A put over max_message_size: refuse it loudly by closing with 1009.
        (The application's mistake, not the peer's: logged here, not counted.)"""
        log.warn("closing websocket to {peer}: outgoing message of {size} bytes "
                 "is over the maximum message size",
                 peer=self.info.get("remote_addr"), size=size)
        super()._fail_connection(CLOSE_MESSAGE_TOO_BIG, "message too big to send")  # type: ignore[misc]

    # The peer's bad input: answered as RFC 6455 says, reported to the PeerLog --

    #: where this connection reports its peer's bad input (else the factory's)
    aleph_peer_log: Optional[PeerLog] = None

    def bad_input(self, kind: str, detail: Any) -> None:
        """Report the peer's bad input of ``kind`` (counted, rate-limited)."""
        peer_log = self.aleph_peer_log or self.factory.aleph_peer_log
        peer_log.bad_input(self.info.get("remote_addr"), kind, detail)

    def _fail_connection(self, code: int = CLOSE_GOING_AWAY, reason: str = "going away") -> None:
        """Autobahn's way to close on a protocol error, invalid UTF-8, a
        message over the limit...: report the peer's fault (the first one:
        Autobahn may trip over the rest of a bad frame again), then close."""
        kind = _BAD_INPUT_KINDS.get(code)
        if kind is not None and self.state != _CLOSED and not self.failedByMe:
            self.bad_input(kind, reason)
        super()._fail_connection(code, reason)  # type: ignore[misc]

    def onCloseFrame(self, code: Optional[int], reasonRaw: Optional[bytes]) -> Any:
        """A close frame with a code no peer may send (RFC 6455 7.4) is a
        protocol error: answer close 1002 and hang up once it is written.
        (Autobahn sends 1002 too, but then takes the peer's close as the
        reply to its own and aborts the TCP connection: the 1002 never
        leaves, the peer sees a reset.)"""
        if code is not None and not valid_close_code(code):
            self._fail_connection(CLOSE_PROTOCOL_ERROR, f"invalid close code {code}")
            self.wasClean = False
            self.wasNotCleanReason = f"the peer sent the invalid close code {code}"
            self.dropConnection(abort=False)  # type: ignore[attr-defined]
            return True  # read nothing more
        return super().onCloseFrame(code, reasonRaw)  # type: ignore[misc]

    def onAutoPingTimeout(self) -> None:
        self.bad_input("ping timeout", "no pong in time: dropping the connection")
        super().onAutoPingTimeout()  # type: ignore[misc]

    def onCloseHandshakeTimeout(self) -> None:
        if self.state != _CLOSED:
            self.bad_input("close timeout", "no answer to our close frame in time")
        super().onCloseHandshakeTimeout()  # type: ignore[misc]


class _ServerProtocol(_StreamBridge, WebSocketServerProtocol):
    log = _AutobahnLog(WebSocketServerProtocol.log)
    #: extra headers for the 101 answer: the site's ``response_headers``
    aleph_headers: Optional[Dict[str, str]] = None

    def failHandshake(self, reason: str, code: int = 400, responseHeaders: Any = None) -> None:
        self.bad_input("bad handshake", reason)
        super().failHandshake(reason, code, responseHeaders)

    def onConnect(self, request: Any) -> Any:
        self.info["headers"] = dict(request.headers)
        self.info["uri"] = request.path
        if self.aleph_headers:
            return None, self.aleph_headers
        return None


class _ClientProtocol(_StreamBridge, WebSocketClientProtocol):
    log = _AutobahnLog(WebSocketClientProtocol.log)

    def failHandshake(self, reason: str) -> None:
        self.bad_input("bad handshake", reason)
        super().failHandshake(reason)

    def onConnect(self, response: Any) -> None:
        self.info["headers"] = dict(response.headers)
        return None


def websocket_close(conn: SplicedStream, code: int = CLOSE_NORMAL,
                    reason: Optional[str] = None) -> Deferred:
    """Close ``conn`` with a close code (1000 or 3000-4999) and reason.

    Unlike ``conn.close()`` it does not wait for queued messages. Deferred
    firing with ``conn.info`` once the connection has ended.
    """
    protocol = conn.sink.protocol
    if protocol.state == _OPEN:
        protocol.sendClose(code, reason)
    return closed(conn)


def going_away(protocol: Any, reason: str = "server shutting down") -> None:
    """Tell a server-side connection's peer that this server is going away
    (close frame 1001), as a graceful shutdown does; a connection still in
    its opening handshake is dropped. The connection ends once the peer
    answers the close (Autobahn drops it itself if the peer never does)."""
    state = protocol.state
    if state == _OPEN:
        # sendClose only lets applications use 1000 and 3000-4999; 1001 is
        # the server's own to send, so go one level down (same frame).
        protocol.sendCloseFrame(code=CLOSE_GOING_AWAY,
                                reasonUtf8=reason.encode("utf-8")[:123], isReply=False)
    elif state == WebSocketProtocol.STATE_CONNECTING:
        protocol.dropConnection(abort=False)


def closed(conn: SplicedStream) -> Deferred:
    """Deferred[info dict] firing once the connection under ``conn`` has ended."""
    d: Deferred = Deferred()
    conn.sink.protocol.ended.addBoth(lambda info: (d.callback(info), info)[1])
    return d


# -- factories ------------------------------------------------------------------


def _accept_deflate_offer(offers: Any) -> Any:
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


def _accept_deflate_response(response: Any) -> Any:
    if isinstance(response, PerMessageDeflateResponse):
        return PerMessageDeflateResponseAccept(response)
    return None


def _configure(factory: Any, server: bool, max_message_size: int,
               ping_interval: Optional[float], ping_timeout: Optional[float],
               compression: bool, buffer_size: int, clock: Any) -> None:
    options: Dict[str, Any] = dict(
        maxMessagePayloadSize=max_message_size,
        maxFramePayloadSize=max_message_size,
        autoPingInterval=ping_interval or 0,
        autoPingTimeout=(ping_timeout or 0) if ping_interval else 0,
        # Fail with a close frame carrying the code (1007, 1009...), not a bare drop.
        failByDrop=False,
    )
    if compression:
        if server:
            options["perMessageCompressionAccept"] = _accept_deflate_offer
        else:
            options["perMessageCompressionOffers"] = [PerMessageDeflateOffer()]
            options["perMessageCompressionAccept"] = _accept_deflate_response
    factory.setProtocolOptions(**options)
    factory.aleph_buffer_size = buffer_size
    # Where connections report their peers' bad input unless told otherwise.
    factory.aleph_peer_log = PeerLog("websocket" if server else "websocket client",
                                     clock=clock)
    if clock is not None:
        # Autobahn's timers (ping, close handshake) run on txaio's loop; tests pass a Clock.
        factory._batched_timer = _ClockTimer(clock)


class _ClockTimer:
    """Autobahn's timer interface (``call_later`` -> cancellable) on a given clock."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any,
                   **kwargs: Any) -> "_ClockCall":
        return _ClockCall(self.clock.callLater(delay, fn, *args, **kwargs))


class _ClockCall:
    __slots__ = ("call",)

    def __init__(self, call: Any) -> None:
        self.call = call

    def cancel(self) -> None:
        if self.call.active():
            self.call.cancel()


_server_factories: Dict[Hashable, WebSocketServerFactory] = {}


def _server_factory(key: Tuple[Any, ...]) -> WebSocketServerFactory:
    """One Autobahn factory per distinct set of options, built on first use."""
    factory = _server_factories.get(key)
    if factory is None:
        if len(_server_factories) >= 32:  # options vary only in tests; stay bounded
            _server_factories.clear()
        factory = WebSocketServerFactory(server=None)  # no "Server: Autobahn/x.y" header
        factory.protocol = _ServerProtocol
        _configure(factory, True, *key)
        _server_factories[key] = factory
    return factory


# -- server ---------------------------------------------------------------------


def websocket_connection(request: Any, *,
                         max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
                         ping_interval: Optional[float] = DEFAULT_PING_INTERVAL,
                         ping_timeout: Optional[float] = DEFAULT_PING_TIMEOUT,
                         compression: bool = True,
                         buffer_size: int = DEFAULT_BUFFER_SIZE,
                         clock: Any = None,
                         peer_log: Optional[PeerLog] = None) -> Deferred:
    """Upgrade a twisted.web ``request`` to a WebSocket: Deferred[SplicedStream].

    Fails with :class:`NotAWebSocket` (and touches nothing) when the request is
    not a valid handshake, so the handler can answer 400. On success it sets
    ``request.aleph_upgraded = True``: the HTTP server then writes no response.

    ``peer_log``: where the peer's bad input is counted and logged (see
    :mod:`twisted_aleph.peerlog`); default, the site's ``peer_log`` if it has
    one, else one shared by the connections upgraded with the same options.
    """
    headers = {k.decode("latin-1").lower(): b",".join(v).decode("latin-1")
               for k, v in request.requestHeaders.getAllRawHeaders()}
    problem = handshake_problem(request.method, headers)
    channel = getattr(request, "channel", None)
    if problem is None and (channel is None or channel.transport is None):
        problem = "WebSocket needs an HTTP/1.1 connection"
    if problem is not None:
        return defer.fail(NotAWebSocket(problem))
    factory = _server_factory((max_message_size, ping_interval, ping_timeout,
                               compression, buffer_size, clock))
    if peer_log is None:
        peer_log = getattr(getattr(request, "site", None), "peer_log", None)
    return _take_over(request, factory, peer_log)


def _take_over(request: Any, factory: WebSocketServerFactory,
               peer_log: Optional[PeerLog] = None) -> Deferred:
    """Move the request's connection from twisted.web to an Autobahn protocol;
    the protocol's ``opened`` Deferred."""
    channel = request.channel
    transport, channel.transport = channel.transport, None
    protocol = factory.buildProtocol(transport.getPeer())
    if peer_log is not None:
        protocol.aleph_peer_log = peer_log
    if isinstance(transport, ProtocolWrapper):  # TLS
        protocol.http_protocol = transport.wrappedProtocol
        transport.wrappedProtocol = protocol
    elif isinstance(getattr(transport, "protocol", None), ProtocolWrapper):
        protocol.http_protocol = transport.protocol.wrappedProtocol
        transport.protocol.wrappedProtocol = protocol
    else:
        protocol.http_protocol = transport.protocol
        transport.protocol = protocol
    # How the server ends this connection gracefully from now on: close 1001
    # (its connection tracker holds the HTTP protocol, see http.server).
    protocol.http_protocol.aleph_websocket = protocol
    # The HTTP channel was the transport's producer; from now on the WebSocket is.
    transport.unregisterProducer()
    request.aleph_upgraded = True
    # The site's registry of open WebSockets, for a graceful shutdown's 1001,
    # and the headers it puts on every response (x-aleph-worker...).
    site = getattr(request, "site", None)
    registry = getattr(site, "websockets", None)
    if registry is not None:
        protocol.aleph_registry = registry
        registry.add(protocol)
    site_headers = getattr(site, "response_headers", None)
    if site_headers:
        protocol.aleph_headers = {k.decode("latin-1"): v.decode("latin-1")
                                  for k, v in site_headers}
    protocol.makeConnection(transport)
    opened = protocol.opened
    assert opened is not None  # made by connectionMade, fired by the handshake below
    # twisted.web may have paused reading while it handled the request; resume it.
    reader = _network_reader(transport)
    if hasattr(reader, "resumeProducing"):
        reader.resumeProducing()
    # Replay the handshake Autobahn needs, then anything the client sent after
    # it (frames may follow the request's headers in the same packet), which
    # twisted.web holds in one of two places: bytes read while the handler
    # ran are queued as a pipelined request would be (``_dataBuffer``); the
    # rest of the read that carried the headers is still in the channel's
    # line buffer when the handler upgrades at once, inside that read.
    head = [request.method + b" " + request.uri + b" HTTP/1.1\r\n"]
    for name, values in request.requestHeaders.getAllRawHeaders():
        head.append(name + b": " + b",".join(values) + b"\r\n")
    head.append(b"\r\n")
    early = list(getattr(channel, "_dataBuffer", None) or [])
    channel._dataBuffer = []
    clear_line_buffer = getattr(channel, "clearLineBuffer", None)
    if clear_line_buffer is not None:
        early.append(clear_line_buffer())
    protocol.dataReceived(b"".join(head + early))
    return opened


# -- client ---------------------------------------------------------------------


def _opened(protocol: _ClientProtocol) -> Deferred:
    """The handshake's Deferred of a protocol just connected."""
    opened = protocol.opened
    if opened is None:  # cannot happen: connected means not yet opened or lost
        return defer.fail(WebSocketHandshakeError("connection ended before it opened"))
    return opened


def websocket_client(url: str, *, headers: Optional[Mapping[str, str]] = None,
                     max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
                     ping_interval: Optional[float] = DEFAULT_PING_INTERVAL,
                     ping_timeout: Optional[float] = DEFAULT_PING_TIMEOUT,
                     compression: bool = True,
                     buffer_size: int = DEFAULT_BUFFER_SIZE,
                     tls: Any = None, reactor: Any = None,
                     clock: Any = None) -> Deferred:
    """Connect to a ``ws://`` or ``wss://`` URL: Deferred[SplicedStream].

    Fails with :class:`WebSocketHandshakeError` when the server refuses the
    upgrade, or with the connection error. ``tls`` is for ``wss://``: a
    ``twisted_aleph.tls.client_context(...)`` or any client TLS creator
    (default: verify the host against the platform's trust store).
    """
    if reactor is None:
        from twisted.internet import reactor  # type: ignore[no-redef]
    try:
        is_secure, host, port = parse_url(url)[:3]
    except ValueError as e:
        return defer.fail(e)
    factory = WebSocketClientFactory(url, headers=dict(headers or {}), reactor=reactor)
    factory.protocol = _ClientProtocol
    _configure(factory, False, max_message_size, ping_interval, ping_timeout,
               compression, buffer_size, clock)
    endpoint: Any = endpoints.HostnameEndpoint(reactor, host, port)
    if not is_secure:
        return endpoint.connect(factory).addCallback(_opened)
    creator = ssl.optionsForClientTLS(host) if tls is None else connection_creator(tls, host)
    endpoint = endpoints.wrapClientTLS(creator, endpoint)

    def name_tls(failure: Failure) -> Any:
        """A refused handshake or bad certificate fails as tls.TLSError."""
        reason = tls_error_in(failure)
        if reason is None:
            return failure
        raise TLSError(f"wss://{host}:{port}", reason) from failure.value
    d = endpoint.connect(factory).addCallback(_opened)
    return d.addErrback(name_tls)


__all__ = [
    "websocket_connection", "websocket_client", "websocket_close", "closed", "going_away",
    "CLOSE_GOING_AWAY", "CLOSE_PROTOCOL_ERROR",
    "handshake_problem", "valid_close_code",
    "NotAWebSocket", "WebSocketHandshakeError", "DEFAULT_MAX_MESSAGE_SIZE",
]
