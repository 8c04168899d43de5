"""The HTTP client: Aleph's ``aleph.http/get`` and friends, on treq and Twisted's agents.

``get(url, query_params=..., headers=..., body=..., pool=...)`` returns a
Deferred of a response map ``{"status": int, "headers": {lower-case name:
value}, "body": ..., "url": final URL, "trace_redirects": [URLs followed]}``.
What the body is depends on the pool and ``as_``:

* default: the whole body, read into memory, as a readable binary file
  (``io.BytesIO``), so ``bytestreams.to_string(resp["body"])`` and
  ``to_line_seq`` are plain calls (Aleph gives an ``InputStream``). At
  most ``max_body`` bytes (64 MiB unless the pool or request says
  otherwise; None: unbounded): past that the Deferred fails with
  :class:`BodyTooLarge` and the connection is dropped;
* ``as_="bytes" | "text" | "json" | "edn"`` (Aleph's ``:as``): the body read
  as above, then decoded (:mod:`twisted_aleph.http.content`); as in Aleph,
  only a status below 400 is decoded, an error keeps the file. A body that
  does not decode fails with :class:`BadResponseBody`;
* ``connection_pool(raw_stream=True)`` (and no ``as_``): the Deferred fires
  at the headers and the body is a :class:`~twisted_aleph.stream.Stream` of
  ``bytes`` chunks; a consumer that falls behind pauses the socket
  (backpressure), one that closes the stream early drops the connection.

Request bodies: ``body`` may be bytes, str (UTF-8), a file, a list of
bytes/str chunks, or any stream source (sent chunked, with backpressure);
a dict, or a list of (name, value) pairs, is sent as form fields
(``application/x-www-form-urlencoded``, as treq's ``data=``). ``json=``,
``files=`` (multipart, files streamed) and ``auth=(user, password)`` (Basic)
are treq's; ``edn=`` sends EDN. A stream body is closed (and through it its
upstream) if the request fails before or while sending it, e.g. when the
connection is refused: a feeder never blocks on a body nobody will read.

Where each piece comes from: treq's ``HTTPClient.request`` builds the
request (query, headers, ``json=``/``files=``/``data=``, ``auth=``, gzip);
below it, Twisted's ``CookieAgent`` over the pool's jar
(:mod:`.cookies`), under Twisted's ``RedirectAgent`` (or
``BrowserLikeRedirectAgent``), over the pool's agent (:mod:`.pool`:
``HTTPConnectionPool`` with limits, ``ProxyAgent``, the CONNECT tunnel of
:mod:`.proxy`). treq's own redirect and cookie layers are not used, because
treq fixes the redirect limit at Twisted's 20 and keeps its cookie layer
under the redirects but over the pool; this module stacks the same Twisted
agents itself, in treq's order, with ``max_redirects``.

Redirects: followed for GET and HEAD (and 303 See Other for any method, as
GET), at most ``max_redirects`` (default 10; past it
:class:`TooManyRedirects`); a POST's 301/302/307/308 is returned as it is,
unless ``force_redirects=True`` (then 301/302/303 are followed as GET;
307/308 are still returned, Twisted does not send a body twice). Cookies,
``Authorization`` and ``Proxy-Authorization`` are not carried to another
origin (Twisted's rule).

Timeouts (seconds; the pool gives defaults, a request may override them):
``connect_timeout``, ``pool_timeout``, ``read_timeout`` (see :mod:`.pool`)
and ``timeout``, the whole request: in a buffered pool that is connecting,
sending, the headers *and* reading the body; in a ``raw_stream=True`` pool
the Deferred fires at the headers, so, as with treq's ``timeout``, only the
time to the headers is bounded (``read_timeout`` still watches the body).
Each fails with its :class:`~twisted_aleph.http.errors.TimeoutError`
subclass (``.phase``), all of them Twisted's ``defer.TimeoutError``; past
``timeout`` the request is cancelled and its connection dropped (never
reused). Timers run on the pool's reactor (a ``task.Clock`` in tests).

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
import warnings
from http.cookiejar import CookieJar
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from treq.cookies import IndexableCookieJar
from twisted.internet import protocol
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from twisted.web import error as web_error
from twisted.web.client import (
    BrowserLikeRedirectAgent, CookieAgent, FileBodyProducer, RedirectAgent, ResponseDone,
    ResponseFailed,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH, IAgent, IBodyProducer

from twisted_aleph import stream
from twisted_aleph.deferred import find_cause
from twisted_aleph.http.body import BodyReceiver, StreamBodyProducer, to_chunk
from twisted_aleph.http.content import (
    BODY_DECODERS, EDN_CONTENT_TYPE, decode_body, edn_body, multipart_files,
)
from twisted_aleph.http.cookies import CookieStore, request_cookies
from twisted_aleph.http.errors import (
    BadResponseBody, BodyTooLarge, ConnectTimeout, HTTPError, PoolTimeout, ProxyError,
    ReadTimeout, RequestTimeout, TimeoutError, TooManyRedirects,
)
from twisted_aleph.http.pool import (
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PER_HOST, Attempt,
    LimitedConnections, PoolAgent,
)
from twisted_aleph.http.proxy import ProxySettings
from twisted_aleph.tls import TLSError, tls_error_in

log = Logger()

ResponseMap = Dict[str, Any]

#: the largest response body a buffered pool reads into memory: 64 MiB.
#: treq's own ``content()`` has no cap, but the default pool is shared by
#: the whole process and a server (or a redirect) should not be able to
#: exhaust its memory; bigger bodies belong in ``raw_stream=True`` pools,
#: whose memory backpressure bounds. ``max_body=None`` restores treq's way.
DEFAULT_MAX_BODY = 64 * 1024 * 1024

#: redirects one request follows before :class:`TooManyRedirects` (Aleph and
#: clj-http allow 20; real sites need two or three, and a loop ends sooner).
DEFAULT_MAX_REDIRECTS = 10

_POOL: Any = object()  # a per-request setting not given: the pool's
_UNSET: Any = object()  # json=/edn= not given (None is a value to send)



class _NoCookies(IndexableCookieJar):
    """treq puts a CookieAgent of its own above the agent it is given; ours
    sits below the redirects (see the module doc), so treq's gets this jar,
    which sends nothing and reads nothing."""

    def add_cookie_header(self, request: Any) -> None:
        pass

    def extract_cookies(self, response: Any, request: Any) -> None:
        pass


_NO_COOKIES = _NoCookies()


def default_body_producer(data: Any) -> IBodyProducer:
    """A request body as an ``IBodyProducer``: bytes and files through
    Twisted's ``FileBodyProducer`` (64 KiB reads, as treq does), producers as
    they are. What treq's ``data_to_body_producer`` does, for any readable file."""
    if IBodyProducer.providedBy(data):
        return data
    if isinstance(data, bytes):
        return FileBodyProducer(io.BytesIO(data))
    if hasattr(data, "read"):
        return FileBodyProducer(data)
    return IBodyProducer(data)


