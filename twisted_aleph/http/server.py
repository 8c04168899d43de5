"""The HTTP server: a Twisted ``Site`` serving a handler, and its shutdown.

:func:`start_server` serves ``handler_resource(handler)`` (Klein routes
answering Ring-style response maps: :mod:`.resource` dispatches and writes
the error pages, :mod:`.ring` turns a response map into bytes) through an
:class:`AlephSite`, which records each connection on the
:class:`HTTPServer` it returns.

The site carries the server's :class:`~.options.ServerOptions` (body caps,
timeouts, header limits, pipelining, ``max_connections``, compression) and
builds the pieces that apply them: an :class:`~.channel.AlephChannel` per
HTTP/1.1 connection (inside twisted.web's protocol switch, which HTTP/2
will use) and an :class:`~.server_request.AlephRequest` per request. It counts the
connections it serves (:meth:`AlephSite.admit`) and logs peers' bad input
through one :class:`~twisted_aleph.peerlog.PeerLog` (``site.peer_log``).

Shutdown: :meth:`HTTPServer.shutdown` (what ``HTTPServerService`` does when
twistd stops it, on SIGTERM) stops accepting, closes idle keep-alive
connections, lets requests in flight finish (their connections then close,
``Connection: close``), sends open WebSockets a close frame 1001, and cuts
whatever is still open after the timeout.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.http import _GenericHTTPChannelProtocol
from twisted.web.resource import IResource
from twisted.web.server import Site

from twisted_aleph.http import resource as _resource, ring as _ring
from twisted_aleph.http.channel import AlephChannel
from twisted_aleph.http.options import BodyOptions, RouteOptions, ServerOptions
from twisted_aleph.http.server_request import AlephRequest
from twisted_aleph.peerlog import PeerLog
from twisted_aleph.server import Server, ServerService, adopt, family_of, load_object

log = Logger()

Handler = Union[Klein, Callable[[Any], Any]]

#: listen backlog (as Netty's default, the usual somaxconn).
DEFAULT_BACKLOG = 1024

#: Names this module had before they moved to :mod:`.ring` and
#: :mod:`.resource`: still importable from here, with a DeprecationWarning,
#: for one release (``twisted_aleph.http`` has them all, without warning).
_MOVED = {
    "BadRequest": _ring, "decode_params": _ring, "respond": _ring, "adapt_result": _ring,
    "RingResource": _resource, "handler_resource": _resource, "NOT_FOUND_BODY": _resource,
}


def __getattr__(name: str) -> Any:
    """A name in ``_MOVED``, from its new home, with a DeprecationWarning (PEP 562);
    ``load_handler`` is now :func:`twisted_aleph.server.load_object` (it is not HTTP's)."""
    if name == "load_handler":
        warnings.warn(f"{__name__}.load_handler is deprecated: use "
                      "twisted_aleph.server.load_object", DeprecationWarning, stacklevel=2)
        return load_object
    home = _MOVED.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"{__name__}.{name} is deprecated: import it from {home.__name__} "
                  "or twisted_aleph.http", DeprecationWarning, stacklevel=2)
    return getattr(home, name)


# -- listening -------------------------------------------------------------------

#: seconds a graceful shutdown gives in-flight responses and WebSocket close
#: handshakes before cutting what is left (the plugins' ``--shutdown-timeout``).
DEFAULT_SHUTDOWN_TIMEOUT = 10.0


def _aleph_channel(site: "AlephSite") -> Any:
    """The protocol of one connection: twisted.web's switch between HTTP/1.1
    and HTTP/2 (by ALPN), starting on an :class:`~.channel.AlephChannel`
    (twisted.web hard-codes its own ``HTTPChannel`` there; the switch itself
    is private to twisted.web, and kept so that HTTP/2 can take over)."""
    return _GenericHTTPChannelProtocol(AlephChannel())


