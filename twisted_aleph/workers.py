"""Several processes serving one listening port (``twistd ... --workers N``).

The first process binds the port, serves it, and starts N-1 copies of its
own command line (:func:`worker_argv`) with the listening socket passed down
as file descriptor 3; each worker adopts that socket
(``reactor.adoptStreamPort``) and the kernel spreads accepted connections
among the processes. No load balancer, no home-made IPC: state that must span
workers (chat rooms) goes through Redis (``--bus redis://...``). The shared
socket itself is :func:`twisted_aleph.server.listen_shared` and
:func:`~twisted_aleph.server.adopt`.

Stopping (SIGTERM to the first process; twistd stops its services) is
graceful everywhere: every process stops accepting and finishes what is in
flight (the server services' ``stopService``). The first process tells its
workers to stop by closing their stdin pipe (:class:`ParentWatch`), waits for
them, and kills any still alive after ``stop_timeout``; a worker whose parent
vanished sees the same closed pipe, so no orphan keeps the port. Workers
write their logs to the first process's stdout/stderr. A worker that dies
while the pool runs is restarted after :data:`RESPAWN_DELAY`.

The twistd commands build their service tree with
:func:`twisted_aleph.tap.scaling.scaled_service` (their options:
:class:`twisted_aleph.tap.options.ScalingOptions`); cost at run time is
nothing per connection: the kernel does the spreading.
"""

from __future__ import annotations

import os
import socket
import sys
import warnings
from typing import Any, Callable, List, Optional, Sequence, Tuple

from twisted.application.service import IService, MultiService, Service
from twisted.internet import defer, error, protocol
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from zope.interface import implementer

from twisted_aleph.server import listen_shared

log = Logger()

INHERITED_FD = 3  # where a worker finds the shared listening socket
#: seconds before a worker that died unasked is started again; doubled (up to
#: RESPAWN_MAX_DELAY) each time a worker dies within RESPAWN_QUICK seconds of starting
RESPAWN_DELAY = 1.0
RESPAWN_MAX_DELAY = 30.0
RESPAWN_QUICK = 5.0


# -- a worker's command line ------------------------------------------------------

def worker_argv(argv: Sequence[str], index: Optional[int] = None) -> List[str]:
    """This process's twistd command line, rewritten for worker ``index``: it
    stays in the foreground (the parent watches it), keeps no pidfile, and
    adopts the inherited socket instead of binding.

    Logs: a worker of a foreground parent writes to the parent's stdout (or
    to ``--logfile X.worker-N`` if the parent has ``--logfile X``: twistd's
    log files must not be shared between processes); a worker of a daemon
    without ``--logfile`` writes to ``twistd.log.worker-N``, next to the
    daemon's ``twistd.log``.
    """
    out = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
           "--nodaemon", "--pidfile="]
    args = list(argv[1:])
    kept, logfile, daemon, rest = _twistd_options(args)
    out += kept
    skip = False
    for a in rest:  # the subcommand and its options
        if skip:
            skip = False
            continue
        if a in ("--workers", "--inherit-fd"):
            skip = True
            continue
        if a.startswith(("--workers=", "--inherit-fd=")):
            continue
        out.append(a)
    if index is not None:
        if logfile is None and daemon:
            logfile = "twistd.log"
        if logfile is not None and logfile != "-":
            logfile = f"{logfile}.worker-{index}"
    if logfile is not None:
        out.insert(5, "--logfile=" + logfile)
    return out + ["--inherit-fd", str(INHERITED_FD)]