class ConnectionPool:
    """Connections, cookies, and how response bodies are handed over.

    ``agent``: the ``IAgent`` requests go through; normally
    :func:`connection_pool` makes a :class:`~twisted_aleph.http.pool.PoolAgent`
    (``testing.stub_pool`` an in-memory one). ``raw_stream``: hand bodies over
    as Streams. ``max_body``: the cap on a buffered body (see
    :data:`DEFAULT_MAX_BODY`). ``reactor``: the clock every timeout runs on
    (None: the global reactor). ``cookies``: the jar (a new
    :class:`~twisted_aleph.http.cookies.CookieStore` by default).
    ``body_producer``: turns a request body into an ``IBodyProducer``.
    ``max_redirects``, ``connect_timeout``, ``pool_timeout``,
    ``read_timeout``: defaults for the pool's requests.

    A treq ``HTTPClient`` as first argument or ``http_client=`` (this class's
    earlier signature) still works, with a ``DeprecationWarning``: its agent
    is used.
    """

    def __init__(self, agent: Any = None, *, raw_stream: bool = False,
                 connections: Optional[LimitedConnections] = None,
                 max_body: Optional[int] = DEFAULT_MAX_BODY,
                 reactor: Any = None, cookies: Optional[CookieJar] = None,
                 body_producer: Optional[Callable[[Any], Any]] = None,
                 max_redirects: int = DEFAULT_MAX_REDIRECTS,
                 connect_timeout: Optional[float] = None,
                 pool_timeout: Optional[float] = None,
                 read_timeout: Optional[float] = None, http_client: Any = None) -> None:
        import treq.client
        if http_client is not None and agent is None:
            agent = http_client
        if isinstance(agent, treq.client.HTTPClient):
            warnings.warn(
                "ConnectionPool(http_client) is deprecated: pass the agent"
                " (ConnectionPool(agent, ...)), or use http.connection_pool()",
                DeprecationWarning, stacklevel=2)
            if body_producer is None:
                body_producer = agent._data_to_body_producer
            agent = agent._agent
        if agent is None:
            raise TypeError("ConnectionPool needs an agent (or use http.connection_pool())")
        self.agent = agent
        self.raw_stream = raw_stream
        self.connections = connections
        self.max_body = max_body
        self.reactor = reactor
        self.cookies: CookieJar = cookies if cookies is not None else CookieStore()
        self.body_producer = body_producer or default_body_producer
        self.max_redirects = max_redirects
        self.connect_timeout = connect_timeout
        self.pool_timeout = pool_timeout
        self.read_timeout = read_timeout

    @property
    def http_client(self) -> Any:
        """A treq ``HTTPClient`` over this pool's agent and cookies, for code
        that wants treq's API (treq's redirects and cookie handling apply)."""
        import treq.client
        jar: Any = self.cookies  # treq's annotation wants its own jar class; any CookieJar works
        return treq.client.HTTPClient(self.agent, cookiejar=jar,
                                      data_to_body_producer=self.body_producer)

    @property
    def clock(self) -> Any:
        if self.reactor is not None:
            return self.reactor
        from twisted.internet import reactor
        return reactor

    def stats(self) -> Dict[str, Any]:
        """Connections open, idle, in use, connecting, and requests waiting,
        in total and per host (see ``LimitedConnections.stats``)."""
        if self.connections is None:
            return {"open": 0, "idle": 0, "in_use": 0, "connecting": 0, "waiting": 0,
                    "hosts": {}}
        return self.connections.stats()

    def close(self) -> Deferred:
        """Close the kept-alive connections; Deferred fires once they are."""
        if self.connections is None:
            return succeed(None)
        return self.connections.closeCachedConnections()


