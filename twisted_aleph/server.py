"""A running server: the listening port plus the connections it accepted.

Returned by ``tcp.start_server`` and ``http.start_server`` (Aleph's server
object, which is ``java.io.Closeable``): ``port`` is the real port when 0 was
asked, ``close()`` stops listening and hangs up open connections (aborting
those still open after a grace period, so a peer that never reads cannot
hold the server), and the object is a context manager.
"""

from __future__ import annotations

from typing import Any, List, Optional, Set

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort

#: Seconds close() lets connections finish their writes before aborting them.
CLOSE_GRACE = 5.0


class Server:
    """A listening port and the live connections it accepted."""

    def __init__(self, listening_port: IListeningPort, reactor: Any = None) -> None:
        self.listening_port = listening_port
        self.connections: Set[Any] = set()  # transports of live connections
        self._reactor = reactor
        self._closing: Optional[Deferred] = None
        self._all_gone: List[Deferred] = []

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful after asking for port 0)."""
        return self.listening_port.getHost().port

    @property
    def host(self) -> str:
        return self.listening_port.getHost().host

    def track(self, transport: Any) -> None:
        """Remember an accepted connection so close() can hang it up."""
        self.connections.add(transport)

    def untrack(self, transport: Any) -> None:
        self.connections.discard(transport)
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

    def close(self, grace: float = CLOSE_GRACE) -> Deferred:
        """Stop listening and hang up every connection once its queued writes
        are out; abort any still open after ``grace`` seconds. The Deferred
        fires when the port is closed and every connection is gone."""
        if self._closing is None:
            reactor = self._reactor
            if reactor is None:
                from twisted.internet import reactor  # type: ignore[no-redef]
            stopped = self.stop_listening()
            for transport in list(self.connections):
                transport.loseConnection()
            idle = self.when_idle()
            if not idle.called:
                abort = reactor.callLater(grace, self._abort_all)
                idle.addBoth(lambda r: (abort.cancel() if abort.active() else None, r)[1])
            self._closing = defer.gatherResults([stopped, idle], consumeErrors=True)
            self._closing.addBoth(lambda _: None)
        d: Deferred = Deferred()
        self._closing.addBoth(lambda r: (d.callback(None), r)[1])
        return d

    def _abort_all(self) -> None:
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
