"""UDP sockets as duplex streams (Aleph's ``aleph.udp``) on ``DatagramProtocol``.

``socket(port)`` fires with a :class:`DatagramSocket`: take from it to receive
``{"host", "port", "message"}`` dicts (``message`` is ``bytes``), put such a
dict to send one datagram. Closing either half closes the port. The address
actually bound is ``sock.port`` / ``sock.host`` (also in ``sock.info``).

UDP has no flow control, so receiving cannot push back on the sender. The
source stream buffers up to ``buffer_size`` datagrams (plus one waiting put);
while it is full, further datagrams are dropped and counted in
:attr:`DatagramSocket.dropped` (with a rate-limited log line). Memory is thus
bounded by ``buffer_size`` messages, never by the peer's send rate.

Datagrams of any size (up to 64 KiB) arrive whole: each is read into one
reused buffer and copied out (:class:`BufferReusingPort`), instead of Twisted's
fresh ``maxPacketSize`` allocation per datagram.

Sending never waits: a put writes the datagram at once (name resolution
aside: a ``host`` that is not an IP address is resolved through the reactor
first, so pass addresses on hot paths). A put fails its own Deferred, and
nothing else, for an oversized message (:class:`MessageTooLong`), a malformed
dict, or a socket error.
"""

from __future__ import annotations

import errno
import socket as _socket
from typing import Any, Callable, List, Tuple

from twisted.internet import defer
from twisted.internet import udp as twisted_udp
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.posixbase import PosixReactorBase
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python import log as legacy_log
from twisted.python.failure import Failure

from twisted_aleph.peerlog import LogThrottle
from twisted_aleph.stream import SplicedStream, Stream
from twisted_aleph.stream.core import Closeable

log = Logger()

#: the largest UDP payload over IPv4 (65,535 - 8 UDP header - 20 IP header).
MAX_DATAGRAM = 65507
#: datagrams buffered for a slow reader before new ones are dropped.
DEFAULT_BUFFER_SIZE = 1024
#: receive buffer: the largest datagram (IPv4 or IPv6) arrives whole.
MAX_RECEIVE = 65536
_READ_AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)


class MessageTooLong(ValueError):
    """A datagram payload over :data:`MAX_DATAGRAM` bytes."""


def to_datagram(message: Any) -> bytes:
    """The payload bytes of ``message``; str is UTF-8, other types go through
    ``bytestreams.to_bytes``. Raises :class:`MessageTooLong` past 65,507."""
    if isinstance(message, bytes):
        data = message
    elif isinstance(message, str):
        data = message.encode("utf-8")
    elif isinstance(message, (bytearray, memoryview)):
        data = bytes(message)
    else:
        from twisted_aleph.bytestreams import to_bytes
        coerced = to_bytes(message)
        if not isinstance(coerced, bytes):
            raise TypeError(f"cannot send a {type(message).__name__} as a datagram")
        data = coerced
    if len(data) > MAX_DATAGRAM:
        raise MessageTooLong(
            f"datagram of {len(data)} bytes exceeds the UDP maximum of {MAX_DATAGRAM}")
    return data


def _unpack(msg: Any) -> Tuple[bytes, str, int]:
    try:
        host, port, message = msg["host"], msg["port"], msg["message"]
    except (KeyError, TypeError):
        raise ValueError("a datagram to send is a dict with 'host', 'port'"
                         f" and 'message', not {type(msg).__name__}") from None
    if (not isinstance(host, str) or not isinstance(port, int) or isinstance(port, bool)
            or not 0 < port < 65536):
        raise ValueError(f"bad destination {host!r}:{port!r}")
    return to_datagram(message), host, port