def connection_pool(*, raw_stream: bool = False, tls: Any = None, persistent: bool = True,
                    max_per_host: int = DEFAULT_MAX_PER_HOST,
                    max_connections: Optional[int] = DEFAULT_MAX_CONNECTIONS,
                    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                    connect_timeout: Optional[float] = None,
                    pool_timeout: Optional[float] = None,
                    read_timeout: Optional[float] = None,
                    max_body: Optional[int] = DEFAULT_MAX_BODY,
                    max_redirects: int = DEFAULT_MAX_REDIRECTS,
                    proxy: Any = None, proxy_auth: Optional[Tuple[Any, Any]] = None,
                    no_proxy: Any = None, trust_env: bool = False,
                    reactor: Any = None, clock: Any = None,
                    endpoints: Any = None) -> ConnectionPool:
    """A pool of keep-alive connections (Aleph's ``connection-pool``).

    ``tls``: a client TLS policy for https URLs (``twisted_aleph.tls.client_context``
    or any ``IPolicyForHTTPS``); default: the platform's trust store.
    ``max_per_host`` / ``max_connections``: connections in use at once to one
    host / in all; more requests wait, in order, at most ``pool_timeout``
    seconds. ``idle_timeout``: seconds a kept-alive connection may stay idle.
    ``connect_timeout``, ``read_timeout``: per phase (see :mod:`.pool`).
    ``max_body``: the most bytes a buffered response body may have (default
    64 MiB, None: unbounded); past it the request fails with
    :class:`BodyTooLarge`. A ``raw_stream`` pool ignores it (backpressure).
    ``max_redirects``: redirects one request follows (default 10).
    ``proxy`` (``"http://[user:password@]host:port"``, or ``{"http": ...,
    "https": ...}``), ``proxy_auth=(user, password)``, ``no_proxy`` (hosts
    reached directly), ``trust_env`` (read ``HTTP_PROXY``/``HTTPS_PROXY``/
    ``NO_PROXY``): see :mod:`.proxy`. ``reactor`` connects, ``clock`` (default:
    the reactor) runs the timers; ``endpoints``: an ``IAgentEndpointFactory``
    for direct connections (tests use in-memory ones).
    """
    if reactor is None:
        from twisted.internet import reactor  # type: ignore[no-redef]
    if clock is None:
        clock = reactor
    connections = LimitedConnections(clock, persistent=persistent, max_per_host=max_per_host,
                                     max_connections=max_connections, idle_timeout=idle_timeout)
    proxies = ProxySettings(proxy, proxy_auth=proxy_auth, no_proxy=no_proxy,
                            trust_env=trust_env, reactor=reactor)
    agent = PoolAgent(reactor, connections, tls=tls, proxies=proxies, endpoints=endpoints)
    return ConnectionPool(agent, raw_stream=raw_stream, connections=connections,
                          max_body=max_body, reactor=clock, max_redirects=max_redirects,
                          connect_timeout=connect_timeout, pool_timeout=pool_timeout,
                          read_timeout=read_timeout)


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