class AlephSite(Site):
    """A Site that applies :class:`~.options.ServerOptions` and records its
    connections on a :class:`Server`, each with its graceful end (an HTTP
    connection finishes its response; a WebSocket that took one over says
    goodbye).

    ``options``: the server's limits and switches; ``peer_log``: where peers'
    bad input is reported. It also knows its live HTTP channels
    (``channels``, when a server is attached), the WebSocket connections
    taken over from them (``websockets``) and how many connections it serves
    (``open_connections``) or is turning away (``rejected_connections``).
    ``response_headers`` (``[(name, value)]`` as bytes) are set on every
    response before the route runs (e.g. ``x-aleph-worker``).
    """

    protocol = _aleph_channel  # type: ignore[assignment]
    requestFactory = AlephRequest

    def __init__(self, resource: IResource, server_ref: Optional[List[Any]] = None, *,
                 options: Optional[ServerOptions] = None, access_log: bool = False,
                 response_headers: Optional[List[Tuple[bytes, bytes]]] = None,
                 **kwargs: Any) -> None:
        super().__init__(resource, **kwargs)
        self.options = options if options is not None else ServerOptions()
        self.timeOut = self.options.idle_timeout  # twisted.web's idle timeout
        self._server_ref = server_ref if server_ref is not None else []
        self.access_log = access_log
        self.noisy = False
        self.channels: Set[Any] = set()
        self.websockets: Set[Any] = set()
        self.response_headers = response_headers or None
        self.peer_log = PeerLog("aleph-http", clock=self.reactor)
        self.open_connections = 0
        self.rejected_connections = 0
        self._default_body = self.options.body()

    def buildProtocol(self, addr: Any) -> Any:
        limit = self.options.max_connections
        if (limit is not None and self.open_connections >= limit
                and (self.options.rejected_handler is None
                     or self.rejected_connections >= limit)):
            # not accepted: as many connections again are already being turned away
            self.peer_log.bad_input(addr, "refused", f"over max_connections ({limit}), "
                                    f"{self.rejected_connections} already being turned away")
            return None
        protocol = super().buildProtocol(addr)
        if protocol is not None and self._server_ref:
            _track_connection(protocol, self._server_ref[0], self.channels)
        return protocol

    def admit(self) -> bool:
        """A connection starts (``AlephChannel.connectionMade``): True if it is
        served, False if it is past ``max_connections`` (its requests get the
        ``rejected_handler``'s answer). :meth:`release` when it ends."""
        limit = self.options.max_connections
        if limit is None or self.open_connections < limit:
            self.open_connections += 1
            return True
        self.rejected_connections += 1
        return False

    def release(self, admitted: bool) -> None:
        """A connection :meth:`admit` counted has ended."""
        if admitted:
            self.open_connections -= 1
        else:
            self.rejected_connections -= 1

    def body_options_for(self, request: Any, method: bytes, uri: bytes) -> BodyOptions:
        """How to receive the body of ``method uri`` (asked when its head is
        in): the server's options, with its route's
        :func:`~.options.body_options` if the root resource knows its routes."""
        finder = getattr(self.resource, "route_options", None)
        route: Optional[RouteOptions] = finder(request, method, uri) if finder else None
        if route is None:
            return self._default_body
        return self.options.body(route)

    def getResourceFor(self, request: Any) -> Any:
        headers = self.response_headers
        if headers is not None:
            set_header = request.responseHeaders.setRawHeaders
            for name, value in headers:
                set_header(name, [value])
        return super().getResourceFor(request)

    def log(self, request: Any) -> None:
        """Twisted's access log line, only when asked for (it is not free)."""
        if self.access_log:
            super().log(request)


def _track_connection(protocol: Any, server: Server, channels: Set[Any]) -> None:
    """Make ``server`` hold the connection's transport while it is open, with
    :meth:`_ConnectionTracker.end` as its graceful end."""
    tracker = _ConnectionTracker(protocol, server, channels)
    protocol.makeConnection = tracker.make_connection
    protocol.connectionLost = tracker.connection_lost


class _ConnectionTracker:
    """Stands in for a protocol's ``makeConnection`` and ``connectionLost``
    (one small object per connection rather than a nest of closures: the
    garbage collector walks every live connection's objects)."""

    __slots__ = ("protocol", "server", "channels", "transport", "_make", "_lost")

    def __init__(self, protocol: Any, server: Server, channels: Set[Any]) -> None:
        self.protocol, self.server, self.channels = protocol, server, channels
        self.transport: Any = None
        self._make, self._lost = protocol.makeConnection, protocol.connectionLost

    def make_connection(self, transport: Any) -> None:
        self.transport = transport
        self.server.track(transport, self.end)
        self.channels.add(self.protocol)
        self._make(transport)

    def connection_lost(self, reason: Any) -> None:
        lost = self._lost
        if lost is None:
            return  # told already
        self.channels.discard(self.protocol)
        if self.transport is not None:
            self.server.untrack(self.transport)
        # The protocol holds this tracker's methods and this tracker the
        # protocol: let go, so reference counting frees both once closed.
        self.protocol = self.transport = self._make = self._lost = None
        lost(reason)

    def end(self) -> None:
        """The connection's graceful end (``Server.close(graceful=True)``): a
        WebSocket that took it over is told the server is going away (close
        1001); an HTTP connection finishes the request in flight, then closes."""
        if self.protocol is None:
            return  # gone already
        websocket = getattr(self.protocol, "aleph_websocket", None)
        if websocket is not None:
            from twisted_aleph.http.websocket import going_away
            going_away(websocket)
        else:
            _finish_then_close(self.protocol)