class BufferReusingPort(twisted_udp.Port):
    """Twisted's UDP port, reading every datagram into one preallocated
    buffer (``recvfrom_into``) and copying out only the bytes received.

    ``udp.Port`` calls ``recvfrom(maxPacketSize)``, which allocates
    ``maxPacketSize`` bytes per datagram: with the 64 KiB needed to receive
    any datagram whole, that churn makes PyPy's GC pause often enough to
    drop datagrams at a few tens of thousands per second. Reading into one
    buffer costs a copy of the datagram only. Same error handling as
    ``udp.Port.doRead``.
    """

    _read_buffer: Any = None

    def doRead(self) -> None:
        view = self._read_buffer
        if view is None:
            view = self._read_buffer = memoryview(bytearray(self.maxPacketSize))
        recvfrom_into = self.socket.recvfrom_into
        datagram_received = self.protocol.datagramReceived
        ipv6 = self.addressFamily == _socket.AF_INET6
        read = 0
        while read < self.maxThroughput:
            try:
                n, addr = recvfrom_into(view)
            except OSError as e:
                if e.args[0] in _READ_AGAIN:
                    return
                if e.args[0] == errno.ECONNREFUSED:
                    if self._connectedAddr:
                        self.protocol.connectionRefused()
                    return
                raise
            read += n
            if ipv6:
                addr = addr[:2]
            try:
                datagram_received(view[:n].tobytes(), addr)
            except BaseException:
                legacy_log.err()


def listen(reactor: Any, port: int, protocol: DatagramProtocol,
           interface: str = "") -> Any:
    """Bind ``protocol`` to UDP ``port``, receiving datagrams of any size.

    On posix reactors (Linux, macOS) the port is a :class:`BufferReusingPort`;
    elsewhere, ``reactor.listenUDP`` with a 64 KiB ``maxPacketSize``. Raises
    ``CannotListenError``.
    """
    if isinstance(reactor, PosixReactorBase):
        listening_port = BufferReusingPort(port, protocol, interface, MAX_RECEIVE, reactor)
        listening_port.startListening()
        return listening_port
    return reactor.listenUDP(port, protocol, interface=interface, maxPacketSize=MAX_RECEIVE)


class DatagramStreamProtocol(DatagramProtocol):
    """Offers each received datagram to ``source``; drops while it is full."""

    noisy = False  # no "starting/stopping protocol" log line per socket

    def __init__(self, source: Stream, clock: Any) -> None:
        self.source = source
        self.clock = clock
        self.dropped = 0
        self._waiting = False
        self._throttle = LogThrottle()
        self._offer = source.offer

    def datagramReceived(self, data: bytes, addr: Tuple[str, int]) -> None:
        if self._waiting:
            self.dropped += 1
            self.overflowed()
            return
        r = self._offer({"host": addr[0], "port": addr[1], "message": data})
        if r is True or r is False:
            return
        self._waiting = True
        r.addBoth(self._accepted)

    def _accepted(self, _: Any) -> None:
        self._waiting = False

    def overflowed(self) -> None:
        """A datagram was dropped because the stream is full; log (throttled)."""
        ok, suppressed = self._throttle.allow(self.clock.seconds())
        if ok:
            log.warn("UDP port {port}: reader too slow, dropping datagrams"
                     " ({dropped} dropped so far)",
                     port=self.transport.getHost().port if self.transport else None,
                     dropped=self.dropped)


class DatagramSink(Closeable):
    """The sending half: each put writes one datagram immediately.

    It never applies backpressure (UDP has none): ``offer`` answers True,
    False once closed, or a Deferred for a put that failed or awaits name
    resolution.
    """

    __slots__ = ("_transport", "_resolve", "__weakref__")

    def __init__(self, transport: Any, resolve: Callable[[str], Deferred]) -> None:
        self._transport = transport
        self._resolve = resolve
        self._closed = False
        self._on_closed: List[Callable[[], Any]] = []

    def offer(self, msg: Any) -> Any:
        """Send ``msg`` now: True, False once closed, or a Deferred (failed, or awaiting name resolution)."""
        if self._closed:
            return False
        try:
            data, host, port = _unpack(msg)
        except Exception:
            return defer.fail()
        if not (isIPAddress(host) or isIPv6Address(host)):
            d = self._resolve(host)
            return d.addCallback(lambda ip: self._write(data, (ip, port)))
        try:
            self._write(data, (host, port))
        except Exception:
            return defer.fail()
        return True

    def _write(self, data: bytes, addr: Tuple[str, int]) -> bool:
        if self._closed:
            return False
        self._transport.write(data, addr)
        return True

    def put(self, msg: Any) -> Deferred:
        """Send ``{"host", "port", "message"}``; Deferred[bool] (False: closed)."""
        r = self.offer(msg)
        if r is True or r is False:
            return defer.succeed(r)
        return r

    def try_put(self, msg: Any, timeout: float = 0, value: Any = False,
                clock: Any = None) -> Deferred:
        """Same as put: a send never waits for room."""
        return self.put(msg)

    def close(self) -> None:
        """Close the sending half, and with it the port."""
        self._mark_closed()