class _RedirectAgent(RedirectAgent):
    """Twisted's ``RedirectAgent``, resolving each ``Location`` against the
    URL that sent it (Twisted resolves every hop against the first URL, so a
    relative ``Location`` after a redirect to another host went back to the
    first host)."""

    def _handleResponse(self, response: Any, method: bytes, uri: bytes, headers: Any,
                        redirectCount: int) -> Any:
        return super()._handleResponse(response, method, _hop_uri(response, uri), headers,
                                       redirectCount)


class _BrowserLikeRedirectAgent(BrowserLikeRedirectAgent):
    """Twisted's ``BrowserLikeRedirectAgent``, with :class:`_RedirectAgent`'s fix."""

    def _handleResponse(self, response: Any, method: bytes, uri: bytes, headers: Any,
                        redirectCount: int) -> Any:
        return super()._handleResponse(response, method, _hop_uri(response, uri), headers,
                                       redirectCount)


def _hop_uri(response: Any, uri: bytes) -> bytes:
    absolute = getattr(getattr(response, "request", None), "absoluteURI", None)
    return absolute if isinstance(absolute, bytes) else uri


def request(method: str, url: str, *, query_params: Optional[Mapping[str, Any]] = None,
            headers: Optional[Mapping[str, Any]] = None, body: Any = None,
            json: Any = _UNSET, edn: Any = _UNSET, files: Any = None,
            auth: Optional[Tuple[Any, Any]] = None, cookies: Any = None,
            as_: Optional[str] = None, pool: Optional[ConnectionPool] = None,
            follow_redirects: bool = True, force_redirects: bool = False,
            max_redirects: Any = _POOL, throw_exceptions: bool = False,
            timeout: Optional[float] = None, connect_timeout: Any = _POOL,
            pool_timeout: Any = _POOL, read_timeout: Any = _POOL,
            max_body: Optional[int] = _POOL) -> Deferred:
    """Deferred of the response map for ``method url`` (see the module doc).

    ``json``/``edn``/``files``/``body``: the request body (one of them);
    ``auth``: ``(user, password)`` for Basic authentication; ``cookies``: a
    dict (or ``CookieJar``) sent with this request besides the pool's jar,
    and not stored in it. ``as_``: decode the response body. ``timeout``:
    seconds for the whole request (the body too, unless streamed);
    ``connect_timeout``, ``pool_timeout``, ``read_timeout``, ``max_redirects``,
    ``max_body``: override the pool's.
    """
    if as_ is not None and as_ not in BODY_DECODERS:
        raise ValueError(f"as_ must be one of {BODY_DECODERS} or None, not {as_!r}")
    if pool is None:
        pool = default_pool()
    given = [name for name, value in (("body", body), ("files", files)) if value is not None]
    given += [name for name, value in (("json", json), ("edn", edn)) if value is not _UNSET]
    if len(given) > 1 and given != ["body", "files"]:
        raise TypeError(f"give one request body, not {' and '.join(given)}")
    params = None
    if query_params:
        params = {str(k): [str(v) for v in vs] if isinstance(vs, (list, tuple)) else str(vs)
                  for k, vs in query_params.items()}
    request_headers: Dict[Any, Any] = dict(headers) if headers else {}
    data = _request_data(body)
    if edn is not _UNSET:
        data = edn_body(edn)
        if not any(k.lower() == "content-type" for k in map(str, request_headers)):
            request_headers["Content-Type"] = EDN_CONTENT_TYPE
    opened: List[Any] = []
    fields: Any = None
    if files is not None:
        fields, opened = multipart_files(files, pool.body_producer)

    attempt = Attempt(
        pool.connect_timeout if connect_timeout is _POOL else connect_timeout,
        pool.pool_timeout if pool_timeout is _POOL else pool_timeout,
        pool.read_timeout if read_timeout is _POOL else read_timeout)
    redirects = pool.max_redirects if max_redirects is _POOL else max_redirects
    if not isinstance(redirects, int) or isinstance(redirects, bool) or redirects < 0:
        raise ValueError(f"max_redirects must be a whole number >= 0, not {redirects!r}")
    jar = request_cookies(pool.cookies, cookies, url)
    base = pool.agent.bind(attempt) if isinstance(pool.agent, PoolAgent) else pool.agent
    agent: IAgent = CookieAgent(base, jar)
    if follow_redirects:
        redirect_agent = _BrowserLikeRedirectAgent if force_redirects else _RedirectAgent
        agent = redirect_agent(agent, redirectLimit=redirects)

    import treq.client
    client = treq.client.HTTPClient(agent, cookiejar=_NO_COOKIES,
                                    data_to_body_producer=pool.body_producer)
    kwargs: Dict[str, Any] = {}
    if json is not _UNSET:
        kwargs["json"] = json
    try:
        # No timeout= for treq: its timer stops at the headers (see _bound).
        d = client.request(
            method, url, params=params, headers=request_headers or None, data=data,
            files=fields, auth=auth, allow_redirects=False, unbuffered=True, **kwargs)
    except BaseException:
        if isinstance(data, StreamBodyProducer):
            data.stopProducing()
        for f in opened:
            f.close()
        raise
    if isinstance(data, StreamBodyProducer):
        # Agent only stops a body it started: one never sent (connection
        # refused, cancelled while connecting) would leave the stream open.
        d.addErrback(_stop_body, data)
    d.addErrback(_redirect_not_followed, url, redirects)
    clock = pool.clock
    if pool.raw_stream and as_ is None:
        d.addCallback(_streamed_response, url, attempt.read_timeout, clock)
    else:
        cap = pool.max_body if max_body is _POOL else max_body
        d.addCallback(_buffered_response, cap, url, attempt.read_timeout, clock)
        if as_ is not None and method.upper() != "HEAD":
            d.addCallback(_decode, as_, url)
    if throw_exceptions:
        d.addCallback(_raise_for_status)
    d.addErrback(_name_failure, url, attempt)
    if opened:
        d.addBoth(_close_files, opened)
    if timeout:  # as treq: 0 or None is no timeout
        _bound(d, timeout, clock, url)
    return d


