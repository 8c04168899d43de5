"""Several processes serving one listening port (``twistd ... --workers N``).

The first process binds the port, then starts N-1 copies of its own
command line with the listening socket passed down as a file descriptor;
every process adopts that socket with ``reactor.adoptStreamPort`` and the
kernel spreads accepted connections among them. No load balancer, no
home-made IPC: state that must span workers (chat rooms) goes through
Redis (``--bus redis://...``, :mod:`twisted_aleph.redisbus`).

On stop (SIGTERM to the first process) the workers get SIGTERM too and the
first process waits for them to exit, each shutting down gracefully.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any, List, Optional, Sequence

from twisted.application.service import Service
from twisted.internet import defer, protocol
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

log = Logger()

INHERITED_FD = 3  # where a worker finds the shared listening socket


def listen_shared(port: int, interface: str = "0.0.0.0", backlog: int = 1024) -> socket.socket:
    """A bound, listening, non-blocking TCP socket to share among workers."""
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((interface, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def adopt(fd: int, factory: protocol.Factory, reactor: Any = None,
          family: int = socket.AF_INET) -> IListeningPort:
    """Serve ``factory`` on an already listening socket inherited as ``fd``."""
    if reactor is None:
        from twisted.internet import reactor  # type: ignore[no-redef]
    return reactor.adoptStreamPort(fd, family, factory)


class _Worker(protocol.ProcessProtocol):
    def __init__(self, index: int) -> None:
        self.index = index
        self.ended: Deferred = Deferred()

    def outReceived(self, data: bytes) -> None:
        sys.stdout.write(data.decode("utf-8", "replace"))

    def errReceived(self, data: bytes) -> None:
        sys.stderr.write(data.decode("utf-8", "replace"))

    def processEnded(self, reason: Any) -> None:
        log.info("worker {i} exited: {reason}", i=self.index,
                 reason=reason.getErrorMessage())
        self.ended.callback(None)


class WorkerPool(Service):
    """Starts ``count`` worker processes running ``argv`` with the shared
    socket as fd :data:`INHERITED_FD`; stops them with SIGTERM."""

    def __init__(self, count: int, argv: Sequence[str], sock: socket.socket,
                 reactor: Any = None) -> None:
        self.count = count
        self.argv = list(argv)
        self.sock = sock
        self._reactor = reactor
        self.workers: List[_Worker] = []

    def startService(self) -> None:
        super().startService()
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor  # type: ignore[no-redef]
        fd = self.sock.fileno()
        for i in range(self.count):
            worker = _Worker(i + 1)
            reactor.spawnProcess(worker, self.argv[0], self.argv, env=os.environ.copy(),
                                 childFDs={0: "w", 1: "r", 2: "r", INHERITED_FD: fd})
            self.workers.append(worker)

    def stopService(self) -> Optional[Deferred]:
        super().stopService()
        waits = []
        for worker in self.workers:
            if not worker.ended.called:
                try:
                    worker.transport.signalProcess("TERM")
                except Exception:
                    pass
                waits.append(worker.ended)
        return defer.gatherResults(waits) if waits else None


def worker_argv(argv: Sequence[str]) -> List[str]:
    """This process's twistd command line, rewritten for a worker: it adopts
    the inherited socket instead of binding, and keeps no pidfile."""
    out = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
           "--pidfile="]
    args = list(argv[1:])
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("--workers", "--pidfile"):
            skip = True
            continue
        if a.startswith("--workers=") or a.startswith("--pidfile="):
            continue
        out.append(a)
    return out + ["--inherit-fd", str(INHERITED_FD)]
