"""The HTTP client: Aleph's ``aleph.http/get`` and friends, on treq.

``get(url, query_params=..., headers=..., body=..., pool=...)`` returns a
Deferred of a response map ``{"status": int, "headers": {lower-case name:
value}, "body": ...}``. What the body is depends on the pool:

* default: the whole body, read into memory, as a readable binary file
  (``io.BytesIO``), so ``bytestreams.to_string(resp["body"])`` and
  ``to_line_seq`` are plain calls (Aleph gives an ``InputStream``). At
  most ``max_body`` bytes (64 MiB unless the pool or request says
  otherwise; None: unbounded): past that the Deferred fails with
  :class:`BodyTooLarge` and the connection is dropped;
* ``connection_pool(raw_stream=True)``: the Deferred fires at the headers
  and the body is a :class:`~twisted_aleph.stream.Stream` of ``bytes``
  chunks; a consumer that falls behind pauses the socket (backpressure),
  one that closes the stream early drops the connection.

A :class:`ConnectionPool` is one treq ``HTTPClient`` over one Twisted
``Agent`` and ``HTTPConnectionPool`` (keep-alive, ``max_per_host``
connections per host, TLS policy ``tls=``). Headers repeated in a response
are joined with ", ". A request ``body`` may be bytes, str (UTF-8), a file,
a list of bytes/str chunks, or any stream source (sent chunked, with
backpressure); a dict, or a list of (name, value) pairs, is sent as form
fields (``application/x-www-form-urlencoded``, as treq's ``data=``). A stream
body is closed (and through it its upstream) if the request fails before or
while sending it, e.g. when the connection is refused: a feeder never blocks
on a body nobody will read.

``timeout=`` (seconds) bounds the whole Deferred: in a buffered pool that is
connecting, sending, the headers *and* reading the body; in a
``raw_stream=True`` pool the Deferred fires at the headers, so, as with
treq's ``timeout``, only the time to the headers is bounded (the body stream
is the caller's to time). Past it the request is cancelled, its connection
dropped (never reused), and the Deferred fails with
``twisted.internet.defer.TimeoutError`` (the cancelled failure is its
``__cause__``). The timer runs on the pool's reactor.

An https request whose TLS fails (the server's certificate untrusted,
expired or for another host; the handshake refused, e.g. by a mutual-TLS
server that wants a client certificate) fails with
:class:`twisted_aleph.tls.TLSError`, which names the server and OpenSSL's
reason (``.reason``; Twisted's original failure is its ``__cause__``).

Unlike Aleph, an error status does not fail the Deferred unless asked
(``throw_exceptions=True`` raises :class:`HTTPError` for status >= 400).
"""

from __future__ import annotations

import io
from typing import Any, Callable, Dict, List, Mapping, Optional
from urllib.parse import urlsplit

from twisted.internet import defer, protocol
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH

from twisted_aleph import stream
from twisted_aleph.http.body import BodyReceiver, StreamBodyProducer, to_chunk
from twisted_aleph.tls import TLSError, tls_error_in

ResponseMap = Dict[str, Any]

#: connections kept open per host by a pool (Aleph's default is 8 too).
DEFAULT_MAX_PER_HOST = 8

#: the largest response body a buffered pool reads into memory: 64 MiB.
#: treq's own ``content()`` has no cap, but the default pool is shared by
#: the whole process and a server (or a redirect) should not be able to
#: exhaust its memory; bigger bodies belong in ``raw_stream=True`` pools,
#: whose memory backpressure bounds. ``max_body=None`` restores treq's way.
DEFAULT_MAX_BODY = 64 * 1024 * 1024

_POOL_MAX_BODY: Any = object()  # request(max_body=...) not given: the pool's


class HTTPError(Exception):
    """An error status, when ``throw_exceptions=True``; ``.response`` is the map."""

    def __init__(self, response: ResponseMap) -> None:
        super().__init__(f"status {response['status']}")
        self.response = response