def _stop_body(failure: Failure, producer: StreamBodyProducer) -> Failure:
    """The request failed: close its stream body (a no-op once it ended)."""
    producer.stopProducing()
    return failure


def _close_files(result: Any, opened: List[Any]) -> Any:
    for f in opened:
        f.close()
    return result


def _redirect_not_followed(failure: Failure, url: str, max_redirects: int) -> Any:
    """Twisted's redirect agents fail where Aleph answers with the redirect
    itself (a POST's 301/302/307/308, a redirect without ``Location``); and
    a loop fails as :class:`TooManyRedirects`."""
    failure.trap(ResponseFailed)
    reasons = getattr(failure.value, "reasons", None) or []
    response = getattr(failure.value, "response", None)
    if response is None or len(reasons) != 1:
        return failure
    reason = reasons[0]
    if reason.check(web_error.PageRedirect, web_error.RedirectWithNoLocation):
        return response
    if reason.check(web_error.InfiniteRedirection):
        trace = _trace(response)
        raise TooManyRedirects(trace[-1] if trace else url, max_redirects, trace[1:]) \
            from failure.value
    return failure


def _trace(response: Any) -> List[str]:
    """URLs of the requests that led to ``response``, first to last."""
    urls: List[str] = []
    seen = 0
    while response is not None and seen < 1000:
        absolute = getattr(getattr(response, "request", None), "absoluteURI", None)
        if isinstance(absolute, bytes):
            urls.append(absolute.decode("ascii", "replace"))
        response = getattr(response, "previousResponse", None)
        seen += 1
    urls.reverse()
    return urls


