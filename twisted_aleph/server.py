"""A running server: the listening port plus the connections it accepted.

Returned by ``tcp.start_server`` and ``http.start_server`` (Aleph's server
object, which is ``java.io.Closeable``): ``port`` is the real port when 0 was
asked, ``close()`` stops listening and hangs up open connections (aborting
those still open after a grace period, so a peer that never reads cannot
hold the server), and the object is a context manager. ``close(graceful=True)``
lets each connection end its own way instead (a TCP stream: reading stops and
its handler answers what it received, then closes; an HTTP connection finishes
its response; a WebSocket says goodbye), as twistd's SIGTERM does.

Also here, because every server needs them: :class:`ServerService` (any
server as a twistd service), the garbage collector's tuning for a long-running
server (:func:`tune_gc`), the listening socket several processes share
(:func:`listen_shared`, :func:`adopt`), and :func:`load_object`, which finds
the handler a command line names (``module:attr``).
"""

from __future__ import annotations

import gc
import os
import socket
import warnings
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union, cast

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.reflect import InvalidName, namedAny

from twisted_aleph.deferred import cancel_call

log = Logger()

#: Seconds close() lets connections finish their writes before aborting them.
CLOSE_GRACE = 5.0

#: The ready servers' ``--gc-threshold``: CPython's young-generation threshold
#: (Python's own is 700). See :func:`tune_gc`.
SERVER_GC_THRESHOLD = 50_000
#: The two older generations' thresholds :func:`tune_gc` sets (Python's: 10, 10).
SERVER_GC_OLDER_THRESHOLDS = (20, 20)


class Server:
    """A listening port and the live connections it accepted."""

    def __init__(self, listening_port: IListeningPort, reactor: Any = None) -> None:
        self.listening_port = listening_port
        self.connections: Set[Any] = set()  # transports of live connections
        self._enders: Dict[Any, Callable[[], None]] = {}  # their graceful ends, if any
        self._reactor = reactor
        self._closing: Optional[Deferred] = None
        self._all_gone: List[Deferred] = []

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful after asking for port 0)."""
        return self._address().port

    @property
    def host(self) -> str:
        """The interface address the port is bound to."""
        return self._address().host

    def _address(self) -> Union[IPv4Address, IPv6Address]:
        # IListeningPort.getHost() is typed IAddress; a TCP port's is an IP one.
        return cast(Union[IPv4Address, IPv6Address], self.listening_port.getHost())

    def track(self, transport: Any, end: Optional[Callable[[], None]] = None) -> None:
        """Remember an accepted connection so close() can hang it up; ``end()``
        ends it gracefully for ``close(graceful=True)``."""
        self.connections.add(transport)
        if end is not None:
            self._enders[transport] = end

    def untrack(self, transport: Any) -> None:
        """Forget a connection that has gone; fires when_idle() waiters."""
        self.connections.discard(transport)
        self._enders.pop(transport, None)
        if not self.connections:
            waiters, self._all_gone = self._all_gone, []
            for d in waiters:
                d.callback(None)

    def stop_listening(self) -> Deferred:
        """Refuse new connections; those already open carry on."""
        return defer.maybeDeferred(self.listening_port.stopListening)

    def when_idle(self) -> Deferred:
        """Deferred that fires once no accepted connection is open."""
        if not self.connections:
            return defer.succeed(None)
        d: Deferred = Deferred()
        self._all_gone.append(d)
        return d

    def close(self, grace: float = CLOSE_GRACE, *, graceful: bool = False) -> Deferred:
        """Stop listening and hang up every connection once its queued writes
        are out; abort any still open after ``grace`` seconds. The Deferred
        fires when the port is closed and every connection is gone.

        ``graceful``: a connection tracked with an ``end`` is ended that way
        instead of hung up (TCP streams: no more reading, the handler answers
        what it has received and closes); ``grace`` still bounds it."""
        if self._closing is None:
            stopped = self.stop_listening()
            stopped.addErrback(self._log_stop_failure)
            for transport in list(self.connections):
                end = self._enders.get(transport) if graceful else None
                if end is None:
                    transport.loseConnection()
                    continue
                try:
                    end()
                except Exception:
                    log.failure("error ending a connection gracefully; hanging it up")
                    transport.loseConnection()
            idle = self.when_idle()
            if not idle.called:
                abort = self._clock().callLater(grace, self._abort_all, grace)
                idle.addBoth(cancel_call, abort)
            self._closing = defer.gatherResults([stopped, idle], consumeErrors=True)
            self._closing.addBoth(lambda _: None)
        return _observe(self._closing)

    def _clock(self) -> IReactorTime:
        if self._reactor is not None:
            return cast(IReactorTime, self._reactor)
        from twisted.internet import reactor
        return cast(IReactorTime, reactor)

    def _log_stop_failure(self, failure: Failure) -> None:
        log.failure("error stopping listening on {port!r}", failure,
                    port=self.listening_port)

    def _abort_all(self, grace: float) -> None:
        if self.connections:
            log.warn("{n} connections still open {t} s after closing began; cutting them",
                     n=len(self.connections), t=grace)
        for transport in list(self.connections):
            abort = getattr(transport, "abortConnection", None)
            if abort is not None:
                abort()
            else:
                transport.loseConnection()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Server port={self.port} connections={len(self.connections)}>"


def _observe(d: Deferred) -> Deferred:
    """A new Deferred firing (None) when ``d`` does, leaving ``d``'s result alone."""
    out: Deferred = Deferred()

    def relay(result: Any) -> Any:
        out.callback(None)
        return result

    d.addBoth(relay)
    return out


