"""``--workers N``: processes sharing one port, chat across them on Redis.

Units: the worker command line, options, the shared socket adopted in this
process, a worker's watch on its parent's pipe, the pool's start/stop/respawn
with tiny child processes, and the order a service tree stops in (the tree
``--workers`` builds is tested with the twistd commands, tests/test_tap.py).
Integration: ONE ``twistd -n aleph-http --workers 2 --bus redis://...`` child
process and Debian's ``redis-server`` (skipped, saying why, only where that
is absent): both processes answer, chat crosses them, SIGTERM stops all.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from typing import Any, List, Optional

from twisted.application.service import Service
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.trial import unittest

from twisted_aleph import http, workers
from twisted_aleph.server import listen_shared
from twisted_aleph.deferred import timeout
from twisted_aleph.http.websocket import closed, websocket_client

from tests.test_redisbus import REDIS, free_port, start_redis, stop_redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WAIT = 20.0
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


class WorkerArgvTests(unittest.TestCase):
    def test_worker_adopts_fd_3_in_the_foreground_without_pidfile(self) -> None:
        argv = ["/usr/bin/twistd", "--pidfile", "x.pid", "aleph-http", "--workers", "4",
                "--port", "8080", "--bus=redis://h:1", "--workers=4", "--inherit-fd=9"]
        out = workers.worker_argv(argv)
        self.assertEqual(out[:3], TWISTD)
        self.assertEqual(out[3:], ["--nodaemon", "--pidfile=", "aleph-http", "--port", "8080",
                                   "--bus=redis://h:1", "--inherit-fd", "3"])

    def test_log_files_are_never_shared(self) -> None:
        fg = ["twistd", "-n", "--logfile", "/var/log/a.log", "aleph-http", "--workers", "2"]
        self.assertIn("--logfile=/var/log/a.log.worker-2", workers.worker_argv(fg, 2))
        self.assertNotIn("/var/log/a.log", workers.worker_argv(fg, 2))
        daemon = ["twistd", "aleph-http", "--workers", "2"]
        self.assertIn("--logfile=twistd.log.worker-1", workers.worker_argv(daemon, 1))
        foreground = ["twistd", "-n", "aleph-http", "--workers", "2"]
        self.assertFalse([a for a in workers.worker_argv(foreground, 1) if "logfile" in a])
        to_stdout = ["twistd", "--logfile=-", "aleph-http", "--workers", "2"]
        self.assertIn("--logfile=-", workers.worker_argv(to_stdout, 1))

    def test_combined_short_options_are_read_as_twistd_reads_them(self) -> None:
        # -no: foreground (and no save); -lfile: a log file, never shared
        out = workers.worker_argv(["twistd", "-no", "aleph-http", "--workers", "2"], 1)
        self.assertEqual(out[3:], ["--nodaemon", "--pidfile=", "-n", "-o", "aleph-http",
                                   "--inherit-fd", "3"])
        out = workers.worker_argv(["twistd", "-nlfoo.log", "aleph-http", "--workers=2"], 2)
        self.assertEqual(out[3:], ["--nodaemon", "--pidfile=", "--logfile=foo.log.worker-2",
                                   "-n", "aleph-http", "--inherit-fd", "3"])
        out = workers.worker_argv(["twistd", "-l", "a.log", "-r", "poll", "--umask", "022",
                                   "aleph-tcp", "-l", "x"], 1)  # (the plugin's own -l stays)
        self.assertEqual(out[3:], ["--nodaemon", "--pidfile=", "--logfile=a.log.worker-1",
                                   "-r", "poll", "--umask=022", "aleph-tcp", "-l", "x",
                                   "--inherit-fd", "3"])

    def test_python_dash_c_command_line(self) -> None:
        argv = ["-c", "-n", "--pidfile=", "aleph-tcp", "--workers", "2"]
        self.assertEqual(workers.worker_argv(argv)[3:],
                         ["--nodaemon", "--pidfile=", "-n", "aleph-tcp", "--inherit-fd", "3"])


class StopInOrderTests(unittest.TestCase):
    def test_stop_in_order(self) -> None:
        events: List[str] = []
        gate: Deferred = Deferred()

        class Step(Service):
            def __init__(self, name: str, wait: Optional[Deferred] = None) -> None:
                self.name, self.wait = name, wait

            def stopService(self) -> Any:
                events.append(self.name)
                return self.wait

        top = workers.StopInOrder()
        Step("bus").setServiceParent(top)
        Step("server", gate).setServiceParent(top)
        top.startService()
        done = top.stopService()
        self.assertEqual(events, ["server"])  # the bus waits for the server
        gate.callback(None)
        self.assertEqual(events, ["server", "bus"])
        self.successResultOf(done)


class SharedSocketTests(unittest.TestCase):
    async def _serve_inherited(self) -> None:
        sock = listen_shared(0, "127.0.0.1")
        self.addCleanup(sock.close)
        port = sock.getsockname()[1]
        from twisted_aleph.demo.http import make_app
        servers = [http.start_server(make_app(), 0, interface="127.0.0.1", fd=sock.fileno(),
                                     response_headers={"x-aleph-worker": str(i)})
                   for i in (1, 2)]
        for s in servers:
            self.addCleanup(s.close)
            self.assertEqual(s.port, port)
        pool = http.connection_pool(persistent=False)
        self.addCleanup(pool.close)
        resp = await timeout(http.get(f"http://127.0.0.1:{port}/hello", pool=pool), WAIT)
        self.assertEqual(resp["body"].read(), b"hello world!")
        self.assertIn(resp["headers"]["x-aleph-worker"], ("1", "2"))

    def test_two_servers_adopt_one_listening_socket(self) -> Deferred:
        return defer.ensureDeferred(self._serve_inherited())

    def test_tcp_service_on_an_inherited_socket(self) -> Deferred:
        from twisted_aleph.tcp import TCPServerService, framed_client
        sock = listen_shared(0, "127.0.0.1")
        self.addCleanup(sock.close)
        service = TCPServerService(lambda st, info: st.put(info["server_port"]), 0,
                                   interface="127.0.0.1", fd=sock.fileno())
        service.startService()
        self.addCleanup(service.stopService)
        port = sock.getsockname()[1]

        async def check() -> None:
            conn = await timeout(framed_client("127.0.0.1", port), WAIT)
            self.addCleanup(conn.close)
            self.assertEqual(await timeout(conn.take(), WAIT), port)
        return defer.ensureDeferred(check())


class ParentWatchTests(unittest.TestCase):
    def test_closed_pipe_means_stop(self) -> Deferred:
        read_end, write_end = os.pipe()
        self.addCleanup(os.close, read_end)
        gone: Deferred = Deferred()
        watch = workers.ParentWatch(read_end, on_gone=lambda: gone.callback("stop"))
        watch.startService()
        self.addCleanup(watch.stopService)
        os.write(write_end, b"chatter is ignored")
        os.close(write_end)
        return timeout(gone, WAIT).addCallback(self.assertEqual, "stop")


class ChildTests(unittest.TestCase):
    """WorkerPool with tiny children standing in for twistd workers."""

    def pool(self, code: str, count: int = 2) -> workers.WorkerPool:
        sock = listen_shared(0, "127.0.0.1")
        self.addCleanup(sock.close)
        argv = [sys.executable, "-c", code]
        pool = workers.WorkerPool(count, argv, sock, stop_timeout=WAIT)
        pool.startService()
        self.addCleanup(lambda: pool.stopService() if pool.running else None)
        return pool

    def test_stop_closes_their_pipe_and_waits(self) -> Deferred:
        # a child that checks it got the socket as fd 3, then waits for stdin to close
        pool = self.pool("import os, sys, socket; socket.socket(fileno=3).getsockname(); "
                         "sys.stdin.read(); sys.exit(0)")
        self.assertEqual(len(pool.pids), 2)

        def check(_: Any) -> None:
            self.assertEqual(pool.exit_codes, [0, 0])
            self.assertEqual(pool.pids, [])
        return timeout(pool.stopService(), WAIT).addCallback(check)

    def test_a_dead_worker_is_replaced(self) -> Deferred:
        self.patch(workers, "RESPAWN_DELAY", 0)
        marker = self.mktemp()
        # the first child to run exits 3; its replacement behaves
        pool = self.pool(
            "import os, sys\n"
            f"m = {marker!r}\n"
            "if not os.path.exists(m):\n"
            "    open(m, 'w').close(); sys.exit(3)\n"
            "sys.stdin.read()\n", count=1)
        first = pool.workers[0]

        async def check() -> None:
            await timeout(first.ended, WAIT)
            # the replacement is started on the next reactor turn (delay 0)
            await task.deferLater(reactor, 0, lambda: None)
            self.assertEqual(len(pool.workers), 1)
            self.assertIsNot(pool.workers[0], first)
            await timeout(pool.stopService(), WAIT)
            self.assertEqual(pool.exit_codes, [3, 0])
        return defer.ensureDeferred(check())


class _FakeProcessTransport:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.stdin_closed = False

    def closeStdin(self) -> None:
        self.stdin_closed = True


class _ProcessClock(task.Clock):
    """A Clock that also 'spawns' processes: each gets a fake transport."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: List[Any] = []

    def spawnProcess(self, proto: Any, executable: str, args: Any, env: Any = None,
                     childFDs: Any = None) -> None:
        self.spawned.append(proto)
        proto.makeConnection(_FakeProcessTransport(1000 + len(self.spawned)))


