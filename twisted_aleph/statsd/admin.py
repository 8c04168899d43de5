"""Etsy statsd's admin TCP interface: the glue between a socket and an AdminSession.

The commands and their answers are :mod:`twisted_aleph.statsd_protocol.admin`'s;
this module only moves lines, and bounds what one peer can cost:

* a command line is at most ``max_line`` bytes (default 1024): a longer one
  is answered ``ERROR line too long``, and the rest of it, up to the next
  newline, is discarded as it arrives (never buffered); the connection stays
  usable;
* a connection with no byte in either direction for ``idle_timeout`` seconds
  (default 300) is closed;
* answers are written only while the peer reads them: when the socket's
  send buffer is full, reading the next command waits (a peer that asks for
  ``counters`` again and again without reading holds one answer, not many);
* bad commands are answered ``ERROR`` and reported to a PeerLog (one log
  line per peer per interval at most).

The port binds 127.0.0.1 unless told otherwise: the interface can delete
metrics and has no authentication, as Etsy's.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from twisted_aleph.peerlog import PeerLog
from twisted_aleph.server import Server
from twisted_aleph.statsd_protocol.admin import ERROR, AdminSession

log = Logger()

#: bytes of one command line at most.
DEFAULT_MAX_LINE = 1024
#: seconds a connection may stay silent both ways before it is closed.
DEFAULT_IDLE_TIMEOUT = 300.0
LINE_TOO_LONG = "ERROR line too long\n"


@implementer(IPushProducer)
class AdminProtocol(Protocol):
    """One admin connection: newline-ended commands in, the session's answers out."""

    def __init__(self, session: AdminSession, *, max_line: int, idle_timeout: float,
                 clock: Any, peer_log: PeerLog, server: Optional[Server] = None) -> None:
        self.session = session
        self.max_line = max_line
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.peer_log = peer_log
        self.server = server
        self._buffer = b""
        self._discarding = False  # inside a line that was too long
        self._paused = False
        self._closing = False
        self._idle_call: Any = None

    def connectionMade(self) -> None:
        if self.server is not None:
            self.server.track(self.transport)
        self.transport.registerProducer(self, True)
        self._touch()

    def connectionLost(self, reason: Any = None) -> None:
        self._closing = True
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None
        if self.server is not None:
            self.server.untrack(self.transport)

    def _touch(self) -> None:
        """Something moved: restart the idle timer."""
        if self.idle_timeout <= 0 or self._closing:
            return
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.reset(self.idle_timeout)
        else:
            self._idle_call = self.clock.callLater(self.idle_timeout, self._idle)

    def _idle(self) -> None:
        self._idle_call = None
        log.info("statsd admin: closing {peer}, idle for {t} s", peer=self.transport.getPeer(),
                 t=self.idle_timeout)
        self._closing = True
        self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        self._touch()
        self._buffer += data
        self._process()

    def _process(self) -> None:
        buffer = self._buffer
        start = 0
        while not self._paused and not self._closing:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = buffer[start:end]
            start = end + 1
            if self._discarding:
                self._discarding = False
                continue
            if len(line) > self.max_line:
                self._too_long(line)
                continue
            self._command(line)
        rest = buffer[start:]
        if not self._paused and len(rest) > self.max_line:
            if not self._discarding:
                self._too_long(rest)
            self._discarding = True
            rest = b""
        self._buffer = rest

    def _too_long(self, line: bytes) -> None:
        self.peer_log.bad_input(self.transport.getPeer(), "admin line too long",
                                f"over {self.max_line} bytes", payload=line)
        self.transport.write(LINE_TOO_LONG.encode("ascii"))

    def _command(self, raw: bytes) -> None:
        line = raw.decode("ascii", "replace").strip()
        answer, close = self.session.handle(line, self.clock.seconds())
        if answer == ERROR:
            self.peer_log.bad_input(self.transport.getPeer(), "bad admin command",
                                    "unknown command", payload=raw)
        if answer:
            self.transport.write(answer.encode("utf-8"))
        if close:
            self._closing = True
            self.transport.loseConnection()

    # IPushProducer: the transport pauses us while the peer does not read
    def pauseProducing(self) -> None:
        self._paused = True
        self.transport.pauseProducing()  # stop reading commands

    def resumeProducing(self) -> None:
        if self._closing:
            return
        self._paused = False
        self._touch()
        self.transport.resumeProducing()
        self._process()

    def stopProducing(self) -> None:
        self._closing = True


class AdminFactory(Factory):
    """Builds :class:`AdminProtocol` connections sharing one session and PeerLog."""

    noisy = False

    def __init__(self, session: AdminSession, *, max_line: int = DEFAULT_MAX_LINE,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT, clock: Any = None,
                 peer_log: Optional[PeerLog] = None) -> None:
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[no-redef]
        if max_line < 1 or idle_timeout < 0:
            raise ValueError("max_line >= 1 and idle_timeout >= 0")
        self.session = session
        self.max_line = max_line
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.peer_log = peer_log or PeerLog("aleph-statsd admin", clock=clock)
        self.server: Optional[Server] = None

    def buildProtocol(self, addr: Any) -> AdminProtocol:
        protocol = AdminProtocol(self.session, max_line=self.max_line,
                                 idle_timeout=self.idle_timeout, clock=self.clock,
                                 peer_log=self.peer_log, server=self.server)
        protocol.factory = self
        return protocol


def listen_admin(session: AdminSession, port: int, *, interface: str = "127.0.0.1",
                 max_line: int = DEFAULT_MAX_LINE,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                 reactor: Any = None, clock: Any = None) -> Server:
    """Serve the admin interface on TCP ``port`` (0: any free one); returns
    the :class:`~twisted_aleph.server.Server` (``close()`` hangs up every
    admin connection). ``clock`` times the idle timeout (default: ``reactor``)."""
    if reactor is None:
        from twisted.internet import reactor  # type: ignore[no-redef]
    factory = AdminFactory(session, max_line=max_line, idle_timeout=idle_timeout,
                           clock=clock if clock is not None else reactor)
    listening = reactor.listenTCP(port, factory, interface=interface)
    server = Server(listening, reactor)
    factory.server = server
    return server


__all__ = ["AdminProtocol", "AdminFactory", "listen_admin", "DEFAULT_MAX_LINE",
           "DEFAULT_IDLE_TIMEOUT"]
