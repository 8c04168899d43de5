"""The client's connections: limits, a queue, stats, per-phase timeouts, routing.

Twisted's ``HTTPConnectionPool`` keeps connections alive per host, closes an
idle one after ``cachedConnectionTimeout`` seconds (our ``idle_timeout``) and
keeps at most ``maxPersistentPerHost`` idle ones; it never limits how many
are *open*, has no queue and no stats. :class:`LimitedConnections` is that
pool plus what Aleph's pool has:

* at most ``max_per_host`` connections in use per host and ``max_connections``
  in total (a connection is in use from the moment a request asks for one
  until its response has been read, or it closed); a request over a limit
  waits in one queue, and waiting requests are served in the order they
  came, each as soon as its host has room;
* ``pool_timeout``: the longest a request waits in that queue
  (:class:`~twisted_aleph.http.errors.PoolTimeout`);
* ``connect_timeout``: the longest a new connection may take, a proxy's
  CONNECT included (:class:`~twisted_aleph.http.errors.ConnectTimeout`); it
  cancels the endpoint's attempt;
* ``read_timeout``: the longest the server may stay silent before the
  response headers (Twisted's ``TimeoutMixin`` on the connection, reset by
  every byte; paused while the request body is still being sent); the body
  has its own timer in the client's body readers, paused while a
  ``raw_stream`` consumer holds the body back (backpressure is not silence).
  Past it the connection is dropped with
  :class:`~twisted_aleph.http.errors.ReadTimeout`;
* a kept-alive connection the server closed just as it was reused: an
  idempotent request without a body (GET, HEAD, DELETE...) that got no
  response on it is sent once more on a new connection, Twisted's
  ``retryAutomatically`` rule, applied here so that the retry goes through
  the limits like any request (a timeout is never retried);
* :meth:`LimitedConnections.stats`: open, idle, in use, connecting and
  waiting, in total and per host.

It overrides ``HTTPConnectionPool._newConnection`` (to count connections
and give them the read timer), reads ``_connections``/``_timeouts`` (the
idle ones) and reuses ``_RetryingHTTP11ClientProtocol``: all stable since
Twisted 12.1.

:class:`PoolAgent` is the pool's ``IAgent``: per request it picks Twisted's
``ProxyAgent`` (plain HTTP through a proxy), or an ``Agent`` whose endpoints
go straight to the server or through a CONNECT tunnel
(:mod:`twisted_aleph.http.proxy`); both take their connections from the
:class:`LimitedConnections`, with that request's timeouts.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Deque, Dict, List, Optional, Set

from twisted.internet import error, protocol
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from twisted.web.client import (
    URI, Agent, BrowserLikePolicyForHTTPS, HTTP11ClientProtocol, HTTPConnectionPool, ProxyAgent,
    _RetryingHTTP11ClientProtocol,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IAgentEndpointFactory
from zope.interface import implementer

from twisted_aleph.http.errors import ConnectTimeout, PoolTimeout, ProxyError, ReadTimeout
from twisted_aleph.http.proxy import Proxy, ProxySettings, TunnelEndpoint

#: connections in use at once per host (Aleph's default is 8 too).
DEFAULT_MAX_PER_HOST = 8

#: connections in use at once in a pool, all hosts together (Aleph's default).
DEFAULT_MAX_CONNECTIONS = 1024

#: seconds an idle kept-alive connection stays open (Twisted's default).
DEFAULT_IDLE_TIMEOUT = 240.0


class Attempt:
    """One request's limits, and what went wrong at the connection level.

    ``connect_timeout``, ``pool_timeout``, ``read_timeout``: seconds, or None
    for no limit. ``proxy_error`` is set when a tunnel the request used was
    closed by the proxy before the server answered (reported instead of the
    bare lost connection).
    """

    __slots__ = ("connect_timeout", "pool_timeout", "read_timeout", "proxy_error")

    def __init__(self, connect_timeout: Optional[float] = None,
                 pool_timeout: Optional[float] = None,
                 read_timeout: Optional[float] = None) -> None:
        self.connect_timeout = connect_timeout
        self.pool_timeout = pool_timeout
        self.read_timeout = read_timeout
        self.proxy_error: Optional[ProxyError] = None

    def tunnel_closed(self, problem: ProxyError) -> None:
        if self.proxy_error is None:
            self.proxy_error = problem


class TrackedClientProtocol(HTTP11ClientProtocol, TimeoutMixin):
    """Twisted's HTTP/1.1 client connection, counted by its pool and with
    the pre-headers read timer (see the module doc)."""

    def __init__(self, quiescentCallback: Callable[[Any], None],
                 pool: "LimitedConnections", key: Any) -> None:
        super().__init__(quiescentCallback)
        self.pool = pool
        self.key = key
        self.read_timeout: Optional[float] = None  # set for each request by the pool
        self.requests_sent = 0
        # TimeoutMixin's timer, on the pool's clock
        self.callLater = pool.clock.callLater  # type: ignore[method-assign]
        self._timed_out: Optional[ReadTimeout] = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self.pool._opened(self)

    def request(self, request: Any) -> Deferred:
        self.requests_sent += 1
        d = super().request(request)
        if self.read_timeout:
            self.setTimeout(self.read_timeout)

            def headers_in(result: Any) -> Any:
                self.setTimeout(None)  # the body's reader times the body
                return result
            d.addBoth(headers_in)
        return d

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        super().dataReceived(data)

    def timeoutConnection(self) -> None:
        if self.state == "TRANSMITTING":
            # Still sending the request body: a server may rightly wait for all of it.
            self.setTimeout(self.read_timeout)
            return
        self._timed_out = ReadTimeout(
            f"no response from {self.pool.describe(self.key)} for {self.read_timeout} s",
            server=self.pool.describe(self.key), seconds=self.read_timeout)
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.setTimeout(None)
        if self._timed_out is not None:
            reason = Failure(self._timed_out)
        # Counted as gone before the request hears of it, so that a request
        # made from its errback finds the slot free.
        self.pool._closed(self)
        super().connectionLost(reason)


class _RetryOnce(_RetryingHTTP11ClientProtocol):
    """Twisted's retry of an idempotent request that a reused connection lost
    before any response; never after our read timeout fired."""

    def _shouldRetry(self, method: bytes, exception: Any, bodyProducer: Any) -> bool:
        if self._clientProtocol._timed_out is not None:
            return False
        return bool(super()._shouldRetry(method, exception, bodyProducer))


class _TrackedClientFactory(protocol.Factory):
    def __init__(self, pool: "LimitedConnections", key: Any,
                 quiescent: Callable[[Any], None]) -> None:
        self.pool = pool
        self.key = key
        self.quiescent = quiescent

    def buildProtocol(self, addr: Any) -> TrackedClientProtocol:
        return TrackedClientProtocol(self.quiescent, self.pool, self.key)


class _Waiter:
    __slots__ = ("key", "deferred")

    def __init__(self, key: Any) -> None:
        self.key = key
        self.deferred: Deferred = Deferred(self._cancel)

    def _cancel(self, d: Deferred) -> None:
        pass  # LimitedConnections drops cancelled waiters when it next looks


class LimitedConnections(HTTPConnectionPool):
    """Twisted's ``HTTPConnectionPool`` with limits, a queue and stats.

    ``clock``: the ``IReactorTime`` every timer runs on (idle expiry, the
    timeouts); tests pass a ``task.Clock``.
    """

    # Twisted's own retry would open the new connection outside the limits:
    # _connect applies the same rule itself (see _RetryOnce).
    retryAutomatically = False

    def __init__(self, clock: Any, *, persistent: bool = True,
                 max_per_host: int = DEFAULT_MAX_PER_HOST,
                 max_connections: Optional[int] = DEFAULT_MAX_CONNECTIONS,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> None:
        if max_per_host < 1:
            raise ValueError(f"max_per_host must be at least 1, not {max_per_host}")
        if max_connections is not None and max_connections < 1:
            raise ValueError(f"max_connections must be at least 1 (or None), not {max_connections}")
        super().__init__(clock, persistent=persistent)
        self.clock = clock
        self.max_per_host = max_per_host
        self.max_connections = max_connections
        self.maxPersistentPerHost = max_per_host
        self.cachedConnectionTimeout = idle_timeout  # type: ignore[assignment]  # float is fine
        self.labels: Dict[Any, str] = {}  # key -> what stats() calls it
        self._slots: Dict[Any, int] = {}  # per key: connecting or in use
        self._slots_total = 0
        self._in_use: Dict[TrackedClientProtocol, Any] = {}
        self._open: Dict[Any, Set[TrackedClientProtocol]] = {}
        self._waiting: Deque[_Waiter] = collections.deque()
        self._serve_call: Any = None

    # -- asked by Twisted's agents --------------------------------------------

    def getConnection(self, key: Any, endpoint: IStreamClientEndpoint) -> Deferred:
        """``HTTPConnectionPool.getConnection``, under the limits, no timeouts."""
        return self.get_connection(key, endpoint, Attempt())

    def get_connection(self, key: Any, endpoint: IStreamClientEndpoint,
                       attempt: Attempt) -> Deferred:
        """A connection for one request to ``key``, once the limits allow,
        within ``attempt``'s pool and connect timeouts."""
        waiter = _Waiter(key)
        self._waiting.append(waiter)
        self._serve()
        d = waiter.deferred
        if not d.called and attempt.pool_timeout is not None:
            limit = attempt.pool_timeout

            def waited_too_long(result: Any, _timeout: float) -> Any:
                if isinstance(result, Failure):
                    raise PoolTimeout(
                        f"no free connection to {self.describe(key)} within {limit} s"
                        f" ({self._limit_hit(key)})", server=self.describe(key), seconds=limit)
                return result
            d.addTimeout(limit, self.clock, onTimeoutCancel=waited_too_long)
        return d.addCallback(self._connect, key, endpoint, attempt)

    def _connect(self, _: None, key: Any, endpoint: IStreamClientEndpoint,
                 attempt: Attempt) -> Deferred:
        d = HTTPConnectionPool.getConnection(self, key, endpoint)
        if not d.called and attempt.connect_timeout is not None:
            limit = attempt.connect_timeout

            def connect_timed_out(result: Any, _timeout: float) -> Any:
                if isinstance(result, Failure):
                    raise ConnectTimeout(
                        f"connecting to {self.describe(key)} timed out after {limit} s",
                        server=self.describe(key), seconds=limit)
                return result
            d.addTimeout(limit, self.clock, onTimeoutCancel=connect_timed_out)

        def connected(proto: Any) -> Any:
            self._in_use[proto] = key
            proto.read_timeout = attempt.read_timeout
            if proto.requests_sent:
                # kept alive: the server may have closed it just now
                return _RetryOnce(proto, lambda: self.get_connection(key, endpoint, attempt))
            return proto

        def failed(failure: Failure) -> Failure:
            self._give_back(key)
            if failure.check(error.TimeoutError, error.TCPTimedOutError) \
                    and not failure.check(ConnectTimeout):
                # the endpoint's own limit (HostnameEndpoint: 30 s) or the kernel's
                raise ConnectTimeout(
                    f"connecting to {self.describe(key)} timed out"
                    f" ({failure.getErrorMessage()})", server=self.describe(key)) \
                    from failure.value
            return failure
        return d.addCallbacks(connected, failed)

    def _newConnection(self, key: Any, endpoint: IStreamClientEndpoint) -> Deferred:
        def quiescent(proto: Any) -> None:
            self._putConnection(key, proto)
            self._release(proto, later=True)
        return endpoint.connect(_TrackedClientFactory(self, key, quiescent))

    # -- bookkeeping -----------------------------------------------------------

    def _can_take(self, key: Any) -> bool:
        if self._slots.get(key, 0) >= self.max_per_host:
            return False
        return self.max_connections is None or self._slots_total < self.max_connections

    def _limit_hit(self, key: Any) -> str:
        if self._slots.get(key, 0) >= self.max_per_host:
            return f"max_per_host={self.max_per_host} in use"
        return f"max_connections={self.max_connections} in use"

    def _serve(self) -> None:
        """Start every waiting request whose host has room, oldest first."""
        self._serve_call = None
        ready: List[_Waiter] = []
        kept: Deque[_Waiter] = collections.deque()
        for waiter in self._waiting:
            if waiter.deferred.called:
                continue  # cancelled (pool_timeout, timeout, cancel())
            if self._can_take(waiter.key):
                self._slots[waiter.key] = self._slots.get(waiter.key, 0) + 1
                self._slots_total += 1
                ready.append(waiter)
            else:
                kept.append(waiter)
        self._waiting = kept
        for waiter in ready:
            waiter.deferred.callback(None)

    def _give_back(self, key: Any, later: bool = False) -> None:
        left = self._slots.get(key, 0) - 1
        if left > 0:
            self._slots[key] = left
        else:
            self._slots.pop(key, None)
        self._slots_total -= 1
        if self._waiting:
            if not later:
                self._serve()
            elif self._serve_call is None:
                # Called from a connection's quiescent callback: Twisted has not
                # finished with the response yet, so the connection must not be
                # handed to the next request until this call returns.
                self._serve_call = self.clock.callLater(0, self._serve)

    def _release(self, proto: Any, later: bool = False) -> None:
        key = self._in_use.pop(proto, None)
        if key is not None:
            self._give_back(key, later)

    def _opened(self, proto: TrackedClientProtocol) -> None:
        self._open.setdefault(proto.key, set()).add(proto)

    def _closed(self, proto: TrackedClientProtocol) -> None:
        key = proto.key
        open_ = self._open.get(key)
        if open_ is not None:
            open_.discard(proto)
            if not open_:
                del self._open[key]
        idle = self._connections.get(key)
        if idle and proto in idle:
            # An idle connection the server closed: forget it now, not at its expiry.
            idle.remove(proto)
            expiry = self._timeouts.pop(proto, None)
            if expiry is not None and expiry.active():
                expiry.cancel()
        self._release(proto)

    # -- what users see ---------------------------------------------------------

    def describe(self, key: Any) -> str:
        """``scheme://host:port`` (or ``proxy http://host:port``) for a pool key."""
        label = self.labels.get(key)
        if label is not None:
            return label
        try:
            scheme, host, port = key
            scheme = scheme.decode("ascii") if isinstance(scheme, bytes) else str(scheme)
            host = host.decode("idna") if isinstance(host, bytes) else str(host)
            if ":" in host:
                host = f"[{host}]"
            return f"{scheme}://{host}:{port}"
        except (TypeError, ValueError, UnicodeError):
            return repr(key)

    def stats(self) -> Dict[str, Any]:
        """``{"open", "idle", "in_use", "connecting", "waiting", "hosts": {host: {...}}}``.

        ``open``: connections established; ``idle``: kept alive, free;
        ``in_use``: carrying a request; ``connecting``: being opened for a
        request; ``waiting``: requests queued behind the limits.
        """
        hosts: Dict[str, Dict[str, int]] = {}

        def entry(key: Any) -> Dict[str, int]:
            name = self.describe(key)
            if name not in hosts:
                hosts[name] = {"open": 0, "idle": 0, "in_use": 0, "connecting": 0, "waiting": 0}
            return hosts[name]

        for key, protos in self._open.items():
            entry(key)["open"] += len(protos)
        for key, idle in self._connections.items():
            count = sum(1 for p in idle if p.state == "QUIESCENT")
            if count:
                entry(key)["idle"] += count
        for key in self._in_use.values():
            entry(key)["in_use"] += 1
        for key, slots in self._slots.items():
            in_use = sum(1 for k in self._in_use.values() if k == key)
            if slots > in_use:
                entry(key)["connecting"] += slots - in_use
        for waiter in self._waiting:
            if not waiter.deferred.called:
                entry(waiter.key)["waiting"] += 1
        totals = {name: sum(h[name] for h in hosts.values())
                  for name in ("open", "idle", "in_use", "connecting", "waiting")}
        return dict(totals, hosts=hosts)