class BodyTooLarge(Exception):
    """A buffered response body was longer than ``max_body`` bytes.

    The connection it came on is dropped; ``.max_body`` is the cap,
    ``.length`` what the server declared (Content-Length), if it did.
    """

    def __init__(self, url: str, max_body: int, length: Optional[int] = None) -> None:
        declared = f" (Content-Length {length})" if length is not None else ""
        super().__init__(
            f"response body from {url}{declared} exceeds max_body of {max_body} bytes;"
            " pass a larger max_body, max_body=None, or use connection_pool(raw_stream=True)")
        self.url = url
        self.max_body = max_body
        self.length = length


class ConnectionPool:
    """A treq client plus how response bodies are handed over.

    ``http_client`` is any treq ``HTTPClient`` (``testing.stub_pool`` builds
    one on an in-memory agent); normally :func:`connection_pool` makes it.
    ``max_body``: the cap on a buffered body (see :data:`DEFAULT_MAX_BODY`).
    ``reactor``: the clock ``timeout=`` runs on (None: the global reactor).
    """

    def __init__(self, http_client: Any, *, raw_stream: bool = False,
                 connections: Optional[HTTPConnectionPool] = None,
                 max_body: Optional[int] = DEFAULT_MAX_BODY,
                 reactor: Any = None) -> None:
        self.http_client = http_client
        self.raw_stream = raw_stream
        self.connections = connections
        self.max_body = max_body
        self.reactor = reactor

    def close(self) -> Deferred:
        """Close the kept-alive connections; Deferred fires once they are."""
        if self.connections is None:
            return succeed(None)
        return self.connections.closeCachedConnections()


def connection_pool(*, raw_stream: bool = False, tls: Any = None, persistent: bool = True,
                    max_per_host: int = DEFAULT_MAX_PER_HOST,
                    connect_timeout: Optional[float] = None,
                    max_body: Optional[int] = DEFAULT_MAX_BODY,
                    reactor: Any = None) -> ConnectionPool:
    """A pool of keep-alive connections (Aleph's ``connection-pool``).

    ``tls``: a client TLS policy for https URLs (``twisted_aleph.tls.client_context``
    or any ``IPolicyForHTTPS``); default: the platform's trust store.
    ``max_body``: the most bytes a buffered response body may have (default
    64 MiB, None: unbounded); past it the request fails with
    :class:`BodyTooLarge`. A ``raw_stream`` pool ignores it (backpressure).
    """
    import treq.client

    if reactor is None:
        from twisted.internet import reactor  # type: ignore[no-redef]
    connections = HTTPConnectionPool(reactor, persistent=persistent)
    connections.maxPersistentPerHost = max_per_host
    connections.retryAutomatically = False
    kwargs: Dict[str, Any] = {"pool": connections}
    if tls is not None:
        kwargs["contextFactory"] = tls
    if connect_timeout is not None:
        kwargs["connectTimeout"] = connect_timeout
    agent = Agent(reactor, **kwargs)
    return ConnectionPool(treq.client.HTTPClient(agent), raw_stream=raw_stream,
                          connections=connections, max_body=max_body, reactor=reactor)


_default_pool: Optional[ConnectionPool] = None


def default_pool() -> ConnectionPool:
    """The shared pool used when ``pool=`` is not given (made on first use)."""
    global _default_pool
    if _default_pool is None:
        _default_pool = connection_pool()
    return _default_pool


def _request_data(body: Any) -> Any:
    if body is None or isinstance(body, (bytes, dict)):
        return body
    if isinstance(body, (list, tuple)):
        if body and all(isinstance(x, tuple) and len(x) == 2 for x in body):
            return body  # form fields, as treq's data=
        return b"".join(map(to_chunk, body))  # chunks already in memory: one sized body
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    if hasattr(body, "read"):
        return body
    return StreamBodyProducer(body)


