"""The HTTP client: Aleph's ``aleph.http/get`` and friends, on treq.

``get(url, query_params=..., headers=..., body=..., pool=...)`` returns a
Deferred of a response map ``{"status": int, "headers": {lower-case name:
value}, "body": ...}``. What the body is depends on the pool:

* default: the whole body, read into memory, as a readable binary file
  (``io.BytesIO``), so ``bytestreams.to_string(resp["body"])`` and
  ``to_line_seq`` are plain calls (Aleph gives an ``InputStream``);
* ``connection_pool(raw_stream=True)``: the Deferred fires at the headers
  and the body is a :class:`~twisted_aleph.stream.Stream` of ``bytes``
  chunks; a consumer that falls behind pauses the socket (backpressure),
  one that closes the stream early drops the connection.

A :class:`ConnectionPool` is one treq ``HTTPClient`` over one Twisted
``Agent`` and ``HTTPConnectionPool`` (keep-alive, ``max_per_host``
connections per host, TLS policy ``tls=``). Headers repeated in a response
are joined with ", ". A request ``body`` may be bytes, str (UTF-8), a file,
or any stream source (sent chunked, with backpressure).

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
from typing import Any, Dict, Mapping, Optional
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import UNKNOWN_LENGTH

from twisted_aleph import stream
from twisted_aleph.http.body import BodyReceiver, StreamBodyProducer
from twisted_aleph.tls import TLSError, tls_error_in

ResponseMap = Dict[str, Any]

#: connections kept open per host by a pool (Aleph's default is 8 too).
DEFAULT_MAX_PER_HOST = 8


class HTTPError(Exception):
    """An error status, when ``throw_exceptions=True``; ``.response`` is the map."""

    def __init__(self, response: ResponseMap) -> None:
        super().__init__(f"status {response['status']}")
        self.response = response


class ConnectionPool:
    """A treq client plus how response bodies are handed over.

    ``http_client`` is any treq ``HTTPClient`` (``testing.stub_pool`` builds
    one on an in-memory agent); normally :func:`connection_pool` makes it.
    """

    def __init__(self, http_client: Any, *, raw_stream: bool = False,
                 connections: Optional[HTTPConnectionPool] = None) -> None:
        self.http_client = http_client
        self.raw_stream = raw_stream
        self.connections = connections

    def close(self) -> Deferred:
        """Close the kept-alive connections; Deferred fires once they are."""
        if self.connections is None:
            from twisted.internet.defer import succeed
            return succeed(None)
        return self.connections.closeCachedConnections()


def connection_pool(*, raw_stream: bool = False, tls: Any = None, persistent: bool = True,
                    max_per_host: int = DEFAULT_MAX_PER_HOST,
                    connect_timeout: Optional[float] = None,
                    reactor: Any = None) -> ConnectionPool:
    """A pool of keep-alive connections (Aleph's ``connection-pool``).

    ``tls``: a client TLS policy for https URLs (``twisted_aleph.tls.client_context``
    or any ``IPolicyForHTTPS``); default: the platform's trust store.
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
                          connections=connections)


_default_pool: Optional[ConnectionPool] = None


def default_pool() -> ConnectionPool:
    """The shared pool used when ``pool=`` is not given (made on first use)."""
    global _default_pool
    if _default_pool is None:
        _default_pool = connection_pool()
    return _default_pool


def _request_data(body: Any) -> Any:
    if body is None or isinstance(body, (bytes, dict, list, tuple)):
        return body
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
            throw_exceptions: bool = False, timeout: Optional[float] = None) -> Deferred:
    """Deferred of the response map for ``method url`` (see the module doc)."""
    if pool is None:
        pool = default_pool()
    params = None
    if query_params:
        params = {str(k): [str(v) for v in vs] if isinstance(vs, (list, tuple)) else str(vs)
                  for k, vs in query_params.items()}
    d = pool.http_client.request(
        method, url, params=params, headers=dict(headers) if headers else None,
        data=_request_data(body), allow_redirects=follow_redirects,
        unbuffered=True, timeout=timeout)
    if pool.raw_stream:
        d.addCallback(_streamed_response)
    else:
        d.addCallback(_buffered_response)
    if throw_exceptions:
        d.addCallback(_raise_for_status)
    d.addErrback(_name_tls_failure, url)
    return d


def _name_tls_failure(failure: Failure, url: str) -> Failure:
    """Twisted reports a failed handshake as ``ResponseNeverReceived`` (or
    ``ResponseFailed``) around an OpenSSL error: say it was TLS."""
    reason = tls_error_in(failure)
    if reason is None or isinstance(reason, TLSError):
        return failure
    parts = urlsplit(url)
    server = parts.netloc.rpartition("@")[2]  # never a user:password in messages
    raise TLSError(f"{parts.scheme}://{server}", reason) from failure.value


def _response_map(response: Any, body: Any) -> ResponseMap:
    return {"status": response.code, "headers": response_headers(response), "body": body}


def _buffered_response(response: Any) -> Deferred:
    import treq

    return treq.content(response).addCallback(
        lambda data: _response_map(response, io.BytesIO(data)))


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
    "ConnectionPool", "HTTPError", "connection_pool", "default_pool", "request",
    "get", "post", "put", "delete", "head", "response_headers",
]
