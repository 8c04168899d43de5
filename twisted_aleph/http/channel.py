"""The HTTP/1.1 connection: twisted.web's parser, with limits in bytes and seconds.

:class:`AlephChannel` is twisted.web's ``HTTPChannel`` (its request-line,
header, Content-Length and chunked parsing are kept: nothing here parses
HTTP again), configured from the site's :class:`~.options.ServerOptions`
and changed on these hooks:

* **header limits**: ``totalHeadersSize`` and ``maxHeaders`` (twisted.web's
  class attributes, which it checks) and ``LineReceiver.MAX_LENGTH`` take
  ``max_header_bytes``/``max_headers``; going past them, which twisted.web
  answers with a bare 400 (or, for one long line, a dropped connection),
  is answered here with a 431 (414 for the request line) and a text body
  (``_respondToBadRequestAndDisconnect``, ``lineLengthExceeded``).
* **Host**: an HTTP/1.1 request without exactly one ``Host`` is a 400
  (RFC 9112), in ``allHeadersReceived``, which also asks the request how to
  take its body (:meth:`~.server_request.AlephRequest.prepare_body`): a
  ``Content-Length`` over the cap is a 413 sent before any byte of the body
  is read, instead of ``100 Continue`` when the client asked for one. A
  ``raw_stream`` route runs right there (``start_early``).
* **bad framing**: conflicting or invalid ``Content-Length`` and
  ``Transfer-Encoding`` (``_failChooseTransferDecoder``) and bad chunk sizes
  (``_respondToBadRequestAndDisconnect``) are a 400 with a reason.
* **timeouts**, on the site's reactor (``callLater``, a ``task.Clock`` in
  tests): ``idle_timeout`` is twisted.web's own ``timeOut``
  (``TimeoutMixin``: no byte between requests); ``header_timeout`` counts
  from a head's first byte (from the connection's start, for its first
  request) and is *not* restarted by later bytes, so a head trickled a
  byte at a time (slowloris) is cut after ``header_timeout`` (a 408 if part
  of it came). Its timer is armed only for a head still incomplete after a
  read (most arrive whole: no timer churn per request) and cancelled when
  the head is in. ``body_timeout`` is the request body's
  (:class:`~.body.RequestBody`).
* **pipelining**: twisted.web answers pipelined requests one at a time but
  keeps reading them while responses pile up in a send buffer the client
  does not empty. Here, once ``max_pipelined`` responses were finished
  into a full send buffer, parsing and reading stop (LineReceiver's
  ``paused``, and the transport) until the transport has sent everything.
* **reading**: twisted.web pauses and resumes its transport for its own
  reasons (``_networkProducer``); a streamed request body pauses it too
  when its route falls behind. A :class:`_ReadGate` stands in for the
  transport so that reading resumes only once no reason holds it.
* **refusals** (:meth:`AlephChannel.refuse_request`): a status, a one-line
  text body, ``Connection: close``; logged through the site's
  :class:`~twisted_aleph.peerlog.PeerLog` (once per peer per interval, no
  traceback). When the client may still be sending (a body refused, or
  answered early), the connection half-closes and drains what comes for
  :data:`LINGER` seconds at most, so the client reads the answer instead of
  a reset.

Requests past ``max_connections`` (the site decides, :meth:`admit`) are
answered by the ``rejected_handler`` (503 ``Retry-After`` by default) and
the connection closed.

An HTTP/2 upgrade (issue 24) must stop this channel's timers
(:meth:`AlephChannel.stop_timers`) when it takes the connection over.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Set

from twisted.internet.interfaces import IPushProducer, ISSLTransport, ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES, HTTPChannel
from twisted.web.http_headers import Headers
from zope.interface import implementer

from twisted_aleph.http.body import to_chunk
from twisted_aleph.http.options import ServerOptions

log = Logger()

#: seconds a refused connection that may still be sending is drained (its
#: input read and dropped) before it is cut.
LINGER = 5.0
#: seconds a closed connection gets to send its last bytes before it is cut
#: (a client that does not read cannot hold it open).
CLOSE_GRACE = 5.0

_DEFAULT_OPTIONS = ServerOptions()


@implementer(IPushProducer)
class _ReadGate:
    """Stands in for the transport as twisted.web's ``_networkProducer``:
    reading is paused while any reason holds it (twisted.web's own, which it
    pauses and resumes as ``"http"``, and this module's), and resumed once
    none does."""

    __slots__ = ("producer", "reasons", "closed")

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.reasons: Set[str] = set()
        self.closed = False  # the connection is closing: reading is left alone

    def pause(self, reason: str) -> None:
        if not self.reasons and not self.closed:
            self.producer.pauseProducing()
        self.reasons.add(reason)

    def resume(self, reason: str) -> None:
        if reason in self.reasons:
            self.reasons.discard(reason)
            if not self.reasons and not self.closed:
                self.producer.resumeProducing()

    def open(self) -> None:
        """Read again whatever held it (the connection is being drained), and
        from now on leave reading alone."""
        reasons, self.reasons = self.reasons, set()
        if reasons and not self.closed:
            self.producer.resumeProducing()
        self.closed = True

    # what twisted.web calls on its _networkProducer
    def pauseProducing(self) -> None:
        self.pause("http")

    def resumeProducing(self) -> None:
        self.resume("http")

    def stopProducing(self) -> None:
        self.producer.stopProducing()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.producer.unregisterProducer()


class AlephChannel(HTTPChannel):
    """twisted.web's HTTP/1.1 channel with the server's limits (module doc)."""

    site: Any = None  # the Site sets it (twisted.web's Site.buildProtocol)
    _options: ServerOptions = _DEFAULT_OPTIONS
    _clock: Any = None
    _gate: Optional[_ReadGate] = None
    _head_timer: Any = None
    _awaiting_head = True  # between requests: the next byte starts a head
    _head_began: Optional[float] = None  # when the current head's first byte came
    _closing = False  # refused or answered early: what comes is dropped
    _linger = False  # close by draining (the client may still be sending)
    _held = False  # pipelining: parsing stops until the send buffer drains
    _unflushed = 0  # responses finished into a full send buffer
    _admitted: Optional[bool] = None  # counted by the site as served (True) or rejected
    _linger_call: Any = None

    # -- the connection ----------------------------------------------------------

    def connectionMade(self) -> None:
        site = getattr(self, "site", None)
        options = getattr(site, "options", None) or _DEFAULT_OPTIONS
        self._options = options
        self._clock = getattr(site, "reactor", None) or _reactor()
        self.maxHeaders = options.max_headers
        self.totalHeadersSize = options.max_header_bytes
        self.MAX_LENGTH = options.max_header_bytes
        super().connectionMade()
        self._gate = _ReadGate(self._networkProducer)
        self._networkProducer = self._gate
        admit = getattr(site, "admit", None)
        if admit is not None:
            self._admitted = bool(admit())
        self._start_head_timer()

    def stop_timers(self) -> None:
        """Cancel this channel's own timers (the header timer; twisted.web's
        idle timer is ``setTimeout(None)``)."""
        timer, self._head_timer = self._head_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.stop_timers()
        linger, self._linger_call = self._linger_call, None
        if linger is not None and linger.active():
            linger.cancel()
        admitted, self._admitted = self._admitted, None
        if admitted is not None:
            self.site.release(admitted)
        super().connectionLost(reason)

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        if self._awaiting_head and data and self._head_began is None and not self._held:
            self._head_began = self._clock.seconds()
        super().dataReceived(data)
        # Most heads arrive whole in one read: the timer is armed only for
        # one still incomplete once the read is parsed (for the time left).
        if (self._head_began is not None and self._head_timer is None and self._awaiting_head
                and not self._closing and not self._held):
            self._start_head_timer(self._head_began)

    # -- the head ----------------------------------------------------------------

    def lineLengthExceeded(self, line: bytes) -> Any:
        """LineReceiver's hook for one line over ``MAX_LENGTH`` (twisted.web
        drops the connection): a 414 or 431."""
        self._head_too_large()
        return None

    def _head_too_large(self) -> None:
        limit = self.totalHeadersSize
        if not self.requests:  # twisted.web makes the request at its first line
            self._refuse(414, f"Request line too long (the limit is {limit} bytes).",
                         "long request line")
        else:
            self._refuse(431, f"Request header fields too large (the limit is {limit} "
                              f"bytes in all).", "headers too large")

    def _failChooseTransferDecoder(self) -> bool:
        self._refuse(400, "Bad request: invalid or conflicting Content-Length and "
                          "Transfer-Encoding headers.", "bad framing")
        self.length = None
        return False

    def _respondToBadRequestAndDisconnect(self) -> None:
        """twisted.web's answer to everything it refuses (a bare 400): here the
        head's size (``totalHeadersSize``) and header count (``maxHeaders``),
        which twisted.web checks itself, are a 431 (414 for a request line),
        the rest a 400 with a reason."""
        if self._receivedHeaderSize > self.totalHeadersSize:
            self._head_too_large()
        elif self._receivedHeaderCount > self.maxHeaders:
            self._refuse(431, f"Too many request header fields (the limit is "
                              f"{self.maxHeaders}).", "too many headers")
        elif self._transferDecoder is not None and not self.line_mode:
            self._refuse(400, "Bad request: malformed chunked body.", "bad chunk")
        else:
            self._refuse(400, "Bad request: malformed request line or header.", "bad request")

    def allHeadersReceived(self) -> None:
        """twisted.web's, plus the Host check, the request's body choice (a 413
        instead of ``100 Continue``), rejections past ``max_connections``
        and the early start of a streamed request."""
        self._awaiting_head = False
        self._head_began = None
        self.stop_timers()
        request = self.requests[-1]
        version = self._version
        if version == b"HTTP/1.1":
            hosts = request.requestHeaders.getRawHeaders(b"host")
            if not hosts or len(hosts) != 1:
                problem = "without a Host header" if not hosts else "with several Host headers"
                self._refuse(400, f"Bad request: HTTP/1.1 request {problem}.", "no host")
                return
        request.parseCookies()
        self.persistent = self.checkPersistence(request, version)
        if self._admitted is False:
            self._reject(request)
            return
        prepare = getattr(request, "prepare_body", None)
        if prepare is None:
            request.gotLength(self.length)
        else:
            error = prepare(self._command, self._path, self.length)
            if error is not None:
                self._refuse(error.status, str(error), error.kind)
                return
        expect = request.requestHeaders.getRawHeaders(b"expect")
        if expect and expect[0].lower() == b"100-continue" and version == b"HTTP/1.1":
            self._send100Continue()
        if getattr(request, "streams_body", False):
            if self.timeOut:  # no idle timer while the route runs (as allContentReceived)
                self._savedTimeOut = self.setTimeout(None)
            request.start_early(self._command, self._path, version)

    def allContentReceived(self) -> None:
        if self._closing:
            return  # answered before the end of the body: the rest is dropped
        super().allContentReceived()

    # -- what requests call ---------------------------------------------------------

    def pause_request_body(self) -> None:
        """A streamed request body is full: stop reading."""
        if self._gate is not None:
            self._gate.pause("body")

    def resume_request_body(self) -> None:
        if self._gate is not None:
            self._gate.resume("body")

    def answered_before_body_end(self, request: Any) -> None:
        """A response starts while its request's body is still arriving: this
        response is the connection's last (and it drains on closing)."""
        request.responseHeaders.setRawHeaders(b"connection", [b"close"])
        self.persistent = False
        self._linger = True

    def refuse_request(self, request: Any, status: int, reason: str, kind: str) -> None:
        """Answer ``status`` with ``reason`` (or cut the connection if the
        response has started) and close; log it against the peer."""
        self._refuse(status, reason, kind, linger=status != 408)

    def requestDone(self, request: Any) -> None:
        """A response is finished: count it if it went into a full send
        buffer (past ``max_pipelined`` such, stop reading until the buffer is
        sent), then twisted.web's (next pipelined request, or close)."""
        if self._waitingForTransport:
            self._unflushed += 1
            if self._unflushed >= self._options.max_pipelined and not self._held:
                self._held = True
                self.paused = True  # LineReceiver: parse nothing more for now
                if self._gate is not None:
                    self._gate.pause("pipeline")
        if getattr(request, "receiving_body", False):
            self.persistent = False
            self._linger = True
        if self.persistent:
            self._awaiting_head = True
        super().requestDone(request)

    def resumeProducing(self) -> None:
        """The transport sent everything it held: pipelined requests go on."""
        super().resumeProducing()
        self._unflushed = 0
        if self._held:
            self._held = False
            self.paused = False
            if self._gate is not None:
                self._gate.resume("pipeline")
            if self._awaiting_head and self._buffered_input():
                self._head_began = self._clock.seconds()
                self._start_head_timer(self._head_began)
            if not self._closing:
                LineReceiver.dataReceived(self, b"")  # parse what waited

    def _buffered_input(self) -> bool:
        return bool(getattr(self, "_buffer", b""))

    # -- closing ------------------------------------------------------------------

    def loseConnection(self) -> None:
        if self._linger:
            self._drain_and_close()
        else:
            self._closing = True
            self.stop_timers()
            if self._gate is not None:
                self._gate.closed = True
            super().loseConnection()
            self._abort_later(CLOSE_GRACE)

    def timeoutConnection(self) -> None:
        """twisted.web's idle timeout: an idle keep-alive connection closes
        (nothing to log: it is how keep-alive ends)."""
        self.loseConnection()

    def forceAbortClient(self) -> None:
        """twisted.web's cut of a closing connection that would not go (its
        own log line, one per connection, becomes a rate-limited one)."""
        self._abortingCall = None
        if self.transport is not None:
            self._peer_log("cut", "did not close in time after its last response")
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def _abort_later(self, seconds: float) -> None:
        if self._abortingCall is None and self.transport is not None:
            self._abortingCall = self.callLater(seconds, self.forceAbortClient)

    def _drain_and_close(self) -> None:
        """Close while the client may still be sending: read and drop what
        comes, and over plain TCP stop writing (half close: the client reads
        the answer, then the end); cut after :data:`LINGER`. Under TLS (whose
        wrapper would hand a half close to the TCP socket beneath it) the
        connection stays open, draining, until the client closes it or
        :data:`LINGER` passes."""
        self._closing = True
        self.stop_timers()
        self.setTimeout(None)
        transport = self.transport
        if transport is None:
            return
        if self._gate is not None:
            self._gate.open()
        if ISSLTransport.providedBy(transport):
            self._linger_call = self.callLater(LINGER, self._lingered)
            return
        self._networkProducer.unregisterProducer()  # type: ignore[attr-defined]
        if ITCPTransport.providedBy(transport) and hasattr(transport, "loseWriteConnection"):
            transport.loseWriteConnection()
            self._abort_later(LINGER)
        else:
            transport.loseConnection()
            self._abort_later(CLOSE_GRACE)

    def _lingered(self) -> None:
        self._linger_call = None
        if self.transport is not None:
            HTTPChannel.loseConnection(self)
            self._abort_later(CLOSE_GRACE)

    # -- refusing -------------------------------------------------------------------

    def _refuse(self, status: int, reason: str, kind: str, *, linger: bool = True,
                headers: Optional[Dict[bytes, bytes]] = None, body: Optional[bytes] = None,
                log_it: bool = True) -> None:
        """Answer ``status`` and close (see :meth:`refuse_request`); ``linger``:
        drain the client's input while closing (it may still be sending; not
        for a client that was too slow to send)."""
        if self._closing or self.transport is None:
            return
        self.stop_timers()
        self.length = None  # twisted.web's lineReceived must not take this as a whole request
        self.paused = True  # LineReceiver: parse nothing more of what was read
        if log_it:
            self._peer_log(kind, reason)
        self.persistent = False
        self._linger = self._linger or linger
        request = self.requests[-1] if self.requests else None
        if request is not None and (request.startedWriting or getattr(request, "_early", False)):
            # its route runs: answer through it (its response is then ignored)
            if request.startedWriting:
                self._linger = False
                self.loseConnection()  # headers are out: a cut is the only signal left
            else:
                request.answer_plain(status, reason)
            return
        self._write_response(status, reason, headers, body)
        self.loseConnection()

    def _write_response(self, status: int, reason: str,
                        extra: Optional[Dict[bytes, bytes]] = None,
                        body: Optional[bytes] = None) -> None:
        if body is None:
            body = reason.encode("utf-8")
        headers = Headers()
        headers.setRawHeaders(b"content-type", [b"text/plain; charset=utf-8"])
        for name, value in (extra or {}).items():
            headers.setRawHeaders(name, [value])
        for name, value in getattr(self.site, "response_headers", None) or ():
            headers.setRawHeaders(name, [value])
        headers.setRawHeaders(b"content-length", [b"%d" % len(body)])
        headers.setRawHeaders(b"connection", [b"close"])
        self.writeHeaders(b"HTTP/1.1", b"%d" % status, RESPONSES.get(status, b"Error"), headers)
        self.transport.write(body)

    def _reject(self, request: Any) -> None:
        """A request on a connection past ``max_connections``: the
        ``rejected_handler``'s answer, then close."""
        handler = self._options.rejected_handler
        try:
            response = handler(request) if handler is not None else None
            status = int(response.get("status", 503)) if response else 503
            headers = {_latin1(k).lower(): _latin1(v)
                       for k, v in ((response or {}).get("headers") or {}).items()}
            body = to_chunk((response or {}).get("body") or b"")
        except Exception:
            log.failure("rejected_handler failed; answering 503")
            status, headers, body = 503, {}, b"Server busy, retry later."
        headers.pop(b"content-length", None)
        headers.pop(b"connection", None)
        headers.setdefault(b"content-type", b"text/plain; charset=utf-8")
        self._peer_log("rejected", f"over max_connections ({self._options.max_connections})")
        self._refuse(status, "", "rejected", headers=headers, body=body, log_it=False)

    def _start_head_timer(self, began: Optional[float] = None) -> None:
        """A head must be in within ``header_timeout`` of ``began`` (its first
        byte; None: now, a connection's start). The timer is cancelled when
        the head is in, so none runs while a request is handled."""
        timeout = self._options.header_timeout
        if timeout is not None and self._head_timer is None and not self._closing:
            if began is not None:
                timeout = max(0.0, timeout - (self._clock.seconds() - began))
            self._head_timer = self.callLater(timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._closing or self.transport is None:
            return  # closed, or taken over (a WebSocket)
        timeout = self._options.header_timeout
        if self._head_began is not None:
            self._refuse(408, f"Request headers not received within {timeout:g} seconds.",
                         "slow headers", linger=False)
        else:  # not a byte of a request: a silent connection just closes
            self.loseConnection()

    def _peer_log(self, kind: str, reason: str) -> None:
        peer_log = getattr(self.site, "peer_log", None)
        if peer_log is not None and self.transport is not None:
            peer_log.bad_input(self.transport.getPeer(), kind, reason)


def _reactor() -> Any:
    from twisted.internet import reactor
    return reactor


def _latin1(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("latin-1")


__all__ = ["AlephChannel", "LINGER", "CLOSE_GRACE"]