def response_headers(response: Any) -> Dict[str, str]:
    """Response headers as ``{lower-case name: value}``, repeats joined with ", "."""
    headers: Dict[str, str] = {}
    for name, values in response.headers.getAllRawHeaders():
        key = name.decode("latin-1").lower()
        value = ", ".join(v.decode("latin-1") for v in values)
        if key == "content-encoding" and not value:
            # Twisted's ContentDecoderAgent leaves an empty one behind.
            continue
        headers[key] = value
    length = getattr(response, "length", UNKNOWN_LENGTH)
    if length is not UNKNOWN_LENGTH and "content-length" not in headers:
        # Twisted keeps connection-control headers out of response.headers.
        headers["content-length"] = str(length)
    return headers


def request(method: str, url: str, *, query_params: Optional[Mapping[str, Any]] = None,
            headers: Optional[Mapping[str, Any]] = None, body: Any = None,
            pool: Optional[ConnectionPool] = None, follow_redirects: bool = True,
            throw_exceptions: bool = False, timeout: Optional[float] = None,
            max_body: Optional[int] = _POOL_MAX_BODY) -> Deferred:
    """Deferred of the response map for ``method url`` (see the module doc).

    ``max_body`` overrides the pool's cap on a buffered body for this request.
    ``timeout``: seconds for the whole request (the body too, unless streamed).
    """
    if pool is None:
        pool = default_pool()
    params = None
    if query_params:
        params = {str(k): [str(v) for v in vs] if isinstance(vs, (list, tuple)) else str(vs)
                  for k, vs in query_params.items()}
    data = _request_data(body)
    try:
        # No timeout= for treq: its timer stops at the headers (see _bound).
        d = pool.http_client.request(
            method, url, params=params, headers=dict(headers) if headers else None,
            data=data, allow_redirects=follow_redirects, unbuffered=True)
    except BaseException:
        if isinstance(data, StreamBodyProducer):
            data.stopProducing()
        raise
    if isinstance(data, StreamBodyProducer):
        # Agent only stops a body it started: one never sent (connection
        # refused, cancelled while connecting) would leave the stream open.
        d.addErrback(_stop_body, data)
    if pool.raw_stream:
        d.addCallback(_streamed_response)
    else:
        cap = pool.max_body if max_body is _POOL_MAX_BODY else max_body
        d.addCallback(_buffered_response, cap, url)
    if throw_exceptions:
        d.addCallback(_raise_for_status)
    d.addErrback(_name_tls_failure, url)
    if timeout:  # as treq: 0 or None is no timeout
        _bound(d, timeout, pool.reactor, url)
    return d


def _stop_body(failure: Failure, producer: StreamBodyProducer) -> Failure:
    """The request failed: close its stream body (a no-op once it ended)."""
    producer.stopProducing()
    return failure


def _bound(d: Deferred, timeout: float, clock: Any, url: str) -> None:
    """Cancel ``d`` unless it fires within ``timeout`` seconds (Twisted's
    ``addTimeout``); it then fails with ``defer.TimeoutError`` naming the
    server. Cancelling reaches whatever ``d`` waits on: the Agent (which
    aborts the connection) or the body being read (which hangs up, see
    :class:`_CollectBody`)."""
    if clock is None:
        from twisted.internet import reactor as clock

    def timed_out(result: Any, _timeout: float) -> Any:
        if isinstance(result, Failure):
            raise defer.TimeoutError(
                f"request to {_server_of(url)} timed out after {timeout} s") from result.value
        return result

    d.addTimeout(timeout, clock, onTimeoutCancel=timed_out)


def _name_tls_failure(failure: Failure, url: str) -> Failure:
    """Twisted reports a failed handshake as ``ResponseNeverReceived`` (or
    ``ResponseFailed``) around an OpenSSL error: say it was TLS."""
    reason = tls_error_in(failure)
    if reason is None or isinstance(reason, TLSError):
        return failure
    raise TLSError(_server_of(url), reason) from failure.value