def _twistd_options(args: List[str]) -> Tuple[List[str], Optional[str], bool, List[str]]:
    """Read twistd's own options (those before the subcommand) as twistd
    does, combined short ones included (``-no``, ``-lfile``): (the options to
    keep, without --pidfile and --logfile; the logfile; whether it runs as a
    daemon; the subcommand and everything after it)."""
    from twisted.scripts.twistd import ServerOptions

    spec = ServerOptions()
    short_with_value = {c for c, after in zip(spec.shortOpt, spec.shortOpt[1:]) if after == ":"}
    long_with_value = {name[:-1] for name in spec.longOpt if name.endswith("=")}
    kept: List[str] = []
    logfile: Optional[str] = None
    daemon = True
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "-":
        a = args[i]
        i += 1
        if a == "--":
            break
        if a.startswith("--"):
            name, has_value, value = a[2:].partition("=")
            if name in long_with_value and not has_value and i < len(args):
                value, i = args[i], i + 1
            if name == "nodaemon":
                daemon = False
            if name == "logfile":
                logfile = value
            elif name != "pidfile":
                kept.append(f"--{name}={value}" if name in long_with_value else a)
            continue
        for j, c in enumerate(a[1:], 2):  # a cluster of short options
            if c not in short_with_value:
                daemon = daemon and c != "n"
                kept.append("-" + c)
                continue
            value = a[j:]
            if not value and i < len(args):
                value, i = args[i], i + 1
            if c == "l":
                logfile = value
            else:
                kept += ["-" + c, value]
            break
    return kept, logfile, daemon, args[i:]


# -- the first process's side: the pool of workers --------------------------------

class _Worker(protocol.ProcessProtocol):
    """One worker process; its stdout and stderr are the first process's own."""

    def __init__(self, index: int, started: float = 0.0) -> None:
        self.index = index
        self.started = started
        self.pid: Optional[int] = None
        self.ended: Deferred = Deferred()
        self.exit_code: Optional[int] = None

    def connectionMade(self) -> None:
        self.pid = self.transport.pid

    def processEnded(self, reason: Any) -> None:
        self.exit_code = getattr(reason.value, "exitCode", None)
        signal = getattr(reason.value, "signal", None)
        if self.exit_code == 0:
            log.info("worker {i} (pid {pid}) exited", i=self.index, pid=self.pid)
        else:
            log.warn("worker {i} (pid {pid}) ended with status {code}, signal {signal}",
                     i=self.index, pid=self.pid, code=self.exit_code, signal=signal)
        self.ended.callback(self.exit_code)


class WorkerPool(Service):
    """Runs ``count`` worker processes of ``argv`` with the shared socket as
    fd :data:`INHERITED_FD`; restarts one that dies while the pool runs.

    Stopping closes each worker's stdin pipe, which its :class:`ParentWatch`
    takes as the order to stop gracefully (a pipe closes once: unlike a
    second SIGTERM, e.g. after a Ctrl-C that reached the whole process
    group, it cannot kill a worker halfway through its shutdown); workers
    still alive after ``stop_timeout`` seconds are killed.
    """

    def __init__(self, count: int, argv: Sequence[str], sock: socket.socket,
                 reactor: Any = None, stop_timeout: float = 15.0,
                 argv_for: Optional[Callable[[int], List[str]]] = None) -> None:
        self.count = count
        self.argv = list(argv)
        self.argv_for = argv_for or (lambda index: self.argv)
        self.sock = sock
        self._reactor = reactor
        self.stop_timeout = stop_timeout
        self.workers: List[_Worker] = []
        self.exit_codes: List[Optional[int]] = []
        self._respawn_delay: Optional[float] = None  # None: RESPAWN_DELAY

    @property
    def reactor(self) -> Any:
        if self._reactor is None:
            from twisted.internet import reactor
            return reactor
        return self._reactor

    @property
    def pids(self) -> List[int]:
        """The pids of the workers running now."""
        return [w.pid for w in self.workers if not w.ended.called and w.pid is not None]

    def startService(self) -> None:
        super().startService()
        for i in range(self.count):
            self._spawn(i + 1)

    def _spawn(self, index: int) -> None:
        worker = _Worker(index, self.reactor.seconds())
        argv = self.argv_for(index)
        self.reactor.spawnProcess(worker, argv[0], argv, env=os.environ.copy(),
                                  childFDs={0: "w", 1: 1, 2: 2,
                                            INHERITED_FD: self.sock.fileno()})
        self.workers.append(worker)
        worker.ended.addCallback(self._ended, worker)

    def _ended(self, code: Optional[int], worker: _Worker) -> None:
        self.exit_codes.append(code)
        if not self.running:
            return
        self.workers.remove(worker)
        delay = RESPAWN_DELAY
        if self.reactor.seconds() - worker.started < RESPAWN_QUICK and \
                self._respawn_delay is not None:
            delay = min(self._respawn_delay * 2, RESPAWN_MAX_DELAY)  # dies at start: back off
        self._respawn_delay = delay
        log.error("worker {i} died (status {code}); starting another in {d} s",
                  i=worker.index, code=code, d=delay)
        self.reactor.callLater(delay, self._respawn, worker.index)

    def _respawn(self, index: int) -> None:
        if self.running:
            self._spawn(index)

    def stopService(self) -> Optional[Deferred]:
        super().stopService()
        waits = []
        for worker in self.workers:
            if not worker.ended.called:
                try:
                    worker.transport.closeStdin()
                except Exception:
                    _signal(worker, "TERM")
                waits.append(worker.ended)
        if not waits:
            return None
        killer = self.reactor.callLater(self.stop_timeout, self._kill_all)
        done = defer.gatherResults(waits)

        def stopped(result: Any) -> Any:
            if killer.active():
                killer.cancel()
            return result
        return done.addCallback(stopped)

    def _kill_all(self) -> None:
        for worker in self.workers:
            if not worker.ended.called:
                log.warn("worker {i} still running {t} s after being told to stop; killing it",
                         i=worker.index, t=self.stop_timeout)
                _signal(worker, "KILL")