def _no_keep_alive(request: Any, version: bytes) -> bool:
    """``HTTPChannel.checkPersistence`` once shutting down: this response is the last."""
    request.responseHeaders.setRawHeaders(b"connection", [b"close"])
    return False


def _finish_then_close(channel: Any) -> None:
    """Shutting down: an idle keep-alive connection closes now; one with a
    request in flight answers it, then closes (``Connection: close``)."""
    channel = getattr(channel, "_channel", channel)  # twisted.web's protocol-switching wrapper
    if channel.transport is None:
        return  # taken over by a WebSocket, which ends its own way
    if not channel.requests:
        channel.loseConnection()
        return
    channel.persistent = False
    channel.checkPersistence = _no_keep_alive  # a request still being read
    for request in channel.requests:
        if not request.startedWriting:
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])


class HTTPServer(Server):
    """The :class:`Server` ``start_server`` returns; ``site`` is its
    :class:`AlephSite`. Its ``close(graceful=True)`` (or :meth:`shutdown`)
    lets each HTTP connection finish and each WebSocket say goodbye."""

    def __init__(self, listening_port: Any, site: AlephSite, reactor: Any = None) -> None:
        super().__init__(listening_port, reactor)
        self.site = site

    def shutdown(self, timeout: float = DEFAULT_SHUTDOWN_TIMEOUT) -> Deferred:
        """``close(timeout, graceful=True)``: stop accepting; let the requests
        in flight finish (each connection closes after its response), close
        idle keep-alive connections now, send open WebSockets a close frame
        1001 (going away); cut whatever is still open after ``timeout``
        seconds. Fires once every connection is gone."""
        return self.close(timeout, graceful=True)


def make_site(handler: Handler, *, options: Optional[ServerOptions] = None,
              reactor: Any = None, access_log: bool = False,
              response_headers: Optional[Dict[str, str]] = None,
              server_ref: Optional[List[Any]] = None) -> AlephSite:
    """The :class:`AlephSite` serving ``handler`` with ``options`` (what
    :func:`start_server` listens with; tests drive one over in-memory
    transports with a ``task.Clock`` as ``reactor``)."""
    if reactor is None:
        from twisted.internet import reactor  # type: ignore[no-redef]
    headers = [(k.encode("latin-1"), v.encode("latin-1"))
               for k, v in (response_headers or {}).items()]
    return AlephSite(_resource.handler_resource(handler), server_ref, options=options,
                     access_log=access_log, response_headers=headers, reactor=reactor)


_UNSET: Any = object()


def server_options(options: Optional[ServerOptions] = None, **given: Any) -> ServerOptions:
    """``options`` (default: :class:`ServerOptions`'s defaults) with the
    fields in ``given`` replaced, except those left at :data:`_UNSET`."""
    base = options if options is not None else ServerOptions()
    changes = {k: v for k, v in given.items() if v is not _UNSET}
    return dataclasses.replace(base, **changes) if changes else base


