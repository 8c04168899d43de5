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

import os
import warnings
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

from klein import Klein
from twisted.application import service
from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource
from twisted.web.server import Site

from twisted_aleph.http import resource as _resource, ring as _ring
from twisted_aleph.server import Server, restore_gc, tune_gc

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
    """A name in ``_MOVED``, from its new home, with a DeprecationWarning (PEP 562)."""
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
    """A Site that records its connections on a :class:`Server`.

    It also knows its live HTTP channels (``channels``) and the WebSocket
    connections taken over from them (``websockets``), so that a graceful
    shutdown can finish the one and say goodbye to the other.
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
    """Make ``server`` hold the connection's transport while it is open."""
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
        self.server.track(transport)
        self.channels.add(self.protocol)
        self._make(transport)

    def connection_lost(self, reason: Any) -> None:
        self.channels.discard(self.protocol)
        if self.transport is not None:
            self.server.untrack(self.transport)
        self._lost(reason)


def _no_keep_alive(request: Any, version: bytes) -> bool:
    """``HTTPChannel.checkPersistence`` once shutting down: this response is the last."""
    request.responseHeaders.setRawHeaders(b"connection", [b"close"])
    return False


def _finish_then_close(channel: Any) -> None:
    """Shutting down: an idle keep-alive connection closes now; one with a
    request in flight answers it, then closes (``Connection: close``)."""
    channel = getattr(channel, "_channel", channel)  # twisted.web's protocol-switching wrapper
    if channel.transport is None:
        return  # taken over by a WebSocket: see websocket.going_away
    if not channel.requests:
        channel.loseConnection()
        return
    channel.persistent = False
    channel.checkPersistence = _no_keep_alive  # a request still being read
    for request in channel.requests:
        if not request.startedWriting:
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])


class HTTPServer(Server):
    """The :class:`Server` ``start_server`` returns: it can also shut down
    gracefully (:meth:`shutdown`); ``site`` is its :class:`AlephSite`."""

    def __init__(self, listening_port: Any, site: AlephSite, reactor: Any = None) -> None:
        super().__init__(listening_port, reactor)
        self.site = site
        self._shutdown: Optional[Deferred] = None

    def shutdown(self, timeout: float = DEFAULT_SHUTDOWN_TIMEOUT) -> Deferred:
        """Stop accepting; let the requests in flight finish (each connection
        closes after its response), close idle keep-alive connections now, send
        open WebSockets a close frame 1001 (going away); cut whatever is still
        open after ``timeout`` seconds. Fires once every connection is gone."""
        if self._shutdown is None:
            from twisted_aleph.http.websocket import going_away
            reactor = self._reactor
            if reactor is None:
                from twisted.internet import reactor  # type: ignore[no-redef]
            stopped = self.stop_listening()
            for channel in list(self.site.channels):
                _finish_then_close(channel)
            for websocket in list(self.site.websockets):
                going_away(websocket)
            idle = self.when_idle()
            cutter = reactor.callLater(timeout, self._cut, timeout)
            done = gatherResults([stopped, idle], consumeErrors=True)

            def finished(result: Any) -> None:
                if cutter.active():
                    cutter.cancel()
                if isinstance(result, Failure):
                    log.failure("error while shutting down the HTTP server", result)
            self._shutdown = done.addBoth(finished)
        d: Deferred = Deferred()

        def tell(result: Any) -> Any:
            d.callback(None)
            return result
        self._shutdown.addBoth(tell)
        return d

    def _cut(self, timeout: float) -> None:
        log.warn("{n} connections still open {t} s after shutdown began; cutting them",
                 n=len(self.connections), t=timeout)
        self._abort_all()


def start_server(handler: Handler, port: int, *, interface: str = "0.0.0.0",
                 tls: Any = None, reactor: Any = None, access_log: bool = False,
                 backlog: int = DEFAULT_BACKLOG, fd: Optional[int] = None,
                 response_headers: Optional[Dict[str, str]] = None) -> HTTPServer:
    """Serve ``handler`` over HTTP on ``port`` (0 picks a free one).

    ``tls``: server TLS options (``twisted_aleph.tls.server_context(...)`` or
    any context factory) to serve HTTPS. ``backlog``: connections the kernel
    queues before accepting (Twisted's default of 50 drops bursts). ``fd``:
    serve an already listening socket (a worker's inherited one, see
    :mod:`twisted_aleph.workers`) instead of binding ``port``.
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

        from twisted_aleph.workers import adopt, family_of
        factory: Any = site if tls is None else TLSMemoryBIOFactory(tls, False, site)
        listening = adopt(fd, factory, reactor, family_of(interface))
    elif tls is None:
        listening = reactor.listenTCP(port, site, backlog=backlog, interface=interface)
    else:
        listening = reactor.listenSSL(port, site, tls, backlog=backlog, interface=interface)
    server = HTTPServer(listening, site, reactor)
    server_ref.append(server)
    return server


class HTTPServerService(service.Service):
    """``start_server`` as a twistd service (the ``aleph-http`` plugin).

    Stopping it (twistd on SIGTERM) is a graceful :meth:`HTTPServer.shutdown`
    bounded by ``shutdown_timeout``; ``fd`` serves an inherited listening
    socket (``--workers``); ``response_headers`` go on every response.
    """

    def __init__(self, handler: Handler, port: int, *, interface: str = "0.0.0.0",
                 tls: Any = None, fd: Optional[int] = None,
                 shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
                 response_headers: Optional[Dict[str, str]] = None,
                 gc_threshold: int = 0, reactor: Any = None) -> None:
        self.handler = handler
        self.port = port
        self.interface = interface
        self.tls = tls
        self.fd = fd
        self.shutdown_timeout = shutdown_timeout
        self.response_headers = response_headers
        self.gc_threshold = gc_threshold
        self._reactor = reactor
        self.server: Optional[HTTPServer] = None
        self._gc_before: Any = None

    def startService(self) -> None:
        super().startService()
        self.server = start_server(self.handler, self.port, interface=self.interface,
                                   tls=self.tls, fd=self.fd, reactor=self._reactor,
                                   response_headers=self.response_headers)
        log.info("aleph-http listening on {interface}:{port} (pid {pid})",
                 interface=self.interface, port=self.server.port, pid=os.getpid())
        self._gc_before = tune_gc(self.gc_threshold)

    def stopService(self) -> Any:
        super().stopService()
        restore_gc(self._gc_before)
        self._gc_before = None
        if self.server is not None:
            server, self.server = self.server, None
            log.info("aleph-http shutting down: {n} connections open, {t} s to finish",
                     n=len(server.connections), t=self.shutdown_timeout)
            return server.shutdown(self.shutdown_timeout)
        return None


def load_handler(spec: str) -> Any:
    """``"package.module:attr"`` -> that object (the ``--app`` option)."""
    from twisted.python.reflect import namedAny
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"expected module:attr, got {spec!r}")
    return namedAny(f"{module}.{attr}")


__all__ = [
    "AlephSite", "HTTPServerService", "HTTPServer",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "start_server",
    "load_handler",
]
