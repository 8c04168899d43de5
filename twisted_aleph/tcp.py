"""TCP: every connection is a duplex stream (Aleph's ``aleph.tcp``).

``start_server(handler, port)`` calls ``handler(stream, info)`` for each
accepted connection; ``client(host, port)`` fires with the stream. Puts on the
stream are written to the socket; what the peer sends is taken from it.
``start_framed_server``/``framed_client`` do the same with whole messages:
each one a uint32 big-endian length and a UTF-8 EDN payload (the seed's Gloss
frame, on :class:`~twisted.protocols.basic.Int32StringReceiver`), and
``wrap_duplex_stream(codec, s)`` layers any ``twisted_aleph.codec`` frame over
a raw byte stream; the two put the same bytes on the wire.

Backpressure both ways, with nothing allocated per message while the peers
keep up:

* reading: incoming data is ``offer``-ed to the source stream; when the
  handler is behind (the offer answers with a Deferred) the transport stops
  reading until it is taken. A connection buffers at most
  ``INCOMING_BUFFER_SIZE`` messages (raw: chunks of at most one socket read).
* writing: a :class:`TransportWriter` edge drains the sink into the socket and
  is the transport's push producer; while the kernel and transport buffers are
  full (the peer is not reading) it answers with a Deferred, so the handler's
  puts stay pending instead of piling up in memory.

Closing the stream (``s.close()``) closes the connection once queued data is
written; a lost connection closes both halves (already received messages can
still be taken; puts still pending complete, their messages dropped).

TLS (``tls=``): a server runs its handler once the handshake is done (so
``info["ssl_session"]`` has the client's certificate, and a refused or
plaintext client never reaches the handler); a client's Deferred fires once
its side of the handshake is done, or fails with ``tls.TLSError`` (server
certificate untrusted, expired or for another host; handshake refused). Under
TLS 1.3 a server's refusal of the *client's* certificate arrives after the
client's side is done: the stream then closes, the refusal is logged and kept
as ``info["tls_error"]``.

Bad input on the framed protocol: a length prefix over ``max_length`` drops
that connection before anything is buffered for it; a whole frame that is not
UTF-8/EDN reaches the handler as a ``codec.DecodeError`` *message*, and the
handler decides (the seed's slow echo answers ``"ERROR: ..."`` and closes).
Cost: parsing (by ``codec.Decoder``, the library's one frame parser) is
linear in the bytes received, however they are split.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    HostnameEndpoint, connectProtocol, wrapClientTLS,
)
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHandshakeListener, IPushProducer, ISSLTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_aleph import edn
from twisted_aleph.codec import (
    CodecError, DecodeError, Decoder, FrameTooLong, compile_frame, finite_block,
)
from twisted_aleph.codec import encode as encode_frame
from twisted_aleph.server import Server, ServerService, adopt, family_of
from twisted_aleph.stream import SplicedStream, Stream, connect, decode_stream, splice
from twisted_aleph.stream import map as stream_map
from twisted_aleph.stream.core import Edge, Offered, attach
from twisted_aleph.tls import TLSError, connection_creator, tls_error_in

log = Logger()

#: Messages (framed) or chunks (raw) a connection accepts ahead of its handler
#: before it stops reading from the socket.
INCOMING_BUFFER_SIZE = 16

#: Default largest frame payload accepted (Twisted's own default, 99,999
#: bytes, is too small for real use).
DEFAULT_MAX_FRAME = 16 * 1024 * 1024

Handler = Callable[[SplicedStream, dict], Any]

#: the framed protocol's frame: a uint32 big-endian length, then the payload
#: (Gloss's ``(finite-block :uint32)``; ``encode``/``decode`` give it meaning)
WIRE_FRAME = finite_block("uint32")
_pack_length = WIRE_FRAME.header.pack


# -- the write side ----------------------------------------------------------

@implementer(IPushProducer)
class TransportWriter(Edge):
    """Drains a connection's sink stream into its transport.

    It is attached to the sink as a push edge, and registered as the
    transport's streaming producer: the transport calls ``pauseProducing``
    when its write buffer is full and ``resumeProducing`` when it has room.
    While paused, ``deliver`` still writes the message in hand (so at most
    one message beyond the transport's buffer is held) and answers with a
    Deferred that fires on resume, which blocks the sink: further puts stay
    pending. Once the connection is gone messages are discarded, so puts that
    were already pending complete instead of hanging forever.
    """

    __slots__ = ("write", "finish", "paused", "stopped", "_waiting")

    def __init__(self, write: Callable[[Any], None], finish: Callable[[], None]) -> None:
        super().__init__(None, False, "tcp writer")
        self.write = write
        self.finish = finish
        self.paused = False
        self.stopped = False
        self._waiting: Optional[Deferred] = None

    def deliver(self, msg: Any) -> Offered:
        if self.stopped:
            return True
        try:
            self.write(msg)
        except Exception:
            return self._cannot_write(msg)
        if self.paused:
            return self._wait()
        return True

    def _cannot_write(self, msg: Any) -> bool:
        # The handler put something this connection cannot encode: a bug on
        # our side of the wire; end this connection, not the server.
        log.failure("cannot write {msg!r} to the connection; closing it", msg=msg)
        self.stopped = True
        self.finish()
        return True

    def _wait(self) -> Deferred:
        """The transport is full: a Deferred that fires when it has room."""
        waiting = self._waiting
        if waiting is None:
            waiting = self._waiting = Deferred()
        return waiting

    def source_drained(self) -> None:
        """The sink was closed and everything put on it written: hang up."""
        self.finish()

    # IPushProducer, called by the transport
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._release()

    def stopProducing(self) -> None:
        self.stopped = True
        self._release()

    def _release(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.callback(True)


class FrameWriter(TransportWriter):
    """A :class:`TransportWriter` that frames each value itself: uint32
    length + ``encode(value)`` (the per-message path, kept to one call)."""

    __slots__ = ("encode", "transport_write")

    def __init__(self, encode: Callable[[Any], bytes], transport_write: Callable[[bytes], None],
                 finish: Callable[[], None]) -> None:
        super().__init__(transport_write, finish)
        self.encode = encode
        self.transport_write = transport_write

    def deliver(self, msg: Any) -> Offered:
        if self.stopped:
            return True
        try:
            payload = self.encode(msg)
            # over 4 GiB, pack raises struct.error: logged, connection closed
            self.transport_write(_pack_length(len(payload)) + payload)
        except Exception:
            return self._cannot_write(msg)
        if self.paused:
            return self._wait()
        return True


# -- what both connection protocols share ------------------------------------

@implementer(IHandshakeListener)
class _DuplexStreamConnection:
    """Stream plumbing shared by the raw and framed protocols.

    ``dispatch(protocol)`` is called once the stream exists (a server runs the
    handler there; under TLS, once the handshake is done); ``server`` tracks
    the connection so ``Server.close()`` can drop it; ``clock`` schedules the
    resumption of reading. A TLS client sets ``handshake`` to a Deferred that
    fires with the protocol when its side of the handshake is done, or fails
    with :class:`~twisted_aleph.tls.TLSError`.
    """

    transport: Any
    stream: SplicedStream
    source: Stream
    writer: TransportWriter
    handshake: Optional[Deferred] = None
    #: the outgoing half's class (raw connections check what is put)
    sink_class: Any = Stream
    _tls = False
    _finishing = False
    _dispatch_after_handshake = False

    def _init_connection(self, clock: Any, server: Optional[Server],
                         dispatch: Optional[Callable[[Any], None]]) -> None:
        self.clock = clock
        self.server = server
        self.dispatch = dispatch
        self._open = False
        self._unaccepted = 0  # incoming messages offered but not yet accepted
        self._resume_call: Any = None

    def _open_stream(self, writer: TransportWriter) -> None:
        transport = self.transport
        self._open = True
        self.source = Stream(INCOMING_BUFFER_SIZE, description="tcp source")
        sink = self.sink_class(description="tcp sink")
        self.writer = writer
        transport.registerProducer(self.writer, True)
        attach(sink, self.writer)
        self.stream = SplicedStream(sink, self.source, connection_info(transport))
        if self.server is not None:
            self.server.track(transport, self.finish)
        self._tls = ISSLTransport.providedBy(transport)
        if self.dispatch is not None:
            if self._tls:
                self._dispatch_after_handshake = True
            else:
                self.dispatch(self)

    def handshakeCompleted(self) -> None:
        """TLS is up (``IHandshakeListener``, called by Twisted's TLS layer)."""
        if getattr(self.transport, "disconnecting", False):
            # e.g. Twisted's hostname check failed and is aborting the
            # connection: connectionLost reports it.
            return
        if self._dispatch_after_handshake and self._open:
            self._dispatch_after_handshake = False
            self.dispatch(self)  # type: ignore[misc]
        waiting, self.handshake = self.handshake, None
        if waiting is not None:
            waiting.callback(self)

    def _tls_connection_lost(self, reason: Optional[Failure]) -> None:
        """Report a TLS failure: to a client still waiting for its handshake,
        else in the log and as ``info["tls_error"]``."""
        error = tls_error_in(reason)
        waiting, self.handshake = self.handshake, None
        if waiting is None and error is None:
            return
        peer = self.transport.getPeer()
        where = f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
        if self.server is not None:
            where = "client " + where
        if error is None:  # lost before the handshake finished, not by TLS itself
            error = (reason.value if reason is not None else None) or ConnectionDone()
        failed = TLSError(where, error)
        if waiting is not None:
            waiting.errback(Failure(failed))
            return
        self.stream.info["tls_error"] = failed
        if self.server is not None:
            log.info("{error}", error=failed)  # a client the server refused: routine
        else:
            log.warn("{error}", error=failed)

    def _held_back(self, r: Deferred) -> None:
        """An incoming message was offered and the handler is behind (the
        offer answered ``r``, a Deferred): stop reading until it is accepted.
        Callers inline the offer itself; this is the slow path."""
        if self._unaccepted == 0:
            self._pause_reading()
        self._unaccepted += 1
        r.addCallback(self._incoming_accepted)

    def _incoming_accepted(self, _: Any) -> None:
        self._unaccepted -= 1
        if self._unaccepted == 0 and self._open and self._resume_call is None:
            # Resume on a fresh stack: we are inside the stream's delivery,
            # and reading may synchronously offer the next message.
            self._resume_call = self.clock.callLater(0, self._resume_now)

    def _resume_now(self) -> None:
        self._resume_call = None
        if self._open and self._unaccepted == 0 and not self._finishing:
            self._resume_reading()

    def finish(self) -> None:
        """End gracefully (a server shutting down): read nothing more from the
        peer, hand the handler what was received, then end its incoming
        stream. The handler answers what it has and closes the stream (a
        connect/map pipeline does so by itself), which hangs up."""
        if not self._open or self._finishing:
            return
        self._finishing = True
        self.transport.pauseProducing()
        self._offer_received()
        self.source.close()

    def _offer_received(self) -> None:
        """Offer what was received but not yet offered (nothing, for raw bytes)."""

    def _hang_up(self) -> None:
        """The sink is finished: close once queued data is written."""
        if self._open:
            self.transport.unregisterProducer()
            self.transport.loseConnection()

    def _close_stream(self) -> None:
        if not self._open:
            return
        self._open = False
        if self._resume_call is not None and self._resume_call.active():
            self._resume_call.cancel()
        self._resume_call = None
        if self.server is not None:
            self.server.untrack(self.transport)
        self.writer.stopProducing()
        self.source.close()
        self.stream.sink.close()

    def _pause_reading(self) -> None:
        self.transport.pauseProducing()

    def _resume_reading(self) -> None:
        self.transport.resumeProducing()


def connection_info(transport: Any) -> dict:
    """Aleph's connection info map: who is on the other end, on which port."""
    peer = transport.getPeer()
    host = transport.getHost()
    ssl = None
    if ISSLTransport.providedBy(transport):
        ssl = transport.getHandle()  # the OpenSSL Connection (its session, peer cert)
    return {
        "remote_addr": getattr(peer, "host", None),
        "remote_port": getattr(peer, "port", None),
        "server_name": getattr(host, "host", None),
        "server_port": getattr(host, "port", None),
        "ssl_session": ssl,
    }


# -- raw byte streams --------------------------------------------------------

class _ByteSink(Stream):
    """A raw connection's outgoing half: a put of anything but bytes-like or
    str is a TypeError at once (it used to be accepted, then logged and the
    connection closed), as a WebSocket connection's is."""

    __slots__ = ()

    def offer(self, msg: Any) -> Offered:
        if type(msg) is not bytes and not isinstance(msg, (bytes, bytearray, memoryview, str)):
            raise TypeError(f"a TCP stream carries bytes or str, not {type(msg).__name__}")
        return Stream.offer(self, msg)


class ByteStreamProtocol(_DuplexStreamConnection, Protocol):
    """A connection as a duplex stream of ``bytes`` chunks.

    Puts accept ``bytes``, ``bytearray``, ``memoryview`` and ``str`` (UTF-8);
    anything else raises TypeError.
    """

    sink_class = _ByteSink

    def __init__(self, clock: Any, server: Optional[Server] = None,
                 dispatch: Optional[Callable[[Any], None]] = None) -> None:
        self._init_connection(clock, server, dispatch)

    def connectionMade(self) -> None:
        self._open_stream(TransportWriter(self._write_chunk, self._hang_up))

    def _write_chunk(self, chunk: Any) -> None:
        if type(chunk) is not bytes:
            chunk = _chunk_bytes(chunk)
        self.transport.write(chunk)

    def dataReceived(self, data: bytes) -> None:
        r = self.source.offer(data)
        if r is not True and r is not False:
            self._held_back(r)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self._tls:
            self._tls_connection_lost(reason)
        self._close_stream()


def _chunk_bytes(chunk: Any) -> bytes:
    if isinstance(chunk, (bytearray, memoryview)):
        return bytes(chunk)
    if isinstance(chunk, str):
        return chunk.encode("utf-8")
    raise TypeError(f"a TCP stream carries bytes, not {type(chunk).__name__}")


# -- framed EDN --------------------------------------------------------------

def encode_edn(value: Any) -> bytes:
    """A frame payload: the value as UTF-8 EDN (Clojure's ``pr-str``)."""
    return edn.dumps(value).encode("utf-8")


def decode_edn(payload: bytes) -> Any:
    """A value from a UTF-8 EDN frame payload (``clojure.edn/read-string``).

    Raises ``UnicodeDecodeError`` or ``edn.EDNError``."""
    return edn.loads(payload.decode("utf-8"))


#: the seed's protocol on :data:`WIRE_FRAME`, compiled once for every connection
_EDN_WIRE = compile_frame(WIRE_FRAME, encode_edn, decode_edn)


class FramedEDNProtocol(_DuplexStreamConnection, Int32StringReceiver):
    """A connection as a duplex stream of values, one per length-prefixed frame.

    The wire format is Gloss's ``(finite-frame :uint32 (string :utf-8))``
    with ``pr-str``/``edn/read-string``; ``encode(value) -> bytes`` and
    ``decode(bytes) -> value`` make it any payload format. ``MAX_LENGTH``
    bounds a frame: a longer length prefix is refused before any memory is
    set aside for it (:meth:`lengthLimitExceeded`).

    It is an ``Int32StringReceiver`` for the interface Twisted code knows
    (``MAX_LENGTH``, the ``lengthLimitExceeded`` hook, ``paused``), but the
    bytes are read by :attr:`decoder`, a :class:`twisted_aleph.codec.Decoder`
    (the library's one frame parser) of :data:`WIRE_FRAME` with ``decode``
    as its post-decoder: it offers each value to the incoming stream as it
    is decoded and stops where the handler falls behind, so there is no
    per-frame ``stringReceived`` call. A payload that does not decode goes
    through :meth:`frameDecodeFailed`.

    Cost: linear in the bytes received however they are split (Twisted's
    own ``dataReceived`` rejoins the whole partial frame on every read,
    which is quadratic for a large frame trickled in small reads).
    """

    MAX_LENGTH = DEFAULT_MAX_FRAME

    def __init__(self, clock: Any, server: Optional[Server] = None,
                 dispatch: Optional[Callable[[Any], None]] = None, *,
                 max_length: Optional[int] = None,
                 encode: Callable[[Any], bytes] = encode_edn,
                 decode: Callable[[bytes], Any] = decode_edn) -> None:
        self._init_connection(clock, server, dispatch)
        if max_length is not None:
            self.MAX_LENGTH = max_length
        self.encode = encode
        self.decode = decode
        if encode is encode_edn and decode is decode_edn:
            wire = _EDN_WIRE
        else:
            wire = compile_frame(WIRE_FRAME, encode, decode)
        #: reads the frames; holds the bytes received and not yet offered.
        #: (Writing packs each frame in :class:`FrameWriter`, one call per value.)
        self.decoder = Decoder(wire, self.MAX_LENGTH)
        self._offer: Callable[[Any], Offered] = _not_connected
        self._refused = False

    def connectionMade(self) -> None:
        self._open_stream(FrameWriter(self.encode, self.transport.write, self._hang_up))
        self._offer = self.source.offer

    def dataReceived(self, data: bytes) -> None:
        if self.paused:
            # The handler is behind (or the connection was refused): keep
            # what the transport still delivers, unparsed, for the resume.
            self.decoder.hold(data)
            return
        try:
            stopped = self.decoder.feed_into(data, self._offer)
        except CodecError as e:
            stopped = e
        if stopped is not None:
            self._read_on(stopped)

    def _read_on(self, stopped: Any) -> None:
        """Reading's slow path: decoding stopped on ``stopped``, the Deferred
        of an offer the handler has not taken yet, or a codec error. Deal with
        it, then decode what is held until done, paused or refused."""
        while True:
            if isinstance(stopped, FrameTooLong):
                self._refused = True
                self.paused = True
                self.lengthLimitExceeded(stopped.length)
                return
            if isinstance(stopped, DecodeError):
                # framing is intact: the handler gets the error in the
                # frame's place, and the frames after it still decode
                stopped = self._offer(self.frameDecodeFailed(stopped.frame, stopped.cause))
            if stopped is not True and stopped is not False:
                self._held_back(stopped)
            if self.paused:
                return
            try:
                stopped = self.decoder.feed_into(b"", self._offer)
            except CodecError as e:
                stopped = e
            if stopped is None:
                return

    def frameDecodeFailed(self, payload: bytes, error: BaseException) -> Any:
        """A whole frame whose payload did not decode (not UTF-8, not EDN).

        Logs it and returns what the handler receives in its place: a
        ``codec.DecodeError`` *as a message*, so the handler decides (the
        seed's slow echo answers ``"ERROR: ..."`` and closes; a ``map``
        pipeline fails on it, which closes the connection). Framing is
        intact, so the frames after it still decode.
        """
        log.warn("{peer}: bad frame of {n} bytes: {error!r}",
                 peer=self.transport.getPeer(), n=len(payload), error=error)
        return DecodeError(error, payload)

    def lengthLimitExceeded(self, length: int) -> None:
        """A length prefix over ``MAX_LENGTH``: drop this connection only.

        Nothing more is read or parsed from it; replies already written to
        the transport are still flushed before it closes."""
        log.warn("{peer}: frame of {length} bytes is over the {max} byte limit;"
                 " closing the connection",
                 peer=self.transport.getPeer(), length=length, max=self.MAX_LENGTH)
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def _pause_reading(self) -> None:
        if self._finishing:
            return  # no more reading anyway; the last frames are being offered
        self.paused = True  # also stops decoding what is already held
        self.transport.pauseProducing()

    def _offer_received(self) -> None:
        # every whole frame already received, backpressure or not: they are
        # in memory already, and are the last this connection will offer
        if not self._refused:
            self.paused = False
            self.dataReceived(b"")

    def _resume_reading(self) -> None:
        if not self._refused:  # a refused connection stays paused: nothing is parsed
            self.paused = False
        self.transport.resumeProducing()
        self.dataReceived(b"")

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self._tls:
            self._tls_connection_lost(reason)
        self._close_stream()


def _not_connected(value: Any) -> Offered:
    raise RuntimeError("a frame was read before the connection was made")


# -- servers and clients -----------------------------------------------------

class DuplexStreamFactory(Factory):
    """Builds one protocol per accepted connection and runs the handler."""

    def __init__(self, protocol_class: Any, handler: Handler, clock: Any,
                 **protocol_options: Any) -> None:
        self.protocol_class = protocol_class
        self.handler = handler
        self.clock = clock
        self.protocol_options = protocol_options
        self.server: Optional[Server] = None

    def buildProtocol(self, addr: Any) -> Protocol:
        p = self.protocol_class(self.clock, self.server, self._run_handler,
                                **self.protocol_options)
        p.factory = self
        return p

    def _run_handler(self, connection: _DuplexStreamConnection) -> None:
        s = connection.stream
        try:
            result = self.handler(s, s.info)
        except Exception:
            log.failure("TCP handler failed on a new connection; closing it")
            s.close()
            return
        if hasattr(result, "__await__") and not isinstance(result, Deferred):
            result = defer.ensureDeferred(result)
        if isinstance(result, Deferred):
            result.addErrback(_handler_failed, s)


def _handler_failed(failure: Failure, s: SplicedStream) -> None:
    log.failure("TCP handler failed; closing its connection", failure)
    s.close()


def _listen(protocol_class: Any, handler: Handler, port: int, interface: str,
            tls: Any, reactor: Any, fd: Optional[int] = None,
            **protocol_options: Any) -> Server:
    reactor = _reactor(reactor)
    factory = DuplexStreamFactory(protocol_class, handler, reactor, **protocol_options)
    listening: Any = factory
    if tls is not None:
        listening = TLSMemoryBIOFactory(tls, False, factory)
    if fd is not None:  # a worker's inherited listening socket
        port_object = adopt(fd, listening, reactor, family_of(interface))
    else:
        port_object = reactor.listenTCP(port, listening, interface=interface)
    server = Server(port_object, reactor)
    factory.server = server
    return server


def _connect(protocol: Any, host: str, port: int, tls: Any, reactor: Any) -> Deferred:
    endpoint: Any = HostnameEndpoint(reactor, host, port)
    if tls is None:
        return connectProtocol(endpoint, protocol).addCallback(_stream_of)
    endpoint = wrapClientTLS(connection_creator(tls, host), endpoint)

    def cancel(_: Deferred) -> None:
        protocol.handshake = None
        if getattr(protocol, "transport", None) is not None:
            protocol.transport.abortConnection()
        else:
            connected.cancel()

    handshake: Deferred = Deferred(cancel)
    protocol.handshake = handshake
    connected = connectProtocol(endpoint, protocol)
    # Fire when TLS is up; a failed TCP connect fails both: report it once.
    connected.addErrback(_connect_failed, protocol)
    return handshake.addCallback(_stream_of)


def _connect_failed(failure: Failure, protocol: Any) -> None:
    waiting, protocol.handshake = protocol.handshake, None
    if waiting is not None:
        waiting.errback(failure)


def _stream_of(protocol: _DuplexStreamConnection) -> SplicedStream:
    return protocol.stream


def _reactor(reactor: Any) -> Any:
    if reactor is None:
        from twisted.internet import reactor as default
        return default
    return reactor


def start_server(handler: Handler, port: int, *, interface: str = "0.0.0.0",
                 tls: Any = None, reactor: Any = None) -> Server:
    """Listen on ``port``; call ``handler(stream, info)`` per connection.

    ``stream`` is a duplex stream of ``bytes``; ``info`` has ``remote_addr``,
    ``remote_port``, ``server_name``, ``server_port`` and ``ssl_session``
    (the OpenSSL connection, or None). ``tls`` is a server TLS context
    (``tls.server_context(...)``, any ``CertificateOptions`` or
    ``IOpenSSLServerConnectionCreator``).
    """
    return _listen(ByteStreamProtocol, handler, port, interface, tls, reactor)


def client(host: str, port: int, *, tls: Any = None, reactor: Any = None) -> Deferred:
    """Deferred of a duplex stream of ``bytes`` connected to ``host:port``.

    ``tls``: a client TLS context (``tls.client_context(...)``, or any
    ``IOpenSSLClientConnectionCreator`` such as ``optionsForClientTLS(...)``).
    """
    reactor = _reactor(reactor)
    return _connect(ByteStreamProtocol(reactor), host, port, tls, reactor)


def start_framed_server(handler: Handler, port: int, *, interface: str = "0.0.0.0",
                        tls: Any = None, max_length: int = DEFAULT_MAX_FRAME,
                        encode: Callable[[Any], bytes] = encode_edn,
                        decode: Callable[[bytes], Any] = decode_edn,
                        reactor: Any = None, fd: Optional[int] = None) -> Server:
    """Like :func:`start_server`, but the stream carries values, one per
    uint32-length-prefixed frame (UTF-8 EDN unless ``encode``/``decode`` say
    otherwise). A frame that does not decode arrives as a
    ``codec.DecodeError`` message; one longer than ``max_length`` drops that
    connection. ``fd``: serve an inherited listening socket instead of
    binding ``port`` (``--workers``, :func:`twisted_aleph.server.adopt`)."""
    return _listen(FramedEDNProtocol, handler, port, interface, tls, reactor, fd,
                   max_length=max_length, encode=encode, decode=decode)


def framed_client(host: str, port: int, *, tls: Any = None,
                  max_length: int = DEFAULT_MAX_FRAME,
                  encode: Callable[[Any], bytes] = encode_edn,
                  decode: Callable[[bytes], Any] = decode_edn,
                  reactor: Any = None) -> Deferred:
    """Deferred of a duplex stream of values speaking the framed protocol."""
    reactor = _reactor(reactor)
    protocol = FramedEDNProtocol(reactor, max_length=max_length,
                                 encode=encode, decode=decode)
    return _connect(protocol, host, port, tls, reactor)


def wrap_duplex_stream(codec: Any, s: Any) -> SplicedStream:
    """The seed's ``wrap-duplex-stream``: a duplex stream of values over the
    raw byte stream ``s``, encoded and decoded with a ``twisted_aleph.codec``
    frame. Closing the result closes ``s``."""
    out = Stream(description="wrap_duplex_stream")
    connect(stream_map(lambda value: encode_frame(codec, value), out), s)
    return splice(out, decode_stream(s, codec))


class TCPServerService(ServerService):
    """A framed EDN server as a twistd service (``twistd aleph-tcp``).

    Stopping it (twistd on SIGTERM) stops accepting and ends each
    connection gracefully (:meth:`~_DuplexStreamConnection.finish`: no more
    reading; the handler gets what was received, then the end of its input,
    answers and closes, which hangs up once the answers are written), and
    aborts those still open after ``shutdown_timeout`` seconds. ``fd`` serves an
    inherited listening socket (``--workers``). ``gc_threshold``, if not 0,
    tunes the garbage collector once listening
    (:func:`twisted_aleph.server.tune_gc`), until stopped.
    """

    listening_line = "{name}: framed EDN on port {port} (pid {pid})"

    def __init__(self, handler: Handler, port: int, *, interface: str = "0.0.0.0",
                 max_length: int = DEFAULT_MAX_FRAME, tls: Any = None,
                 fd: Optional[int] = None, shutdown_timeout: float = 10.0,
                 gc_threshold: int = 0, reactor: Any = None) -> None:
        super().__init__(self._listen, name="aleph-tcp", interface=interface,
                         shutdown_timeout=shutdown_timeout, gc_threshold=gc_threshold)
        self.handler = handler
        self.port = port
        self.max_length = max_length
        self.tls = tls
        self.fd = fd
        self._reactor = reactor

    def _listen(self) -> Server:
        return start_framed_server(self.handler, self.port, interface=self.interface,
                                   tls=self.tls, max_length=self.max_length, fd=self.fd,
                                   reactor=self._reactor)


__all__ = [
    "start_server", "client", "start_framed_server", "framed_client",
    "wrap_duplex_stream", "FramedEDNProtocol", "ByteStreamProtocol",
    "TransportWriter", "encode_edn", "decode_edn",
    "connection_info", "TCPServerService", "DEFAULT_MAX_FRAME",
    "INCOMING_BUFFER_SIZE",
]