class _RequestConnections:
    """What one request's ``Agent`` sees as its pool: the shared
    :class:`LimitedConnections`, asked with this request's timeouts."""

    def __init__(self, connections: LimitedConnections, attempt: Attempt) -> None:
        self._connections = connections
        self._attempt = attempt
        self.persistent = connections.persistent

    def getConnection(self, key: Any, endpoint: IStreamClientEndpoint) -> Deferred:
        return self._connections.get_connection(key, endpoint, self._attempt)


@implementer(IAgentEndpointFactory)
class DirectEndpoints:
    """Endpoints straight to a URL's server: TCP by ``HostnameEndpoint`` (all
    its addresses, happy eyeballs), TLS over it for https with the pool's
    ``IPolicyForHTTPS`` (what ``twisted.web.client.Agent`` does itself)."""

    def __init__(self, reactor: Any, tls: Any) -> None:
        self.reactor = reactor
        self.tls = tls if tls is not None else BrowserLikePolicyForHTTPS()

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        endpoint = HostnameEndpoint(self.reactor, uri.host, uri.port)
        if uri.scheme == b"https":
            return wrapClientTLS(self.tls.creatorForNetloc(uri.host, uri.port), endpoint)
        return endpoint


@implementer(IAgentEndpointFactory)
class _RoutedEndpoints:
    """Per request: straight to the server, or through a CONNECT tunnel."""

    def __init__(self, agent: "PoolAgent", attempt: Attempt) -> None:
        self.agent = agent
        self.attempt = attempt

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        host = uri.host.decode("idna")
        proxy = self.agent.proxies.proxy_for(uri.scheme.decode("ascii"), host, uri.port)
        if proxy is None or uri.scheme != b"https":
            return self.agent.endpoints.endpointForURI(uri)
        tunnel = TunnelEndpoint(proxy, host, uri.port, on_early_close=self.attempt.tunnel_closed)
        return wrapClientTLS(self.agent.tls.creatorForNetloc(uri.host, uri.port), tunnel)