# -- the garbage collector, for a long-running server ----------------------------

GCThresholds = Tuple[int, int, int]


def tune_gc(threshold: int = SERVER_GC_THRESHOLD) -> Optional[GCThresholds]:
    """Set CPython's cyclic garbage collector up for a server; call it once
    start-up is over. Returns the thresholds it replaced, for :func:`restore_gc`.

    Why: a server holding thousands of requests in flight keeps hundreds of
    thousands of young objects alive for a while, and with Python's default
    thresholds the collector walks them again and again (full collections of
    a few hundred ms each, most of the CPU of a burst of slow requests). This
    collects what start-up left, freezes the survivors (modules, classes, the
    app: ``gc.freeze``) out of the collector's sight, and collects the young
    generation every ``threshold`` container allocations instead of 700
    (the older ones every :data:`SERVER_GC_OLDER_THRESHOLDS`). Reference
    counting still frees most garbage at once; only cycles wait longer.

    Does nothing and returns None when ``threshold`` is 0 or the interpreter
    has no ``gc.freeze`` (PyPy, whose collector needs none of this).
    """
    if threshold <= 0 or not hasattr(gc, "freeze"):
        return None
    previous: GCThresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, *SERVER_GC_OLDER_THRESHOLDS)
    log.info("garbage collector tuned for a server: thresholds {now} (were {was}), "
             "{frozen} start-up objects frozen (--gc-threshold 0 leaves it alone)",
             now=gc.get_threshold(), was=previous, frozen=gc.get_freeze_count())
    return previous


def restore_gc(previous: Optional[GCThresholds]) -> None:
    """Undo :func:`tune_gc` (given what it returned): unfreeze, old thresholds."""
    if previous is not None:
        gc.unfreeze()
        gc.set_threshold(*previous)


# -- a server as a twistd service ----------------------------------------------

