"""Streamed HTTP bodies, both directions, with backpressure.

Response side (and client request bodies):

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

Server request side:

* :class:`RequestBody` receives one request's body, whatever carries it (an
  HTTP/1.1 connection's Content-Length or chunked decoder today, an HTTP/2
  stream's DATA frames tomorrow): the cap, the body timeout and the
  backpressure live here, in one place, so a transport only feeds it bytes
  and tells it how to pause reading and how to refuse. The body is either
  buffered (in memory up to :data:`MEMORY_BODY_LIMIT`, then a temporary
  file, as twisted.web does; never a byte past the cap) or streamed (a
  :class:`~twisted_aleph.stream.Stream` of bytes chunks the route reads
  while the body arrives; past :data:`STREAM_HIGH_WATER` bytes not taken,
  reading pauses).

Messages are coerced with :func:`to_chunk`: ``bytes``-like as is, ``str``
as UTF-8; anything else is an error that ends the body (logged).
"""

from __future__ import annotations

import io
import os
import stat
import tempfile
from typing import IO, Any, Callable, List, Optional

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
from twisted_aleph.stream import Stream
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


# -- the server's request bodies ---------------------------------------------------

#: a request body up to this many bytes is buffered in memory; a larger one
#: (or one of unknown size, once past it) in a temporary file (twisted.web's
#: threshold, ``twisted.web.http._getContentFile``).
MEMORY_BODY_LIMIT = 100_000
#: bytes of a streamed request body its route has not taken yet past which
#: reading stops (the transport is paused) until the route catches up.
STREAM_HIGH_WATER = 256 * 1024


class RequestBodyError(Exception):
    """Why a request body did not arrive whole.

    ``status`` is what the server answered (413 too large, 408 too slow, 400
    malformed), 0 when the client went away; ``kind`` a short fixed word for
    the log (``"body too large"``...). A streamed body that ends this way sets
    ``request.body_error`` to it before its stream closes.
    """

    def __init__(self, reason: str, status: int = 0, kind: str = "bad body") -> None:
        super().__init__(reason)
        self.status = status
        self.kind = kind


def check_length(length: Optional[int], limit: Optional[int]) -> Optional[RequestBodyError]:
    """The 413 for a declared body length over ``limit`` (checked before any
    byte of the body is read), or None."""
    if length is not None and limit is not None and length > limit:
        return RequestBodyError(
            f"Request body of {length} bytes is larger than the {limit} bytes allowed.",
            413, "body too large")
    return None


def content_file(length: Optional[int]) -> IO[bytes]:
    """Where a buffered body of ``length`` bytes (None: unknown) is kept: in
    memory up to :data:`MEMORY_BODY_LIMIT`, else a temporary file (an unsized
    body moves to one when it grows past the threshold)."""
    if length is not None and length <= MEMORY_BODY_LIMIT:
        return io.BytesIO()
    if length is not None:
        return tempfile.TemporaryFile()
    return tempfile.SpooledTemporaryFile(max_size=MEMORY_BODY_LIMIT)


def _ignore(*args: Any) -> None:
    """What a released body calls instead of its transport."""