def _signal(worker: _Worker, name: str) -> None:
    try:
        worker.transport.signalProcess(name)
    except (error.ProcessExitedAlready, OSError, AttributeError):
        pass


# -- a worker's side ----------------------------------------------------------------

@implementer(IReadDescriptor)
class _ParentPipe:
    """The read end of the pipe from the parent: it closes when the parent dies."""

    def __init__(self, fd: int, on_gone: Callable[[], None]) -> None:
        self.fd = fd
        self.on_gone = on_gone

    def fileno(self) -> int:
        return self.fd

    def doRead(self) -> Any:
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return None
        except OSError:
            return error.ConnectionLost()
        return None if data else error.ConnectionDone()

    def connectionLost(self, reason: Any) -> None:
        self.on_gone()

    def logPrefix(self) -> str:
        return "parent-pipe"


class ParentWatch(Service):
    """In a worker: stop the reactor (a graceful stop) when the parent's pipe
    on ``fd`` (stdin) closes, i.e. when the first process is gone."""

    def __init__(self, fd: int = 0, reactor: Any = None,
                 on_gone: Optional[Callable[[], None]] = None) -> None:
        self.fd = fd
        self._reactor = reactor
        self.on_gone = on_gone
        self._pipe: Optional[_ParentPipe] = None

    def _get_reactor(self) -> Any:
        if self._reactor is None:
            from twisted.internet import reactor
            return reactor
        return self._reactor

    def startService(self) -> None:
        super().startService()
        os.set_blocking(self.fd, False)
        self._pipe = _ParentPipe(self.fd, self._gone)
        self._get_reactor().addReader(self._pipe)

    def _gone(self) -> None:
        self._pipe = None
        if not self.running:
            return
        log.info("the first process closed our pipe (it is stopping, or gone); stopping")
        if self.on_gone is not None:
            self.on_gone()
        else:
            reactor = self._get_reactor()
            if reactor.running:
                reactor.stop()

    def stopService(self) -> None:
        super().stopService()
        if self._pipe is not None:
            self._get_reactor().removeReader(self._pipe)
            self._pipe = None


# -- the service tree around a server ---------------------------------------------

class StopInOrder(MultiService):
    """A MultiService whose children stop one after another, last added first
    (the server finishes its connections before the bus they use closes)."""

    def stopService(self) -> Deferred:
        Service.stopService(self)
        d: Deferred = defer.succeed(None)
        for child in reversed(list(self)):
            d.addCallback(_stop, child)
            d.addErrback(_stop_failed, child)
        return d


def _stop(_: Any, service: IService) -> Any:
    return service.stopService()


def _stop_failed(failure: Any, service: IService) -> None:
    log.failure("error stopping {service}", failure, service=service)