def _bound(d: Deferred, timeout: float, clock: Any, url: str) -> None:
    """Cancel ``d`` unless it fires within ``timeout`` seconds (Twisted's
    ``addTimeout``); it then fails with :class:`RequestTimeout` naming the
    server. Cancelling reaches whatever ``d`` waits on: the Agent (which
    aborts the connection), the pool's queue, or the body being read (which
    hangs up, see :class:`_CollectBody`)."""

    def timed_out(result: Any, _timeout: float) -> Any:
        if isinstance(result, Failure):
            raise RequestTimeout(
                f"request to {_server_of(url)} timed out after {timeout} s",
                server=_server_of(url), seconds=timeout) from result.value
        return result

    d.addTimeout(timeout, clock, onTimeoutCancel=timed_out)


_OWN_ERRORS = (HTTPError, BodyTooLarge, BadResponseBody, TooManyRedirects, TimeoutError,
               ProxyError, TLSError)


def _name_failure(failure: Failure, url: str, attempt: Attempt) -> Failure:
    """Say what went wrong: a proxy that dropped its tunnel, a timeout (by
    phase), a TLS failure; Twisted wraps these in ``ResponseNeverReceived``
    or ``ResponseFailed``."""
    if isinstance(failure.value, _OWN_ERRORS):
        return failure
    if attempt.proxy_error is not None:
        raise attempt.proxy_error from failure.value
    found = find_cause(failure, lambda e: isinstance(e, (TimeoutError, ProxyError)))
    if found is not None:
        raise found from failure.value
    return _name_tls_failure(failure, url)


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


def _response_map(response: Any, body: Any, url: str) -> ResponseMap:
    trace = _trace(response)
    return {"status": response.code, "headers": response_headers(response), "body": body,
            "url": trace[-1] if trace else url, "trace_redirects": trace[1:]}