def _server_of(url: str) -> str:
    """``scheme://host:port`` of ``url``: never a user:password in messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _response_map(response: Any, body: Any) -> ResponseMap:
    return {"status": response.code, "headers": response_headers(response), "body": body}


class _CollectBody(protocol.Protocol):
    """Feed a response body to ``collector``, as ``treq.collect`` does, but
    cancelling :attr:`finished` hangs up (treq's Deferred has no canceller:
    cancelled, it would leave the connection open and reading). A collector
    that raises also hangs up, and fails :attr:`finished` with its error."""

    def __init__(self, collector: Callable[[bytes], None]) -> None:
        self.collector = collector
        self.finished: Deferred = Deferred(self._cancel)
        self._done = False

    def dataReceived(self, data: bytes) -> None:
        if self._done:
            return
        try:
            self.collector(data)
        except Exception:
            self._done = True
            self._hang_up()
            self.finished.errback(Failure())

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self._done:
            return
        self._done = True
        if reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(None)
        else:
            self.finished.errback(reason)

    def _cancel(self, d: Deferred) -> None:
        # Deferred errbacks CancelledError itself once this returns.
        self._done = True
        self._hang_up()

    def _hang_up(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()


class _DropBody(protocol.Protocol):
    """Takes a response body only to hang up at once (it is too large)."""

    def connectionMade(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()


def _buffered_response(response: Any, max_body: Optional[int], url: str) -> Deferred:
    """Read the body into memory, at most ``max_body`` bytes of it; past
    that, drop the connection (no more is read) and fail the request.
    Cancelling the returned Deferred (``timeout=``) drops the connection."""
    length = getattr(response, "length", UNKNOWN_LENGTH)
    if max_body is not None and isinstance(length, int) and length > max_body:
        response.deliverBody(_DropBody())  # declared too long: read none of it
        return fail(BodyTooLarge(_server_of(url), max_body, length))
    parts: List[bytes] = []
    received = 0

    def collect(data: bytes) -> None:
        nonlocal received
        if received < 0:
            return  # already over the cap: the connection is being dropped
        received += len(data)
        if max_body is not None and received > max_body:
            received = -1
            del parts[:]
            raise BodyTooLarge(_server_of(url), max_body)  # _CollectBody hangs up
        parts.append(data)

    if length == 0:
        finished: Deferred = succeed(None)  # as treq.collect: nothing to read
    else:
        receiver = _CollectBody(collect)
        response.deliverBody(receiver)
        finished = receiver.finished
    return finished.addCallback(
        lambda _: _response_map(response, io.BytesIO(b"".join(parts))))


def _streamed_response(response: Any) -> ResponseMap:
    body = stream.Stream(description="http response body")
    response.deliverBody(BodyReceiver(body))
    return _response_map(response, body)


def _raise_for_status(response: ResponseMap) -> ResponseMap:
    if response["status"] >= 400:
        raise HTTPError(response)
    return response


def get(url: str, **kwargs: Any) -> Deferred:
    """``request("GET", url, ...)``."""
    return request("GET", url, **kwargs)


def post(url: str, **kwargs: Any) -> Deferred:
    """``request("POST", url, ...)``."""
    return request("POST", url, **kwargs)


def put(url: str, **kwargs: Any) -> Deferred:
    """``request("PUT", url, ...)``."""
    return request("PUT", url, **kwargs)


def delete(url: str, **kwargs: Any) -> Deferred:
    """``request("DELETE", url, ...)``."""
    return request("DELETE", url, **kwargs)


def head(url: str, **kwargs: Any) -> Deferred:
    """``request("HEAD", url, ...)``."""
    return request("HEAD", url, **kwargs)


__all__ = [
    "BodyTooLarge", "ConnectionPool", "DEFAULT_MAX_BODY", "HTTPError", "connection_pool", "default_pool", "request",
    "get", "post", "put", "delete", "head", "response_headers",
]