@implementer(IAgent)
class PoolAgent:
    """The ``IAgent`` of a :func:`~twisted_aleph.http.connection_pool`:
    direct, through a proxy, or through a tunnel, over one
    :class:`LimitedConnections`. :meth:`bind` gives an agent that applies one
    request's :class:`Attempt` (its timeouts); :meth:`request` uses none."""

    def __init__(self, reactor: Any, connections: LimitedConnections, *, tls: Any = None,
                 proxies: Optional[ProxySettings] = None,
                 endpoints: Optional[IAgentEndpointFactory] = None) -> None:
        self.reactor = reactor
        self.connections = connections
        self.tls = tls if tls is not None else BrowserLikePolicyForHTTPS()
        self.proxies = proxies if proxies is not None else ProxySettings()
        self.endpoints = endpoints if endpoints is not None else DirectEndpoints(reactor, self.tls)
        for proxy in {id(p): p for p in self.proxies.proxies.values()}.values():
            connections.labels[("http-proxy", proxy.endpoint)] = f"proxy {proxy.url}"

    def bind(self, attempt: Attempt) -> IAgent:
        """An agent for one request, with ``attempt``'s timeouts."""
        return _BoundAgent(self, attempt)

    def request(self, method: bytes, uri: bytes, headers: Optional[Headers] = None,
                bodyProducer: Any = None) -> Deferred:
        return self.bind(Attempt()).request(method, uri, headers, bodyProducer)


