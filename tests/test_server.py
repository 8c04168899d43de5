"""Server: close() hangs up connections, then aborts the ones that linger;
ServerService, any server as a twistd service; the ready servers' garbage
collector tuning; load_object, what a command line's module:attr names."""

from __future__ import annotations

import gc
import os
import platform
from typing import Any, List

from twisted.internet import defer, task
from twisted.internet.testing import StringTransport
from twisted.python import usage
from twisted.trial import unittest

from twisted_aleph.server import (
    SERVER_GC_OLDER_THRESHOLDS, SERVER_GC_THRESHOLD, NameNotFound, Server, ServerService,
    family_of, load_object, restore_gc, tune_gc,
)

CPYTHON = platform.python_implementation() == "CPython"


class FakePort:
    def __init__(self) -> None:
        self.listening = True

    def stopListening(self) -> None:
        self.listening = False


class BrokenPort(FakePort):
    def stopListening(self) -> None:
        raise RuntimeError("cannot stop")


class Lingering(StringTransport):
    """A transport whose peer never reads: loseConnection alone never ends it."""

    def __init__(self, server: Server) -> None:
        super().__init__()
        self.server = server
        self.aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        self.server.untrack(self)


class ServerCloseTests(unittest.TestCase):
    def test_close_aborts_lingering_connections_after_grace(self) -> None:
        clock, port = task.Clock(), FakePort()
        server = Server(port, reactor=clock)
        stuck = Lingering(server)
        server.track(stuck)
        done = server.close(grace=5)
        self.assertFalse(port.listening)
        self.assertTrue(stuck.disconnecting)  # asked politely first
        self.assertNoResult(done)
        clock.advance(4.9)
        self.assertFalse(stuck.aborted)
        clock.advance(0.1)
        self.assertTrue(stuck.aborted)
        self.successResultOf(done)

    def test_close_with_connections_that_go_in_time(self) -> None:
        clock = task.Clock()
        server = Server(FakePort(), reactor=clock)
        polite = Lingering(server)
        server.track(polite)
        done = server.close()
        server.untrack(polite)  # its connectionLost arrives
        self.successResultOf(done)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertFalse(polite.aborted)

    def test_close_twice_and_idle_server(self) -> None:
        clock = task.Clock()
        server = Server(FakePort(), reactor=clock)
        self.successResultOf(server.close())
        self.successResultOf(server.close())
        self.successResultOf(server.when_idle())

    def test_a_port_that_fails_to_stop_is_logged_and_close_still_fires(self) -> None:
        server = Server(BrokenPort(), reactor=task.Clock())
        self.successResultOf(server.close())
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


def captured_log(test: unittest.TestCase) -> List[dict]:
    """The log events emitted while ``test`` runs."""
    from twisted.logger import globalLogPublisher
    events: List[dict] = []
    globalLogPublisher.addObserver(events.append)
    test.addCleanup(globalLogPublisher.removeObserver, events.append)
    return events


class CuttingTests(unittest.TestCase):
    def test_cutting_lingering_connections_is_logged(self) -> None:
        from twisted.logger import LogLevel, formatEvent
        events = captured_log(self)
        clock = task.Clock()
        server = Server(FakePort(), reactor=clock)
        server.track(Lingering(server))
        done = server.close(grace=5, graceful=True)
        clock.advance(5)
        self.successResultOf(done)
        said = [formatEvent(e) for e in events if e.get("log_level") == LogLevel.warn]
        self.assertEqual(said, ["1 connections still open 5 s after closing began; cutting them"])


class FakeServer:
    """What ServerService.start returns: a port, connections, a close to record."""

    def __init__(self) -> None:
        self.port = 4242
        self.connections = {object(), object()}
        self.closes: List[Any] = []
        self.closed: defer.Deferred = defer.Deferred()

    def close(self, grace: float, *, graceful: bool = False) -> defer.Deferred:
        self.closes.append((grace, graceful))
        return self.closed


class ServerServiceTests(unittest.TestCase):
    def test_start_then_graceful_close_within_the_timeout(self) -> None:
        from twisted.logger import formatEvent
        events = captured_log(self)
        fake = FakeServer()
        service = ServerService(lambda: fake, name="aleph-x", interface="127.0.0.9",
                                shutdown_timeout=2.5, gc_threshold=0)
        self.assertIsNone(service.stopService())  # never started: nothing to close
        service.startService()
        self.assertIs(service.server, fake)
        stopped = service.stopService()
        self.assertEqual(fake.closes, [(2.5, True)])
        self.assertNoResult(stopped)
        fake.closed.callback(None)
        self.successResultOf(stopped)
        self.assertIs(service.server, fake)  # kept, to look at after stopping
        said = [formatEvent(e) for e in events]
        self.assertIn(f"aleph-x listening on 127.0.0.9:4242 (pid {os.getpid()})", said)
        self.assertIn("aleph-x shutting down: 2 connections open, 2.5 s to finish", said)

    def test_listening_line_of_each_server(self) -> None:
        """The three services keep the log lines scripts wait for."""
        from twisted_aleph.http import HTTPServerService
        from twisted_aleph.statsd import StatsdService
        from twisted_aleph.tcp import TCPServerService
        lines = {cls.listening_line.format(name="N", interface="I", port=1, pid=2)
                 for cls in (HTTPServerService, TCPServerService, StatsdService)}
        self.assertEqual(lines, {"N listening on I:1 (pid 2)", "N: framed EDN on port 1 (pid 2)",
                                 "statsd listening on UDP 1"})


