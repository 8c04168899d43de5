"""Streamed HTTP bodies, both directions, with backpressure.

* :class:`StreamProducer` writes a source stream into any ``IConsumer`` (a
  server's ``Request``, a client request's body consumer). It is an
  ``IPushProducer`` *and* a stream :class:`~twisted_aleph.stream.core.Edge`: when
  the transport's send buffer fills, ``pauseProducing`` makes ``deliver``
  answer a pending Deferred, which blocks the source stream (its ``offer``
  then returns a Deferred too). Memory stays bounded by the transport's
  buffer plus one message. ``stopProducing`` (the peer hung up) closes
  the source (and, through the graph, its upstream); the edge stays
  attached and drops what is still on its way, so pending puts complete.
* :class:`StreamBodyProducer` is that producer as an ``IBodyProducer`` for
  client requests whose body is a stream (sent chunked).
* :class:`BodyReceiver` goes the other way: a response body delivered by
  Twisted's HTTP client becomes a :class:`~twisted_aleph.stream.Stream` of
  ``bytes`` chunks; while the stream refuses more, the transport is paused.

Messages are coerced with :func:`to_chunk`: ``bytes``-like as is, ``str``
as UTF-8; anything else is an error that ends the body (logged).
"""

from __future__ import annotations

import io
import os
import stat
from typing import Any, Optional

from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from twisted_aleph import stream
from twisted_aleph.stream.core import Edge, Offered, attach

log = Logger()

#: bytes read from a file body per message (files are read in the thread pool).
FILE_CHUNK_SIZE = 65536


def to_chunk(msg: Any) -> bytes:
    """One body message as bytes: bytes-like as is, str as UTF-8."""
    if isinstance(msg, bytes):
        return msg
    if isinstance(msg, str):
        return msg.encode("utf-8")
    if isinstance(msg, (bytearray, memoryview)):
        return bytes(msg)
    raise TypeError(f"a body message must be bytes or str, not {type(msg).__name__}")


def file_size(f: Any) -> Optional[int]:
    """Bytes left in a regular file (for Content-Length), or None if unknown."""
    if isinstance(f, io.BytesIO):
        return len(f.getbuffer()) - f.tell()
    try:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            return None
        return max(st.st_size - f.tell(), 0)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


def file_source(f: Any) -> Any:
    """A stream of a file object's chunks, read in the thread pool; the file
    is closed once the stream ends (drained, or closed by a hung-up peer)."""
    chunks = iter(lambda: f.read(FILE_CHUNK_SIZE), b"")
    source = stream.to_source(chunks, blocking=True)
    source.on_closed(lambda: _close_quietly(f))
    return source


def _close_quietly(f: Any) -> None:
    try:
        f.close()
    except Exception:
        log.failure("error closing body file {f!r}", f=f)


@implementer(IPushProducer)
class StreamProducer(Edge):
    """Push a source stream into ``consumer.write``, pausing on backpressure.

    ``finished`` fires True when the source drained (every message written),
    or False when the producer was stopped first (peer gone, or a message
    could not be written). The caller registers this producer with the
    consumer, and finishes the consumer when ``finished`` fires.
    """

    __slots__ = ("consumer", "finished", "_paused", "_stopped")

    def __init__(self, consumer: Any, description: str = "http body") -> None:
        super().__init__(None, True, description)
        self.consumer = consumer
        self.finished: Deferred = Deferred()
        self._paused: Optional[Deferred] = None
        self._stopped = False

    def start(self, source: Any) -> Deferred:
        """Start writing ``source``'s messages; returns :attr:`finished`."""
        attach(stream.to_source(source), self)
        return self.finished

    # -- Edge: called by the source stream -----------------------------------

    def deliver(self, msg: Any) -> Offered:
        if self._stopped:
            return True  # the consumer is gone: drop it, so its put completes
        try:
            data = to_chunk(msg)
        except TypeError:
            log.failure("dropping the rest of {desc}: bad message {msg!r}",
                        desc=self.description, msg=msg)
            self._stop(False)
            return True
        if data:
            self.consumer.write(data)
        if self._paused is not None:
            return self._paused
        return True

    def source_drained(self) -> None:
        self.source = None
        if not self._stopped:
            self._stopped = True
            self.finished.callback(True)

    # -- IPushProducer: called by the transport ---------------------------

    def pauseProducing(self) -> None:
        if self._paused is None and not self._stopped:
            self._paused = Deferred()

    def resumeProducing(self) -> None:
        paused, self._paused = self._paused, None
        if paused is not None:
            paused.callback(True)

    def stopProducing(self) -> None:
        """The consumer is going away: close the source (and its upstream)."""
        self._stop(False)

    @property
    def paused(self) -> bool:
        return self._paused is not None

    def _stop(self, result: bool) -> None:
        if self._stopped:
            return
        self._stopped = True
        # Stay attached and close the source (as tcp.TransportWriter does):
        # messages still on their way are dropped by deliver, so puts that
        # were pending complete (True) instead of hanging; later ones are False.
        source = self.source
        if source is not None:
            source.close()
        paused, self._paused = self._paused, None
        if paused is not None:
            paused.callback(True)
        self.finished.callback(result)


@implementer(IBodyProducer)
class StreamBodyProducer:
    """A client request body taken from a stream, sent with chunked encoding."""

    length = UNKNOWN_LENGTH

    def __init__(self, source: Any) -> None:
        self.source = stream.to_source(source)
        self._producer: Optional[StreamProducer] = None

    def startProducing(self, consumer: Any) -> Deferred:
        self._producer = StreamProducer(consumer, "http request body")
        d = self._producer.start(self.source)

        def done(drained: bool) -> None:
            if not drained:
                raise ConnectionError("request body stopped before its end")
        return d.addCallback(done)

    def pauseProducing(self) -> None:
        if self._producer is not None:
            self._producer.pauseProducing()

    def resumeProducing(self) -> None:
        if self._producer is not None:
            self._producer.resumeProducing()

    def stopProducing(self) -> None:
        if self._producer is not None:
            self._producer.stopProducing()
        else:
            self.source.close()


class BodyReceiver(protocol.Protocol):
    """Feed a client response body into ``sink`` as bytes chunks.

    Used with ``response.deliverBody``: while the sink answers an offer with
    a Deferred, the transport is paused, so a slow consumer slows the server.
    Closing the sink early stops the transport (the connection is dropped).
    The sink is closed when the body ends, normally or not (logged).
    """

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self._last: Optional[Deferred] = None  # newest offer still pending
        self._done = False

    def connectionMade(self) -> None:
        self.sink.on_closed(self._sink_closed)

    def dataReceived(self, data: bytes) -> None:
        r = self.sink.offer(data)
        if r is True or r is False:
            return
        if self._last is None:
            self.transport.pauseProducing()
        self._last = r
        r.addCallback(self._accepted, r)

    def _accepted(self, ok: bool, offered: Deferred) -> None:
        if offered is self._last:
            self._last = None
            if not self._done and not self.sink.is_closed:
                self.transport.resumeProducing()

    def _sink_closed(self) -> None:
        if not self._done:
            self._done = True
            self.transport.stopProducing()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if not self._done:
            self._done = True
            if not reason.check(ResponseDone, PotentialDataLoss):
                log.warn("response body ended early: {reason}",
                         reason=reason.getErrorMessage())
        self.sink.close()


__all__ = [
    "to_chunk", "file_size", "file_source", "StreamProducer",
    "StreamBodyProducer", "BodyReceiver", "FILE_CHUNK_SIZE",
]
