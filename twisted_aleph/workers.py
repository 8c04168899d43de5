"""Several processes serving one listening port (``twistd ... --workers N``).

The first process binds the port, serves it, and starts N-1 copies of its
own command line (:func:`worker_argv`) with the listening socket passed down
as file descriptor 3; each worker adopts that socket
(``reactor.adoptStreamPort``) and the kernel spreads accepted connections
among the processes. No load balancer, no home-made IPC: state that must span
workers (chat rooms) goes through Redis (``--bus redis://...``,
:class:`RedisBusService`).

Stopping (SIGTERM to the first process; twistd stops its services) is
graceful everywhere: every process stops accepting and finishes what is in
flight (the server services' ``stopService``). The first process tells its
workers to stop by closing their stdin pipe (:class:`ParentWatch`), waits for
them, and kills any still alive after ``stop_timeout``; a worker whose parent
vanished sees the same closed pipe, so no orphan keeps the port. Workers
write their logs to the first process's stdout/stderr. A worker that dies
while the pool runs is restarted after :data:`RESPAWN_DELAY`.

The plugins call :func:`scaled_service` with their server service and add
:data:`SCALING_OPTIONS` (and :data:`BUS_OPTION`) to their options; cost
at run time is nothing per connection: the kernel does the spreading.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

from twisted.application.service import IService, MultiService, Service
from twisted.internet import defer, error, protocol
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IReadDescriptor
from twisted.logger import Logger
from twisted.python import usage
from zope.interface import implementer

log = Logger()

INHERITED_FD = 3  # where a worker finds the shared listening socket
#: seconds before a worker that died unasked is started again; doubled (up to
#: RESPAWN_MAX_DELAY) each time a worker dies within RESPAWN_QUICK seconds of starting
RESPAWN_DELAY = 1.0
RESPAWN_MAX_DELAY = 30.0
RESPAWN_QUICK = 5.0
#: seconds the first process waits for its workers beyond their own shutdown timeout
STOP_MARGIN = 5.0
#: the ``--app`` default, and what it means once ``--bus`` is given
DEMO_APP = "twisted_aleph.demo.http:app"
DEMO_APP_FACTORY = "twisted_aleph.demo.http:make_app"


# -- the shared socket ------------------------------------------------------------

def family_of(interface: str) -> int:
    """The address family of a listening interface (``"::"`` is IPv6)."""
    return socket.AF_INET6 if ":" in interface else socket.AF_INET


def listen_shared(port: int, interface: str = "0.0.0.0", backlog: int = 1024) -> socket.socket:
    """A bound, listening, non-blocking TCP socket to share among workers."""
    sock = socket.socket(family_of(interface), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((interface, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def adopt(fd: int, factory: protocol.Factory, reactor: Any = None,
          family: int = socket.AF_INET) -> IListeningPort:
    """Serve ``factory`` on an already listening socket inherited as ``fd``
    (the reactor works on its own duplicate of ``fd``)."""
    if reactor is None:
        from twisted.internet import reactor  # type: ignore[no-redef]
    return reactor.adoptStreamPort(fd, family, factory)


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


# -- the service tree the plugins build ---------------------------------------------

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


class RedisBusService(Service):
    """The chat rooms' bus as a service: a :class:`~twisted_aleph.redisbus.
    RedisEventBus` on ``url``, connected when the service starts and closed
    when it stops. It has the EventBus interface itself (handlers are built
    before the service starts, and keep this object)."""

    def __init__(self, url: str, reactor: Any = None) -> None:
        from twisted_aleph.resp import parse_pubsub_url
        parse_pubsub_url(url)  # ValueError now rather than at start
        self.url = url
        self._reactor = reactor
        self.bus: Any = None

    def startService(self) -> None:
        super().startService()
        from twisted_aleph.redisbus import RedisEventBus
        self.bus = RedisEventBus(self.url, reactor=self._reactor)
        self.bus.when_connected().addCallbacks(
            lambda _: log.info("chat rooms on Redis at {url}", url=self.url),
            lambda f: log.failure("cannot reach Redis at {url}", f, url=self.url))

    def stopService(self) -> Optional[Deferred]:
        super().stopService()
        bus, self.bus = self.bus, None
        return bus.close() if bus is not None else None

    def _started(self) -> Any:
        if self.bus is None:
            raise RuntimeError("the Redis bus service is not running")
        return self.bus

    def subscribe(self, topic: Any) -> Any:
        return self._started().subscribe(topic)

    def publish(self, topic: Any, msg: Any) -> Deferred:
        return self._started().publish(topic, msg)

    def when_subscribed(self, topic: Any) -> Deferred:
        return self._started().when_subscribed(topic)

    def is_active(self, topic: Any) -> bool:
        return self.bus is not None and self.bus.is_active(topic)

    def downstream(self, topic: Any) -> List[Any]:
        return self.bus.downstream(topic) if self.bus is not None else []


# -- plugin options -------------------------------------------------------------------

SCALING_OPTIONS: List[List[Any]] = [
    ["workers", None, 1,
     "Processes serving the port: this one and N-1 it starts, sharing its socket.", int],
    ["shutdown-timeout", None, 10.0,
     "On SIGTERM, seconds in-flight requests get to finish before they are cut.", float],
    ["inherit-fd", None, None,
     "Internal (set by --workers): serve the listening socket inherited as this fd.", int],
]
BUS_OPTION: List[Any] = ["bus", None, None,
              "redis://[[user]:password@]host:port: chat rooms go through Redis, "
              "so they span workers."]


class ScalingOptions:
    """Mixed into a plugin's ``usage.Options``: ``--workers``,
    ``--shutdown-timeout``, ``--inherit-fd`` (call :func:`check_options`)."""

    optParameters: List[List[Any]] = SCALING_OPTIONS


class BusOptions:
    """Mixed into a plugin's ``usage.Options``: ``--bus redis://...``."""

    optParameters: List[List[Any]] = [BUS_OPTION]


def check_options(options: Mapping[str, Any]) -> None:
    """Refuse impossible values of :data:`SCALING_OPTIONS` / :data:`BUS_OPTION`
    with a :class:`usage.UsageError` naming the option."""
    if options["workers"] < 1:
        raise usage.UsageError("--workers must be at least 1")
    if options["shutdown-timeout"] < 0:
        raise usage.UsageError("--shutdown-timeout must not be negative")
    bus = options.get("bus")
    if bus:
        from twisted_aleph.resp import parse_pubsub_url
        try:
            parse_pubsub_url(bus)
        except ValueError as e:
            raise usage.UsageError(f"--bus: {e}")


def app_factory(spec: str) -> Callable[..., Any]:
    """With ``--bus``, ``--app`` names a factory ``f(bus=...)`` returning the
    app (the demo's default app becomes its ``make_app``): the factory, or
    :class:`usage.UsageError`."""
    from twisted_aleph.http.server import load_handler
    if spec == DEMO_APP:
        spec = DEMO_APP_FACTORY
    try:
        factory = load_handler(spec)
    except (ValueError, ImportError, AttributeError) as e:
        raise usage.UsageError(f"--app: {e}")
    from klein import Klein
    if isinstance(factory, Klein) or not callable(factory):
        raise usage.UsageError(
            f"--bus needs --app to name a factory taking bus=, such as {DEMO_APP_FACTORY}")
    return factory


def worker_headers(options: Mapping[str, Any]) -> Optional[dict]:
    """``x-aleph-worker: <pid>`` on every HTTP response when several
    processes serve the port (so a client can tell who answered)."""
    if options["workers"] > 1 or options.get("inherit-fd") is not None:
        return {"x-aleph-worker": str(os.getpid())}
    return None


def scaled_service(options: Mapping[str, Any],
                   make_server: Callable[[Optional[int], Any], IService], *,
                   argv: Optional[Sequence[str]] = None, reactor: Any = None) -> IService:
    """A plugin's whole service: ``make_server(fd, bus)`` (see
    :class:`WorkerGroup`; ``bus`` is a :class:`RedisBusService` with
    ``--bus``, else None) run by ``options["workers"]`` processes; on stop,
    the server(s) finish first, then the bus closes. One process and no bus:
    just the server service, as before there were workers."""
    if options["workers"] == 1 and options.get("inherit-fd") is None and not options.get("bus"):
        return make_server(None, None)
    top = StopInOrder()
    bus = RedisBusService(options["bus"], reactor) if options.get("bus") else None
    if bus is not None:
        bus.setServiceParent(top)
    WorkerGroup(lambda fd: make_server(fd, bus), workers=options["workers"],
                inherit_fd=options.get("inherit-fd"), port=options["port"],
                interface=options["interface"], argv=argv,
                stop_timeout=options["shutdown-timeout"] + STOP_MARGIN,
                reactor=reactor).setServiceParent(top)
    return top


__all__ = [
    "INHERITED_FD", "listen_shared", "adopt", "family_of", "worker_argv", "WorkerPool",
    "ParentWatch", "WorkerGroup", "StopInOrder", "RedisBusService", "SCALING_OPTIONS",
    "BUS_OPTION", "ScalingOptions", "BusOptions", "check_options", "app_factory", "worker_headers", "scaled_service",
]