class RespawnBackoffTests(unittest.TestCase):
    def test_workers_dying_at_start_are_restarted_ever_more_slowly(self) -> None:
        from twisted.internet.error import ProcessTerminated
        from twisted.python.failure import Failure
        clock = _ProcessClock()
        sock = listen_shared(0, "127.0.0.1")
        self.addCleanup(sock.close)
        pool = workers.WorkerPool(1, ["worker"], sock, reactor=clock)
        pool.startService()
        delays = []
        for _ in range(7):
            clock.spawned[-1].processEnded(Failure(ProcessTerminated(exitCode=1)))
            [call] = clock.getDelayedCalls()
            delays.append(call.getTime() - clock.seconds())
            clock.advance(delays[-1])
        self.assertEqual(delays, [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0])
        # one that ran a while before dying is restarted after the base delay
        clock.advance(60)
        clock.spawned[-1].processEnded(Failure(ProcessTerminated(exitCode=1)))
        [call] = clock.getDelayedCalls()
        self.assertEqual(call.getTime() - clock.seconds(), 1.0)
        clock.advance(1.0)
        # stopping closes the live worker's pipe and waits for it
        stopped = pool.stopService()
        self.assertTrue(clock.spawned[-1].transport.stdin_closed)
        self.assertNoResult(stopped)
        clock.spawned[-1].processEnded(Failure(ProcessTerminated(exitCode=0)))
        self.successResultOf(stopped)
        self.assertEqual(clock.getDelayedCalls(), [])


