"""Server: close() hangs up connections, then aborts the ones that linger."""

from __future__ import annotations

from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from twisted_aleph.server import Server


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
