"""A running server: the listening port plus the connections it accepted.

Returned by ``tcp.start_server`` and ``http.start_server`` (Aleph's server
object, which is ``java.io.Closeable``): ``port`` is the real port when 0 was
asked, ``close()`` stops listening and hangs up open connections (aborting
those still open after a grace period, so a peer that never reads cannot
hold the server), and the object is a context manager.
"""

from __future__ import annotations

from typing import Any, List, Optional, Set, Union, cast

from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IListeningPort, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

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
        return self._address().port

    @property
    def host(self) -> str:
        """The interface address the port is bound to."""
        return self._address().host

    def _address(self) -> Union[IPv4Address, IPv6Address]:
        # IListeningPort.getHost() is typed IAddress; a TCP port's is an IP one.
        return cast(Union[IPv4Address, IPv6Address], self.listening_port.getHost())

    def track(self, transport: Any) -> None:
        """Remember an accepted connection so close() can hang it up."""
        self.connections.add(transport)

    def untrack(self, transport: Any) -> None:
        """Forget a connection that has gone; fires when_idle() waiters."""
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
            stopped = self.stop_listening()
            stopped.addErrback(self._log_stop_failure)
            for transport in list(self.connections):
                transport.loseConnection()
            idle = self.when_idle()
            if not idle.called:
                abort = self._clock().callLater(grace, self._abort_all)
                idle.addBoth(_cancel_call, abort)
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


def _cancel_call(result: Any, call: IDelayedCall) -> Any:
    """Callback: cancel ``call`` if still pending; pass ``result`` on."""
    if call.active():
        call.cancel()
    return result


def _observe(d: Deferred) -> Deferred:
    """A new Deferred firing (None) when ``d`` does, leaving ``d``'s result alone."""
    out: Deferred = Deferred()

    def relay(result: Any) -> Any:
        out.callback(None)
        return result

    d.addBoth(relay)
    return out