@implementer(IAgent)
class _BoundAgent:
    def __init__(self, agent: PoolAgent, attempt: Attempt) -> None:
        self.agent = agent
        self.attempt = attempt
        self.connections = _RequestConnections(agent.connections, attempt)

    def request(self, method: bytes, uri: bytes, headers: Optional[Headers] = None,
                bodyProducer: Any = None) -> Deferred:
        parsed = URI.fromBytes(uri.strip())
        proxy: Optional[Proxy] = None
        if parsed.scheme == b"http":
            proxy = self.agent.proxies.proxy_for("http", parsed.host.decode("idna"), parsed.port)
        if proxy is not None:
            if proxy.authorization is not None:
                headers = headers.copy() if headers is not None else Headers()
                headers.setRawHeaders(b"Proxy-Authorization", [proxy.authorization])
            agent: IAgent = ProxyAgent(proxy.endpoint, self.agent.reactor, pool=self.connections)
        else:
            agent = Agent.usingEndpointFactory(
                self.agent.reactor, _RoutedEndpoints(self.agent, self.attempt),
                pool=self.connections)
        return agent.request(method, uri, headers, bodyProducer)


__all__ = [
    "DEFAULT_IDLE_TIMEOUT", "DEFAULT_MAX_CONNECTIONS", "DEFAULT_MAX_PER_HOST", "Attempt",
    "DirectEndpoints", "LimitedConnections", "PoolAgent", "TrackedClientProtocol",
]