class WorkerGroup(MultiService):
    """This process's server(s) for ``--workers``: built when the service
    starts (after twistd daemonized; with privileges, since it may bind).

    ``make_server(fd)`` returns the server service: ``fd`` None means bind
    the port yourself, otherwise serve that already listening socket.
    """

    def __init__(self, make_server: Callable[[Optional[int]], IService], *, workers: int = 1,
                 inherit_fd: Optional[int] = None, port: int = 0,
                 interface: str = "0.0.0.0", argv: Optional[Sequence[str]] = None,
                 stop_timeout: float = 15.0, reactor: Any = None) -> None:
        super().__init__()
        self.make_server = make_server
        self.workers = workers
        self.inherit_fd = inherit_fd
        self.port = port
        self.interface = interface
        self.argv = list(sys.argv if argv is None else argv)
        self.stop_timeout = stop_timeout
        self._reactor = reactor
        self.sock: Optional[socket.socket] = None
        self.pool: Optional[WorkerPool] = None
        self._built = False

    def privilegedStartService(self) -> None:
        self._build()
        super().privilegedStartService()

    def startService(self) -> None:
        self._build()  # also when started without the privileged step (tests)
        super().startService()
        if self.inherit_fd is not None:
            # The server adopted a duplicate: close the inherited original, so
            # the socket closes (new connections refused, not left waiting in
            # the backlog) once every process has stopped listening.
            try:
                os.close(self.inherit_fd)
            except OSError:
                pass

    def _build(self) -> None:
        if self._built:
            return
        self._built = True
        if self.inherit_fd is not None:
            ParentWatch(reactor=self._reactor).setServiceParent(self)
            self.make_server(self.inherit_fd).setServiceParent(self)
        elif self.workers > 1:
            self.sock = listen_shared(self.port, self.interface)
            log.info("{n} processes share {interface}:{port}", n=self.workers,
                     interface=self.interface, port=self.sock.getsockname()[1])
            self.make_server(self.sock.fileno()).setServiceParent(self)
            self.pool = WorkerPool(self.workers - 1, worker_argv(self.argv), self.sock,
                                   reactor=self._reactor, stop_timeout=self.stop_timeout,
                                   argv_for=lambda i: worker_argv(self.argv, i))
            self.pool.setServiceParent(self)
        else:
            self.make_server(None).setServiceParent(self)

    def stopService(self) -> Deferred:
        # Our server and the workers hold their own copies of the socket; this
        # one was kept to start replacement workers, which stopping ends.
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        return super().stopService()


# Names that moved: the shared socket to twisted_aleph.server (where tcp and
# http find it), the command-line side to twisted_aleph.tap. Importing them
# from here still works for one release, with a DeprecationWarning.
_MOVED_TO_SERVER = ("adopt", "family_of")
_MOVED_TO_TAP_OPTIONS = ("SCALING_OPTIONS", "BUS_OPTION", "ScalingOptions", "BusOptions",
                         "check_options")
_MOVED_TO_TAP_SCALING = ("RedisBusService", "worker_headers", "scaled_service", "STOP_MARGIN")
_MOVED_TO_TAP_HTTP = {"app_factory": "app_factory", "DEMO_APP": "DEFAULT_APP",
                      "DEMO_APP_FACTORY": "DEFAULT_APP_FACTORY"}


def __getattr__(name: str) -> Any:
    """The names that moved out of this module, with a DeprecationWarning."""
    home: Any
    if name in _MOVED_TO_SERVER:
        from twisted_aleph import server
        home, new_name = server, name
    elif name in _MOVED_TO_TAP_OPTIONS:
        from twisted_aleph.tap import options
        home, new_name = options, name
    elif name in _MOVED_TO_TAP_SCALING:
        from twisted_aleph.tap import scaling
        home, new_name = scaling, name
    elif name in _MOVED_TO_TAP_HTTP:
        from twisted_aleph.tap import http
        home, new_name = http, _MOVED_TO_TAP_HTTP[name]
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"twisted_aleph.workers.{name} moved to {home.__name__}.{new_name}",
                  DeprecationWarning, stacklevel=2)
    return getattr(home, new_name)


__all__ = [
    "INHERITED_FD", "listen_shared", "worker_argv", "WorkerPool", "ParentWatch", "WorkerGroup",
    "StopInOrder",
]