class _CollectBody(protocol.Protocol, TimeoutMixin):
    """Feed a response body to ``collector``, as ``treq.collect`` does, but
    cancelling :attr:`finished` hangs up (treq's Deferred has no canceller:
    cancelled, it would leave the connection open and reading). A collector
    that raises also hangs up, and fails :attr:`finished` with its error.
    With ``read_timeout``, a server silent that long is hung up on and
    :attr:`finished` fails with :class:`ReadTimeout` (Twisted's ``TimeoutMixin``)."""

    def __init__(self, collector: Callable[[bytes], None], read_timeout: Optional[float] = None,
                 clock: Any = None, server: str = "the server") -> None:
        self.collector = collector
        self.finished: Deferred = Deferred(self._cancel)
        self._done = False
        self.read_timeout = read_timeout
        self.server = server
        if clock is not None:
            self.callLater = clock.callLater  # type: ignore[method-assign]

    def connectionMade(self) -> None:
        if self.read_timeout:
            self.setTimeout(self.read_timeout)

    def dataReceived(self, data: bytes) -> None:
        if self._done:
            return
        self.resetTimeout()
        try:
            self.collector(data)
        except Exception:
            self._fail(Failure())

    def timeoutConnection(self) -> None:
        if not self._done:
            self._fail(Failure(ReadTimeout(
                f"no byte of the response body from {self.server} for {self.read_timeout} s",
                server=self.server, seconds=self.read_timeout)))

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.setTimeout(None)
        if self._done:
            return
        self._done = True
        if reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(None)
        else:
            self.finished.errback(reason)

    def _fail(self, failure: Failure) -> None:
        self._done = True
        self.setTimeout(None)
        self._hang_up()
        self.finished.errback(failure)

    def _cancel(self, d: Deferred) -> None:
        # Deferred errbacks CancelledError itself once this returns.
        self._done = True
        self.setTimeout(None)
        self._hang_up()

    def _hang_up(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()


class _DropBody(protocol.Protocol):
    """Takes a response body only to hang up at once (it is too large)."""

    def connectionMade(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()


def _buffered_response(response: Any, max_body: Optional[int], url: str,
                       read_timeout: Optional[float] = None, clock: Any = None) -> Deferred:
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
        receiver = _CollectBody(collect, read_timeout, clock, _server_of(url))
        response.deliverBody(receiver)
        finished = receiver.finished
    return finished.addCallback(
        lambda _: _response_map(response, io.BytesIO(b"".join(parts)), url))


class _TimedBodyReceiver(BodyReceiver, TimeoutMixin):
    """:class:`~twisted_aleph.http.body.BodyReceiver` with a read timeout
    that only runs while the stream takes what comes (a consumer holding
    the body back is backpressure, not a silent server). Past it the
    connection is dropped and the stream closed early (logged)."""

    def __init__(self, sink: Any, read_timeout: float, clock: Any, server: str) -> None:
        super().__init__(sink)
        self.read_timeout = read_timeout
        self.server = server
        self.callLater = clock.callLater  # type: ignore[method-assign]

    def connectionMade(self) -> None:
        super().connectionMade()
        self.setTimeout(self.read_timeout)

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        # BodyReceiver keeps the offer still pending in _last: paused until it is taken.
        self.setTimeout(None if self._last is not None else self.read_timeout)

    def _accepted(self, ok: bool, offered: Deferred) -> None:
        super()._accepted(ok, offered)
        if self._last is None and not self._done:
            self.setTimeout(self.read_timeout)

    def timeoutConnection(self) -> None:
        if self._done:
            return
        self._done = True
        log.warn("response body from {server} stopped: no byte for {seconds} s",
                 server=self.server, seconds=self.read_timeout)
        self.transport.stopProducing()
        self.sink.close()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.setTimeout(None)
        super().connectionLost(reason)


def _streamed_response(response: Any, url: str, read_timeout: Optional[float] = None,
                       clock: Any = None) -> ResponseMap:
    body = stream.Stream(description="http response body")
    if read_timeout:
        response.deliverBody(_TimedBodyReceiver(body, read_timeout, clock, _server_of(url)))
    else:
        response.deliverBody(BodyReceiver(body))
    return _response_map(response, body, url)


def _decode(response: ResponseMap, as_: str, url: str) -> ResponseMap:
    """Aleph's ``:as`` coercion, for statuses below 400 (an error keeps its file)."""
    if response["status"] >= 400:
        return response
    raw = dict(response, body=response["body"].getvalue())
    raw["body"] = decode_body(as_, raw, _server_of(url))
    return raw


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
    "BadResponseBody", "BodyTooLarge", "ConnectTimeout", "ConnectionPool", "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_REDIRECTS", "HTTPError", "PoolTimeout", "ProxyError", "ReadTimeout",
    "RequestTimeout", "TimeoutError", "TooManyRedirects", "connection_pool",
    "default_body_producer", "default_pool", "request", "get", "post", "put", "delete", "head",
    "response_headers",
]