class RequestBody:
    """One request's body as it arrives: capped, timed, buffered or streamed.

    The transport calls :meth:`feed` with each chunk of decoded body bytes,
    :meth:`finish` after the last one and :meth:`abort` if the peer went
    away; it gives three callables: ``pause()`` and ``resume()`` stop and
    restart reading this body (an HTTP/1.1 channel pauses its transport; an
    HTTP/2 stream would withhold its flow-control window), and
    ``refuse(error)``, which answers ``error.status`` and closes.

    * Past ``limit`` bytes (None: no cap) the body is refused with a 413; the
      byte that crossed it is not stored.
    * With ``timeout`` (seconds), a body that goes that long without a byte
      is refused with a 408. Time spent paused by this body's own
      backpressure does not count: the client is not the slow one then.
      The clock (any ``IReactorTime``) is read once per chunk and the timer
      re-armed only when it fires, so a fast body costs no timer churn.
    * Buffered (``streamed=False``): bytes go to :attr:`content`
      (:func:`content_file`), rewound at the end.
    * Streamed: bytes go to :attr:`stream` (a ``Stream`` of bytes chunks, no
      buffer of its own). While a chunk waits to be taken, the next ones are
      held and joined into one; once :data:`STREAM_HIGH_WATER` (``high_water``)
      bytes are held, reading pauses until the route takes. So the bytes this
      body holds (:attr:`held_bytes`, plus at most one chunk the stream has
      handed to a consumer that is still working on it) stay below
      ``2 * (high_water + one read)`` whatever the body's size: the bound a
      slow route keeps memory to. The stream closes when the body ends, or is
      cut (then :attr:`error` says why, first). If the route closes the
      stream, the rest of the body is read and dropped (still capped).
    """

    def __init__(self, *, length: Optional[int], limit: Optional[int], streamed: bool,
                 timeout: Optional[float], clock: Any, pause: Callable[[], Any],
                 resume: Callable[[], Any], refuse: Callable[[RequestBodyError], Any],
                 high_water: int = STREAM_HIGH_WATER, content: Optional[IO[bytes]] = None,
                 description: str = "request body") -> None:
        self.length = length
        self.limit = limit
        self.timeout = timeout
        self.high_water = high_water
        #: body bytes fed so far
        self.received = 0
        #: the last byte arrived
        self.complete = False
        #: why the body was cut (None while it is fine)
        self.error: Optional[RequestBodyError] = None
        self.stream: Optional[Stream] = Stream(0, description) if streamed else None
        self.content: Optional[IO[bytes]] = None
        if not streamed:
            self.content = content if content is not None else content_file(length)
        self._clock = clock
        self._pause, self._resume, self._refuse = pause, resume, refuse
        self._held: List[bytes] = []
        self._held_size = 0
        self._offered: Optional[Deferred] = None  # the chunk waiting to be taken
        self._offered_size = 0
        self._paused = False
        self._dropping = False  # the route closed the stream: read and drop the rest
        self._timer: Any = None
        self._last = 0.0
        if timeout is not None:
            self._last = clock.seconds()
            self._arm()

    @property
    def held_bytes(self) -> int:
        """Bytes received and not yet taken by the route (streamed bodies)."""
        return self._held_size + self._offered_size

    @property
    def done(self) -> bool:
        """Whole, or cut: nothing more will be accepted."""
        return self.complete or self.error is not None

    # -- called by the transport ------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Some body bytes arrived."""
        if self.complete or self.error is not None:
            return
        self.received += len(data)
        if self.limit is not None and self.received > self.limit:
            self._fail(RequestBodyError(
                f"Request body larger than the {self.limit} bytes allowed.",
                413, "body too large"))
            return
        if self.timeout is not None:
            self._last = self._clock.seconds()
        if self.stream is None:
            self.content.write(data)  # type: ignore[union-attr]
        elif not self._dropping:
            self._push(data)

    def finish(self) -> None:
        """The last byte arrived."""
        if self.complete or self.error is not None:
            return
        self.complete = True
        self._cancel_timer()
        if self.stream is None:
            self.content.seek(0)  # type: ignore[union-attr]
        elif self._offered is None and not self._held:
            self.stream.close()
        # else: closed once the last chunk is taken (_taken)

    def abort(self, error: RequestBodyError) -> None:
        """The body will not arrive whole (the peer went away, or the server
        refused it): drop what is held, close the stream (a chunk already
        offered can still be taken), keep ``error``."""
        if self.complete or self.error is not None:
            return
        self.error = error
        self._end_stream()

    def _end_stream(self) -> None:
        self._cancel_timer()
        self._held = []
        self._held_size = 0
        if self.stream is not None:
            self.stream.close()
        if self._paused:
            self._paused = False
            self._resume()

    def release(self) -> None:
        """Forget the transport's callables and the stream (the request is
        over): nothing then refers back to the request, so reference counting
        frees it without the cyclic collector."""
        self._cancel_timer()
        self._pause = self._resume = _ignore
        self._refuse = _ignore
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.close()  # (a chunk already offered can still be taken)

    # -- streamed: backpressure --------------------------------------------------

    def _push(self, data: bytes) -> None:
        if self._offered is not None:
            self._held.append(data)
            self._held_size += len(data)
            if not self._paused and self._held_size >= self.high_water:
                self._paused = True
                self._cancel_timer()
                self._pause()
            return
        self._offer(data)

    def _offer(self, data: bytes) -> None:
        if self.stream is None:
            return  # released
        offered = self.stream.offer(data)
        if offered is True:
            return
        if offered is False:
            self._drop_the_rest()
            return
        self._offered = offered
        self._offered_size = len(data)
        offered.addCallback(self._taken)

    def _taken(self, accepted: bool) -> None:
        """The chunk that was waiting has been taken (or the stream closed)."""
        self._offered = None
        self._offered_size = 0
        if accepted is False and self.error is None:
            self._drop_the_rest()
        if self._held:
            data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
            self._held = []
            self._held_size = 0
            self._offer(data)
        if self._paused and self._held_size < self.high_water:
            self._paused = False
            if self.error is None:
                self._last = self._clock.seconds() if self.timeout is not None else 0.0
                self._arm()
            self._resume()
        if self.complete and self._offered is None and not self._held and self.stream is not None:
            self.stream.close()

    def _drop_the_rest(self) -> None:
        """The route closed the body stream: what comes is counted and dropped."""
        self._dropping = True
        self._held = []
        self._held_size = 0

    # -- the body timeout ---------------------------------------------------------

    def _arm(self) -> None:
        if self.timeout is not None and self._timer is None and not self.done:
            self._timer = self._clock.callLater(self.timeout, self._expire)

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _expire(self) -> None:
        self._timer = None
        if self.done or self._paused or self.timeout is None:
            return
        quiet = self._clock.seconds() - self._last
        if quiet < self.timeout:
            self._timer = self._clock.callLater(self.timeout - quiet, self._expire)
            return
        self._fail(RequestBodyError(
            f"No request body byte for {self.timeout:g} seconds.", 408, "slow body"))

    def _fail(self, error: RequestBodyError) -> None:
        """Refuse the body: the refusal is answered before the stream ends, so
        a route reading it cannot answer first as if the body were whole."""
        if self.done:
            return
        self.error = error
        self._cancel_timer()
        self._refuse(error)
        self._end_stream()


__all__ = [
    "to_chunk", "file_size", "file_source", "StreamProducer",
    "StreamBodyProducer", "BodyReceiver", "FILE_CHUNK_SIZE",
    "RequestBody", "RequestBodyError", "content_file", "check_length",
    "MEMORY_BODY_LIMIT", "STREAM_HIGH_WATER",
]