def start_server(handler: Handler, port: int, *, interface: str = "0.0.0.0",
                 tls: Any = None, reactor: Any = None, access_log: bool = False,
                 backlog: int = DEFAULT_BACKLOG, fd: Optional[int] = None,
                 response_headers: Optional[Dict[str, str]] = None,
                 options: Optional[ServerOptions] = None,
                 max_request_body: Optional[int] = _UNSET,
                 header_timeout: Optional[float] = _UNSET,
                 idle_timeout: Optional[float] = _UNSET,
                 body_timeout: Optional[float] = _UNSET,
                 max_connections: Optional[int] = _UNSET,
                 compression: bool = _UNSET, raw_stream: bool = _UNSET,
                 max_header_bytes: int = _UNSET, max_headers: int = _UNSET,
                 max_pipelined: int = _UNSET,
                 rejected_handler: Optional[Callable[[Any], Any]] = _UNSET) -> HTTPServer:
    """Serve ``handler`` over HTTP on ``port`` (0 picks a free one).

    ``tls``: server TLS options (``twisted_aleph.tls.server_context(...)`` or
    any context factory) to serve HTTPS. ``backlog``: connections the kernel
    queues before accepting (Twisted's default of 50 drops bursts). ``fd``:
    serve an already listening socket (a worker's inherited one, see
    :func:`twisted_aleph.server.adopt`) instead of binding ``port``.
    ``response_headers``: set on every response. Returns an
    :class:`HTTPServer`; its ``close()`` stops listening and drops open
    connections, its ``shutdown(timeout)`` lets them finish first.

    What a client may do (Aleph's ``start-server`` options; defaults in
    :mod:`.options`, None turns a limit off): ``max_request_body`` (bytes, 16
    MiB; past it a 413, before reading a body whose ``Content-Length`` says
    so), ``header_timeout`` (10 s for a request line and its headers),
    ``idle_timeout`` (60 s between requests), ``body_timeout`` (30 s without a
    body byte), ``max_connections`` (None; past it ``rejected_handler``, a 503
    with ``Retry-After`` by default, answers), ``compression`` (gzip or
    deflate for compressible responses), ``raw_stream`` (every route reads
    its body as ``request.body_stream``), ``max_header_bytes`` (16384),
    ``max_headers`` (500), ``max_pipelined`` (16 responses waiting in a full
    send buffer). Or all of them as ``options``, a
    :class:`~.options.ServerOptions` (the keywords override it). Routes
    take their own body options with :func:`~.options.body_options`.
    """
    if reactor is None:
        from twisted.internet import reactor  # type: ignore[no-redef]
    options = server_options(
        options, max_request_body=max_request_body, header_timeout=header_timeout,
        idle_timeout=idle_timeout, body_timeout=body_timeout, max_connections=max_connections,
        compression=compression, raw_stream=raw_stream, max_header_bytes=max_header_bytes,
        max_headers=max_headers, max_pipelined=max_pipelined, rejected_handler=rejected_handler)
    server_ref: List[Server] = []
    site = make_site(handler, options=options, reactor=reactor, access_log=access_log,
                     response_headers=response_headers, server_ref=server_ref)
    if fd is not None:
        from twisted.protocols.tls import TLSMemoryBIOFactory
        factory: Any = site if tls is None else TLSMemoryBIOFactory(tls, False, site)
        listening = adopt(fd, factory, reactor, family_of(interface))
    elif tls is None:
        listening = reactor.listenTCP(port, site, backlog=backlog, interface=interface)
    else:
        listening = reactor.listenSSL(port, site, tls, backlog=backlog, interface=interface)
    server = HTTPServer(listening, site, reactor)
    server_ref.append(server)
    return server


class HTTPServerService(ServerService):
    """``start_server`` as a twistd service (``twistd aleph-http``).

    Stopping it (twistd on SIGTERM) is a graceful :meth:`HTTPServer.shutdown`
    bounded by ``shutdown_timeout``; ``fd`` serves an inherited listening
    socket (``--workers``); ``response_headers`` go on every response;
    ``options`` (a :class:`~.options.ServerOptions`) are the server's limits.
    """

    def __init__(self, handler: Handler, port: int, *, interface: str = "0.0.0.0",
                 tls: Any = None, fd: Optional[int] = None,
                 shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
                 response_headers: Optional[Dict[str, str]] = None,
                 gc_threshold: int = 0, reactor: Any = None,
                 options: Optional[ServerOptions] = None) -> None:
        super().__init__(self._listen, name="aleph-http", interface=interface,
                         shutdown_timeout=shutdown_timeout, gc_threshold=gc_threshold)
        self.handler = handler
        self.port = port
        self.tls = tls
        self.fd = fd
        self.response_headers = response_headers
        self.options = options if options is not None else ServerOptions()
        self._reactor = reactor

    def _listen(self) -> HTTPServer:
        return start_server(self.handler, self.port, interface=self.interface, tls=self.tls,
                            fd=self.fd, reactor=self._reactor,
                            response_headers=self.response_headers, options=self.options)


__all__ = [
    "AlephSite", "HTTPServerService", "HTTPServer", "ServerOptions",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "start_server", "make_site", "server_options",
]