class LoadObjectTests(unittest.TestCase):
    def test_module_colon_attribute(self) -> None:
        from twisted_aleph.demo import tcp as demo_tcp
        self.assertIs(load_object("twisted_aleph.demo.tcp:inc"), demo_tcp.inc)
        self.assertIs(load_object("twisted_aleph:demo.tcp.inc"), demo_tcp.inc)  # dotted attr

    def test_malformed_spec_is_a_value_error(self) -> None:
        for spec in ("twisted_aleph.demo.tcp.inc", ":inc", "twisted_aleph:", ""):
            e = self.assertRaises(ValueError, load_object, spec)
            self.assertNotIsInstance(e, ImportError)
            self.assertIn("module:attr", str(e))

    def test_nothing_by_that_name(self) -> None:
        e = self.assertRaises(NameNotFound, load_object, "no_such_module_xyz:f")
        self.assertIsInstance(e, ImportError)
        self.assertIsInstance(e, ValueError)
        self.assertRaises(AttributeError, load_object, "twisted_aleph.demo.tcp:no_such_thing")


class SharedSocketHelperTests(unittest.TestCase):
    def test_family_of(self) -> None:
        import socket
        self.assertEqual(family_of("0.0.0.0"), socket.AF_INET)
        self.assertEqual(family_of("::"), socket.AF_INET6)


class GCTuningTests(unittest.TestCase):
    """``tune_gc`` on CPython: thresholds raised, start-up frozen, all undone by
    ``restore_gc``; on PyPy (no ``gc.freeze``) it does nothing."""

    def setUp(self) -> None:
        self.before = gc.get_threshold() if CPYTHON else None

    def test_tune_then_restore(self) -> None:
        from twisted.logger import formatEvent, globalLogPublisher
        events: List[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        previous = tune_gc(12345)
        self.addCleanup(restore_gc, previous)
        if not CPYTHON:
            self.assertIsNone(previous)
            return
        self.assertEqual(previous, self.before)
        said = [formatEvent(e) for e in events if e.get("log_namespace") == "twisted_aleph.server"]
        self.assertEqual(len(said), 1)  # the operator sees what was done to the collector
        self.assertIn("(12345, 20, 20)", said[0])
        self.assertEqual(gc.get_threshold(), (12345,) + SERVER_GC_OLDER_THRESHOLDS)
        self.assertGreater(gc.get_freeze_count(), 0)
        restore_gc(previous)
        self.assertEqual(gc.get_threshold(), self.before)
        self.assertEqual(gc.get_freeze_count(), 0)

    def test_zero_leaves_the_collector_alone(self) -> None:
        self.assertIsNone(tune_gc(0))
        if CPYTHON:
            self.assertEqual(gc.get_threshold(), self.before)
            self.assertEqual(gc.get_freeze_count(), 0)
        restore_gc(None)  # nothing to undo: no error

    def test_option_default_and_refusal(self) -> None:
        from twisted_aleph.tap.options import GCOptions, check_gc_option

        class Options(GCOptions, usage.Options):
            def postOptions(self) -> None:
                check_gc_option(self)

        options = Options()
        options.parseOptions([])
        self.assertEqual(options["gc-threshold"], SERVER_GC_THRESHOLD)
        options.parseOptions(["--gc-threshold", "0"])
        self.assertEqual(options["gc-threshold"], 0)
        e = self.assertRaises(usage.UsageError, Options().parseOptions, ["--gc-threshold", "-1"])
        self.assertIn("--gc-threshold", str(e))

    @defer.inlineCallbacks
    def test_ready_services_tune_while_running(self) -> Any:
        """Each ready server's service tunes on start and restores on stop."""
        from twisted_aleph.http import HTTPServerService
        from twisted_aleph.statsd import StatsdService
        from twisted_aleph.tcp import TCPServerService
        services = [
            HTTPServerService(lambda request: {"body": "x"}, 0, interface="127.0.0.1",
                              gc_threshold=4321),
            TCPServerService(lambda s, info: None, 0, interface="127.0.0.1",
                             gc_threshold=4321),
            StatsdService(0, interface="127.0.0.1", gc_threshold=4321),
        ]
        for service in services:
            service.startService()
            tuned = gc.get_threshold()[0] if CPYTHON else None
            yield service.stopService()
            if CPYTHON:
                self.assertEqual(tuned, 4321, service)
                self.assertEqual(gc.get_threshold(), self.before, service)
                self.assertEqual(gc.get_freeze_count(), 0, service)

