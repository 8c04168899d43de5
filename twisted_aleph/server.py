"""A running server: the listening port plus the connections it accepted.

Returned by ``tcp.start_server`` and ``http.start_server`` (Aleph's server
object, which is ``java.io.Closeable``): ``port`` is the real port when 0 was
asked, ``close()`` stops listening and drops open connections, and the object
is a context manager.
"""

from __future__ import annotations

from typing import Any, Optional, Set

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort


class Server:
    """A listening port and the live connections it accepted."""

    def __init__(self, listening_port: IListeningPort) -> None:
        self.listening_port = listening_port
        self.connections: Set[Any] = set()  # transports of live connections
        self._closed: Optional[Deferred] = None

    @property
    def port(self) -> int:
        """The TCP/UDP port actually bound (useful after asking for port 0)."""
        return self.listening_port.getHost().port

    @property
    def host(self) -> str:
        return self.listening_port.getHost().host

    def track(self, transport: Any) -> None:
        """Remember an accepted connection so close() can drop it."""
        self.connections.add(transport)

    def untrack(self, transport: Any) -> None:
        self.connections.discard(transport)

    def close(self) -> Deferred:
        """Stop listening and drop open connections; Deferred fires when done."""
        if self._closed is None:
            d = defer.maybeDeferred(self.listening_port.stopListening)
            for transport in list(self.connections):
                transport.loseConnection()
            self._closed = d
        d2: Deferred = Deferred()
        self._closed.addBoth(lambda r: (d2.callback(None), r)[1])
        return d2

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Server port={self.port} connections={len(self.connections)}>"