class ServerService(Service):
    """A server as a twistd service: ``start()`` opens it when the service
    starts; stopping the service (twistd, on SIGTERM) closes it gracefully.

    ``start()`` returns the running server: anything with a ``port`` and a
    ``close(grace, graceful=True)`` that returns a Deferred, such as a
    :class:`Server` (each connection ends its own way, aborted if still open
    after ``shutdown_timeout`` seconds) or a ``statsd.StatsdServer`` (one last
    flush, given ``shutdown_timeout`` seconds to reach Graphite).
    ``gc_threshold``, if not 0, tunes the garbage collector once listening
    (:func:`tune_gc`), until stopped. ``name`` goes in the log lines;
    ``listening_line`` is the one logged once listening (with ``name``,
    ``interface``, ``port`` and ``pid``). ``server`` is the server once
    started (kept after stopping, so its final state can be looked at).
    """

    listening_line = "{name} listening on {interface}:{port} (pid {pid})"

    def __init__(self, start: Callable[[], Any], *, name: str = "server",
                 interface: str = "0.0.0.0", shutdown_timeout: float = 10.0,
                 gc_threshold: int = 0) -> None:
        self.start = start
        self.name = name
        self.interface = interface
        self.shutdown_timeout = shutdown_timeout
        self.gc_threshold = gc_threshold
        self.server: Any = None
        self._gc_before: Optional[GCThresholds] = None

    def startService(self) -> None:
        super().startService()
        self.server = self.start()
        log.info(self.listening_line, name=self.name, interface=self.interface,
                 port=self.server.port, pid=os.getpid())
        self._gc_before = tune_gc(self.gc_threshold)

    def stopService(self) -> Optional[Deferred]:  # type: ignore[override]
        super().stopService()
        restore_gc(self._gc_before)
        self._gc_before = None
        if self.server is None:
            return None
        connections = getattr(self.server, "connections", None)
        if connections is not None:
            log.info("{name} shutting down: {n} connections open, {t} s to finish",
                     name=self.name, n=len(connections), t=self.shutdown_timeout)
        return cast(Deferred, self.server.close(self.shutdown_timeout, graceful=True))


# -- one listening socket for several processes (--workers) ------------------------

def family_of(interface: str) -> int:
    """The address family of a listening interface (``"::"`` is IPv6)."""
    return socket.AF_INET6 if ":" in interface else socket.AF_INET


def listen_shared(port: int, interface: str = "0.0.0.0", backlog: int = 1024) -> socket.socket:
    """A bound, listening, non-blocking TCP socket to share among processes."""
    sock = socket.socket(family_of(interface), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((interface, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def adopt(fd: int, factory: Factory, reactor: Any = None,
          family: int = socket.AF_INET) -> IListeningPort:
    """Serve ``factory`` on an already listening socket inherited as ``fd``
    (the reactor works on its own duplicate of ``fd``)."""
    if reactor is None:
        from twisted.internet import reactor  # type: ignore[no-redef]
    return cast(IListeningPort, reactor.adoptStreamPort(fd, family, factory))


# -- what a command line names ---------------------------------------------------

class NameNotFound(ImportError, ValueError):
    """:func:`load_object`'s spec names no module or object. Both an
    ImportError (what ``importlib`` raises) and a ValueError (what Twisted's
    ``namedAny`` raises), so callers written for either still catch it."""


def load_object(spec: str) -> Any:
    """The object ``"package.module:attr"`` names (``attr`` may be dotted),
    found by Twisted's ``namedAny``: how a command line names a handler or an
    app (``--handler``, ``--app``). A spec without ``module:attr`` is a
    ValueError; one naming nothing, :class:`NameNotFound`; a missing
    attribute of a module that exists, an AttributeError."""
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"expected module:attr, got {spec!r}")
    try:
        return namedAny(f"{module}.{attr}")
    except InvalidName as e:
        raise NameNotFound(str(e)) from e


def __getattr__(name: str) -> Any:
    """The twistd option helpers that moved to :mod:`twisted_aleph.tap.options`,
    still found here for one release, with a DeprecationWarning."""
    if name in ("GCOptions", "check_gc_option", "GC_OPTION"):
        from twisted_aleph.tap import options
        warnings.warn(f"twisted_aleph.server.{name} moved to twisted_aleph.tap.options.{name}",
                      DeprecationWarning, stacklevel=2)
        return getattr(options, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Server", "ServerService", "CLOSE_GRACE", "SERVER_GC_THRESHOLD", "SERVER_GC_OLDER_THRESHOLDS",
    "tune_gc", "restore_gc", "family_of", "listen_shared", "adopt", "load_object", "NameNotFound",
]
