"""The HTTP server: a Twisted ``Site`` serving a handler, and its shutdown.

:func:`start_server` serves ``handler_resource(handler)`` (Klein routes
answering Ring-style response maps: :mod:`.resource` dispatches and writes
the error pages, :mod:`.ring` turns a response map into bytes) through an
:class:`AlephSite`, which records each connection on the
:class:`HTTPServer` it returns.

Shutdown: :meth:`HTTPServer.shutdown` (what ``HTTPServerService`` does when
twistd stops it, on SIGTERM) stops accepting, closes idle keep-alive
connections, lets requests in flight finish (their connections then close,
``Connection: close``), sends open WebSockets a close frame 1001, and cuts
whatever is still open after the timeout.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import IResource
from twisted.web.server import Site

from twisted_aleph.http import resource as _resource, ring as _ring
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


class AlephSite(Site):
    """A Site that records its connections on a :class:`Server`, each with its
    graceful end (an HTTP connection finishes its response; a WebSocket that
    took one over says goodbye).

    It also knows its live HTTP channels (``channels``) and the WebSocket
    connections taken over from them (``websockets``).
    ``response_headers`` (``[(name, value)]`` as bytes) are set on every
    response before the route runs (e.g. ``x-aleph-worker``).
    """

    def __init__(self, resource: IResource, server_ref: List[Any], *,
                 access_log: bool = False,
                 response_headers: Optional[List[Tuple[bytes, bytes]]] = None,
                 **kwargs: Any) -> None:
        super().__init__(resource, **kwargs)
        self._server_ref = server_ref
        self.access_log = access_log
        self.noisy = False
        self.channels: Set[Any] = set()
        self.websockets: Set[Any] = set()
        self.response_headers = response_headers or None

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        if protocol is not None and self._server_ref:
            _track_connection(protocol, self._server_ref[0], self.channels)
        return protocol

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


def start_server(handler: Handler, port: int, *, interface: str = "0.0.0.0",
                 tls: Any = None, reactor: Any = None, access_log: bool = False,
                 backlog: int = DEFAULT_BACKLOG, fd: Optional[int] = None,
                 response_headers: Optional[Dict[str, str]] = None) -> HTTPServer:
    """Serve ``handler`` over HTTP on ``port`` (0 picks a free one).

    ``tls``: server TLS options (``twisted_aleph.tls.server_context(...)`` or
    any context factory) to serve HTTPS. ``backlog``: connections the kernel
    queues before accepting (Twisted's default of 50 drops bursts). ``fd``:
    serve an already listening socket (a worker's inherited one, see
    :func:`twisted_aleph.server.adopt`) instead of binding ``port``.
    ``response_headers``: set on every response. Returns an
    :class:`HTTPServer`; its ``close()`` stops listening and drops open
    connections, its ``shutdown(timeout)`` lets them finish first.
    """
    if reactor is None:
        from twisted.internet import reactor  # type: ignore[no-redef]
    server_ref: List[Server] = []
    headers = [(k.encode("latin-1"), v.encode("latin-1"))
               for k, v in (response_headers or {}).items()]
    site = AlephSite(_resource.handler_resource(handler), server_ref, access_log=access_log,
                     response_headers=headers, reactor=reactor)
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
    socket (``--workers``); ``response_headers`` go on every response.
    """

    def __init__(self, handler: Handler, port: int, *, interface: str = "0.0.0.0",
                 tls: Any = None, fd: Optional[int] = None,
                 shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
                 response_headers: Optional[Dict[str, str]] = None,
                 gc_threshold: int = 0, reactor: Any = None) -> None:
        super().__init__(self._listen, name="aleph-http", interface=interface,
                         shutdown_timeout=shutdown_timeout, gc_threshold=gc_threshold)
        self.handler = handler
        self.port = port
        self.tls = tls
        self.fd = fd
        self.response_headers = response_headers
        self._reactor = reactor

    def _listen(self) -> HTTPServer:
        return start_server(self.handler, self.port, interface=self.interface, tls=self.tls,
                            fd=self.fd, reactor=self._reactor,
                            response_headers=self.response_headers)


__all__ = [
    "AlephSite", "HTTPServerService", "HTTPServer",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "start_server",
]