# -- the whole thing: twistd, two processes, Redis ------------------------------------

class TwistdProcess(protocol.ProcessProtocol):
    """A twistd child; ``listening`` fires once ``count`` processes logged ``marker``."""

    def __init__(self, count: int, marker: bytes = b"aleph-http listening on") -> None:
        self.count = count
        self.marker = marker
        self.output = b""
        self.listening: Deferred = Deferred()
        self.ended: Deferred = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data
        if not self.listening.called and \
                self.output.count(self.marker) >= self.count:
            self.listening.callback(None)

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        if not self.listening.called:
            self.listening.errback(RuntimeError(
                f"twistd exited: {self.output[-2000:].decode(errors='replace')}"))
        self.ended.callback((getattr(reason.value, "exitCode", None),
                             getattr(reason.value, "signal", None)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class TwistdCase(unittest.TestCase):
    """Runs ``twistd -n <plugin>`` as a child, killed at cleanup if still alive."""

    timeout = 90

    def start_twistd(self, plugin: str, *args: str) -> TwistdProcess:
        marker = b"aleph-http listening on" if plugin == "aleph-http" else b"framed EDN on port"
        process = TwistdProcess(2, marker)
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        reactor.spawnProcess(process, sys.executable,
                             TWISTD + ["-n", "--pidfile=", plugin] + list(args),
                             env=env)

        def kill_leftovers() -> Any:
            if not process.ended.called:
                try:
                    process.transport.signalProcess("KILL")  # its workers follow (closed pipe)
                except ProcessExitedAlready:
                    pass
                return process.ended
            return None
        self.addCleanup(kill_leftovers)
        return process


class TwistdWorkersIntegration(TwistdCase):
    def setUp(self) -> Deferred:
        if REDIS is None:
            raise unittest.SkipTest("redis-server not installed (apt-get install redis-server)")
        self.redis_port = free_port()
        self.redis = start_redis(self.redis_port)
        self.addCleanup(lambda: stop_redis(self.redis))
        return self.redis.ready

    async def _two_workers_one_chat(self) -> None:
        port = free_port()
        redis_url = f"redis://127.0.0.1:{self.redis_port}"
        twistd = self.start_twistd("aleph-http", "--port", str(port), "--interface", "127.0.0.1",
                                   "--workers", "2", "--bus", redis_url,
                                   "--shutdown-timeout", "5")
        parent_pid = twistd.transport.pid
        await timeout(twistd.listening, WAIT)
        pids = set(int(p) for p in re.findall(rb"listening on 127\.0\.0\.1:\d+ \(pid (\d+)\)",
                                               twistd.output))
        self.assertEqual(len(pids), 2, twistd.output[-2000:])

        # /hello until both processes have answered (fresh connection each time)
        pool = http.connection_pool(persistent=False)
        self.addCleanup(pool.close)
        answered = set()
        for _ in range(200):
            resp = await timeout(http.get(f"http://127.0.0.1:{port}/hello", pool=pool), WAIT)
            self.assertEqual(resp["body"].read(), b"hello world!")
            answered.add(int(resp["headers"]["x-aleph-worker"]))
            if len(answered) == 2:
                break
        self.assertEqual(answered, pids)

        # two chat clients on different workers
        url = f"ws://127.0.0.1:{port}/chat"
        alice = await timeout(websocket_client(url), WAIT)
        self.addCleanup(alice.close)
        alice_pid = int(alice.info["headers"]["x-aleph-worker"])
        bob = None
        for _ in range(50):
            candidate = await timeout(websocket_client(url), WAIT)
            if int(candidate.info["headers"]["x-aleph-worker"]) != alice_pid:
                bob = candidate
                break
            candidate.close()
        self.assertIsNotNone(bob, "50 chat connections all landed on one worker")
        self.addCleanup(bob.close)

        async def join(conn: Any, name: str) -> None:
            for msg in ("lobby", name, f"{name} is here"):
                await timeout(conn.put(msg), WAIT)
            # one's own line back from Redis: its subscription is live
            self.assertEqual(await timeout(conn.take(), WAIT), f"{name}: {name} is here")

        await join(bob, "bob")
        await join(alice, "alice")
        self.assertEqual(await timeout(bob.take(), WAIT), "alice: alice is here")
        await timeout(bob.put("hi alice"), WAIT)
        self.assertEqual(await timeout(alice.take(), WAIT), "bob: hi alice")

        # SIGTERM the first process: everyone says goodbye and exits 0
        os.kill(parent_pid, signal.SIGTERM)
        infos = [await timeout(closed(c), WAIT) for c in (alice, bob)]
        self.assertEqual([i["close_code"] for i in infos], [1001, 1001])
        code, killed_by = await timeout(twistd.ended, WAIT)
        # twistd stops cleanly, then ends by the signal that stopped it (as a
        # shell expects of a process stopped by SIGTERM): that is its "0".
        self.assertIn((code, killed_by), [(0, None), (None, signal.SIGTERM)],
                      twistd.output[-3000:])
        self.assertEqual(twistd.output.count(b"Server Shut Down."), 2)
        # the worker exited with status 0 (the first process logs it so)
        exited = [int(p) for p in re.findall(rb"worker \d+ \(pid (\d+)\) exited\n",
                                             twistd.output)]
        self.assertEqual(exited, list(pids - {parent_pid}), twistd.output[-3000:])
        for pid in pids:
            self.assertFalse(_alive(pid), f"process {pid} still running")

    def test_two_workers_share_the_port_and_the_chat(self) -> Deferred:
        return defer.ensureDeferred(self._two_workers_one_chat())


class TwistdTCPWorkersIntegration(TwistdCase):
    """``aleph-tcp --workers 2``: both processes serve framed EDN, SIGTERM stops both."""

    async def _tcp_workers(self) -> None:
        from twisted_aleph.demo.tcp import client as edn_client
        port = free_port()
        twistd = self.start_twistd("aleph-tcp", "--port", str(port), "--interface", "127.0.0.1",
                                   "--workers", "2", "--shutdown-timeout", "5")
        parent_pid = twistd.transport.pid
        await timeout(twistd.listening, WAIT)
        pids = set(int(p) for p in re.findall(rb"framed EDN on port \d+ \(pid (\d+)\)",
                                               twistd.output))
        self.assertEqual(len(pids), 2)
        for i in range(10):
            conn = await timeout(edn_client("127.0.0.1", port), WAIT)
            await timeout(conn.put(i), WAIT)
            self.assertEqual(await timeout(conn.take(), WAIT), i + 1)
            conn.close()
        os.kill(parent_pid, signal.SIGTERM)
        code, killed_by = await timeout(twistd.ended, WAIT)
        self.assertIn((code, killed_by), [(0, None), (None, signal.SIGTERM)])
        exited = [int(p) for p in re.findall(rb"worker \d+ \(pid (\d+)\) exited\n",
                                             twistd.output)]
        self.assertEqual(exited, list(pids - {parent_pid}), twistd.output[-3000:])
        for pid in pids:
            self.assertFalse(_alive(pid), f"process {pid} still running")

    def test_tcp_workers_answer_and_stop(self) -> Deferred:
        return defer.ensureDeferred(self._tcp_workers())