class DatagramSocket(SplicedStream):
    """A bound UDP port as a duplex stream.

    ``port``/``host`` (also in ``info``) are the real address bound;
    ``dropped`` counts datagrams dropped while the reader lagged;
    ``when_closed()`` fires once the port is released.
    """

    __slots__ = ("protocol", "listening_port", "_released", "_waiters")

    def __init__(self, sink: DatagramSink, source: Stream,
                 protocol: DatagramStreamProtocol, listening_port: Any) -> None:
        address = listening_port.getHost()
        super().__init__(sink, source, {"host": address.host, "port": address.port})
        self.protocol = protocol
        self.listening_port = listening_port
        self._released = False
        self._waiters: List[Deferred] = []
        sink.on_closed(self._shutdown)
        source.on_closed(sink.close)

    def __repr__(self) -> str:
        state = "closed" if self.sink.is_closed else "open"
        return f"<DatagramSocket {self.host}:{self.port} {state} dropped={self.dropped}>"

    @property
    def port(self) -> int:
        """The UDP port actually bound."""
        return self.info["port"]

    @property
    def host(self) -> str:
        """The interface address bound."""
        return self.info["host"]

    @property
    def dropped(self) -> int:
        """Datagrams dropped because the reader lagged (see the module doc)."""
        return self.protocol.dropped

    def _shutdown(self) -> None:
        self.source.close()
        defer.maybeDeferred(self.listening_port.stopListening).addBoth(
            self._port_released)

    def _port_released(self, result: Any) -> None:
        if isinstance(result, Failure):
            log.failure("error closing UDP port {port}", result, port=self.port)
        self._released = True
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def when_closed(self) -> Deferred:
        """Deferred firing (None) once the port is closed; closes nothing itself."""
        if self._released:
            return defer.succeed(None)
        d: Deferred = Deferred()
        self._waiters.append(d)
        return d


def socket(port: int = 0, *, interface: str = "0.0.0.0", reactor: Any = None,
           buffer_size: int = DEFAULT_BUFFER_SIZE,
           broadcast: bool = False) -> Deferred:
    """Deferred[:class:`DatagramSocket`] bound to ``port`` (0: any free port).

    ``interface="::"`` binds IPv6. ``buffer_size`` bounds the datagrams kept
    for a slow reader (see the module doc); ``broadcast`` allows sending to
    broadcast addresses. Fails (CannotListenError) if the port is taken.
    """
    if reactor is None:
        from twisted.internet import reactor  # type: ignore[no-redef]
    source = Stream(buffer_size, description=f"udp:{port}")
    protocol = DatagramStreamProtocol(source, reactor)
    try:
        listening_port = listen(reactor, port, protocol, interface)
    except Exception:
        return defer.fail()
    if broadcast:
        listening_port.setBroadcastAllowed(True)
    sink = DatagramSink(listening_port, reactor.resolve)
    return defer.succeed(DatagramSocket(sink, source, protocol, listening_port))


__all__ = [
    "socket", "DatagramSocket", "DatagramSink", "DatagramStreamProtocol",
    "MessageTooLong", "MAX_DATAGRAM", "LogThrottle", "to_datagram", "listen",
    "BufferReusingPort",
]
