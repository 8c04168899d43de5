"""The client's pool: limits, the queue, stats, and the per-phase timeouts.

Most tests run the real pool (Twisted's agents and HTTPConnectionPool, our
LimitedConnections) over in-memory connections (``twisted.test.iosim``) to
a twisted.web server whose answers the test gives by hand, with every timer
on a ``MemoryReactorClock``: each limit and timeout is exact, no waiting.
A few run against real sockets on 127.0.0.1 (a server that stalls), still
with the timers on a clock the test advances.
"""

from __future__ import annotations

from typing import Any, List, Tuple

from twisted.internet import defer, error, protocol, reactor
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim
from twisted.trial import unittest
from twisted.web import resource, server
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from twisted_aleph import http
from twisted_aleph.http.pool import LimitedConnections


class Controlled(resource.Resource):
    """Answers /now at once; every other request waits for the test."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: List[Any] = []

    def render(self, request: Any) -> Any:
        self.requests.append(request)
        if request.path == b"/now":
            return b"now"
        return server.NOT_DONE_YET

    def paths(self) -> List[str]:
        return [r.uri.decode() for r in self.requests]


@implementer(IAgentEndpointFactory)
class MemoryNetwork:
    """Endpoints whose connections are in-memory pipes to ``site``. With
    ``auto=False`` a connection attempt waits for :meth:`complete`."""

    def __init__(self, site: Any, clock: Any, auto: bool = True) -> None:
        self.site = site
        self.clock = clock
        self.auto = auto
        self.pumps: List[iosim.IOPump] = []
        self.pending: List[Tuple[Any, Deferred]] = []
        self.connections = 0

    def endpointForURI(self, uri: Any) -> Any:
        return _MemoryEndpoint(self)

    def complete(self) -> None:
        factory, d = self.pending.pop(0)
        client = factory.buildProtocol(None)
        srv = self.site.buildProtocol(None)
        self.pumps.append(iosim.connect(
            srv, iosim.FakeTransport(srv, isServer=True),
            client, iosim.FakeTransport(client, isServer=False), greet=False, clock=self.clock))
        self.connections += 1
        d.callback(client)

    def flush(self) -> None:
        """Move every byte both ways, and run what is due now, until quiet."""
        for _ in range(100):
            moved = False
            for pump in list(self.pumps):
                moved = pump.flush() or moved
            self.clock.advance(0)
            if not moved:
                return


class _MemoryEndpoint:
    def __init__(self, network: MemoryNetwork) -> None:
        self.network = network

    def connect(self, factory: Any) -> Deferred:
        entry: List[Any] = []

        def cancel(d: Deferred) -> None:
            if entry[0] in self.network.pending:
                self.network.pending.remove(entry[0])
        d: Deferred = Deferred(cancel)
        entry.append((factory, d))
        self.network.pending.append(entry[0])
        if self.network.auto:
            self.network.complete()
        return d


def answer(request: Any, body: bytes = b"done") -> None:
    request.write(body)
    request.finish()


class PoolTestCase(unittest.TestCase):

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.resource = Controlled()
        self.site = server.Site(self.resource, reactor=self.clock)
        self.net = MemoryNetwork(self.site, self.clock)

    def pool(self, **kwargs: Any) -> Any:
        return http.connection_pool(reactor=self.clock, endpoints=self.net, **kwargs)

    def get(self, path: str, pool: Any, host: str = "a.test", **kwargs: Any) -> Deferred:
        d = http.get(f"http://{host}{path}", pool=pool, **kwargs)
        self.net.flush()
        return d


class LimitTests(PoolTestCase):

    def test_max_per_host_queues_and_reuses(self) -> None:
        pool = self.pool(max_per_host=2)
        d1, d2, d3 = (self.get(f"/{i}", pool) for i in (1, 2, 3))
        self.assertEqual(self.resource.paths(), ["/1", "/2"])
        stats = pool.stats()
        self.assertEqual((stats["in_use"], stats["waiting"], stats["open"]), (2, 1, 2))
        self.assertEqual(stats["hosts"]["http://a.test:80"]["waiting"], 1)
        self.assertNoResult(d3)
        answer(self.resource.requests[0], b"one")
        self.net.flush()
        self.assertEqual(self.successResultOf(d1)["body"].read(), b"one")
        self.assertEqual(self.resource.paths(), ["/1", "/2", "/3"])
        self.assertEqual(self.net.connections, 2)  # /3 took /1's kept-alive connection
        answer(self.resource.requests[1])
        answer(self.resource.requests[2], b"three")
        self.net.flush()
        self.assertEqual(self.successResultOf(d3)["body"].read(), b"three")
        self.successResultOf(d2)
        stats = pool.stats()
        self.assertEqual((stats["open"], stats["idle"], stats["in_use"], stats["waiting"]),
                         (2, 2, 0, 0))

    def test_max_connections_over_all_hosts_and_order(self) -> None:
        pool = self.pool(max_per_host=2, max_connections=3)
        first = [self.get("/a1", pool), self.get("/a2", pool, "a.test"),
                 self.get("/b1", pool, "b.test")]
        later = [self.get("/b2", pool, "b.test"), self.get("/a3", pool),
                 self.get("/b3", pool, "b.test")]
        self.assertEqual(self.resource.paths(), ["/a1", "/a2", "/b1"])
        self.assertEqual(pool.stats()["waiting"], 3)
        answer(self.resource.requests[0])  # an a.test slot frees: the oldest waiter goes first
        self.net.flush()
        self.assertEqual(self.resource.paths()[3:], ["/b2"])
        answer(self.resource.requests[2])  # b1 done: b.test still has b2, so a3 (older) goes
        self.net.flush()
        self.assertEqual(self.resource.paths()[4:], ["/a3"])
        for r in self.resource.requests[1:]:
            if not r.finished:
                answer(r)
        self.net.flush()
        for r in self.resource.requests:
            if not r.finished:
                answer(r)
        self.net.flush()
        self.assertEqual(self.resource.paths()[5:], ["/b3"])
        for d in first + later:
            self.assertEqual(self.successResultOf(d)["status"], 200)
        self.assertEqual(pool.stats()["in_use"], 0)

    def test_limits_are_checked(self) -> None:
        self.assertRaises(ValueError, self.pool, max_per_host=0)
        self.assertRaises(ValueError, self.pool, max_connections=0)

    def test_pool_timeout_then_pool_usable(self) -> None:
        pool = self.pool(max_per_host=1, pool_timeout=5)
        busy = self.get("/busy", pool)
        waiting = self.get("/next", pool)
        self.clock.advance(4.9)
        self.assertNoResult(waiting)
        self.clock.advance(0.1)
        failure = self.failureResultOf(waiting, http.PoolTimeout)
        self.assertIsInstance(failure.value, defer.TimeoutError)
        self.assertIsInstance(failure.value, http.TimeoutError)
        self.assertEqual(failure.value.phase, "pool")
        self.assertIn("no free connection to http://a.test:80 within 5 s", str(failure.value))
        self.assertIn("max_per_host=1", str(failure.value))
        self.assertEqual(pool.stats()["waiting"], 0)
        self.assertEqual(self.resource.paths(), ["/busy"])  # never sent
        answer(self.resource.requests[0])
        self.net.flush()
        self.successResultOf(busy)
        again = self.get("/now", pool, pool_timeout=None)
        self.assertEqual(self.successResultOf(again)["body"].read(), b"now")

    def test_whole_timeout_while_queued_leaves_the_queue(self) -> None:
        pool = self.pool(max_per_host=1)
        self.get("/busy", pool)
        waiting = self.get("/next", pool, timeout=2)
        self.clock.advance(2)
        failure = self.failureResultOf(waiting, http.RequestTimeout)
        self.assertEqual(failure.value.phase, "request")
        self.assertEqual(pool.stats()["waiting"], 0)


class ConnectTimeoutTests(PoolTestCase):

    def test_connect_timeout_cancels_the_attempt(self) -> None:
        self.net.auto = False
        pool = self.pool(connect_timeout=3)
        d = self.get("/now", pool)
        self.assertEqual(len(self.net.pending), 1)
        self.assertEqual(pool.stats()["connecting"], 1)
        self.clock.advance(3)
        failure = self.failureResultOf(d, http.ConnectTimeout)
        e = failure.value
        # every earlier way of catching it still works
        self.assertIsInstance(e, defer.TimeoutError)
        self.assertIsInstance(e, error.TimeoutError)
        self.assertEqual((e.phase, e.seconds, e.server), ("connect", 3, "http://a.test:80"))
        self.assertEqual(str(e), "connecting to http://a.test:80 timed out after 3 s")
        self.assertEqual(self.net.pending, [])  # the attempt was cancelled
        self.assertEqual(pool.stats()["connecting"], 0)
        # per request: longer here, and the pool still works
        d = self.get("/now", pool, connect_timeout=10)
        self.clock.advance(5)
        self.net.complete()
        self.net.flush()
        self.assertEqual(self.successResultOf(d)["body"].read(), b"now")
        # no connect timer left behind: only the server's and the idle expiry remain
        left = sorted(repr(c).split("called=0 cancelled=0 ")[1].split("(")[0]
                      for c in self.clock.getDelayedCalls())
        self.assertEqual(left, ["HTTPConnectionPool._removeConnection", "TimeoutMixin.__timedOut"])


    def test_the_endpoints_own_timeout_is_a_connect_timeout_too(self) -> None:
        self.net.auto = False
        pool = self.pool()
        d = self.get("/now", pool)
        _, attempt = self.net.pending.pop(0)
        attempt.errback(error.TimeoutError())  # what HostnameEndpoint says after its 30 s
        failure = self.failureResultOf(d, http.ConnectTimeout)
        self.assertIn("connecting to http://a.test:80 timed out", str(failure.value))
        self.assertIsInstance(failure.value.__cause__, error.TimeoutError)
        self.assertEqual(pool.stats()["connecting"], 0)
        d = http.get("http://a.test/now", pool=pool)
        self.net.complete()
        self.net.flush()
        self.successResultOf(d)


class ReadTimeoutTests(PoolTestCase):

    def test_silent_server_before_headers(self) -> None:
        pool = self.pool(read_timeout=2)
        d = self.get("/silent", pool)
        self.clock.advance(1.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.net.flush()
        failure = self.failureResultOf(d, http.ReadTimeout)
        self.assertEqual(failure.value.phase, "read")
        self.assertEqual(str(failure.value), "no response from http://a.test:80 for 2 s")
        self.assertEqual(pool.stats()["open"], 0)  # dropped, not kept
        d = self.get("/now", pool)
        self.assertEqual(self.successResultOf(d)["body"].read(), b"now")

    def test_trickling_body_is_not_silence_then_silence_is(self) -> None:
        pool = self.pool(read_timeout=2)
        d = self.get("/trickle", pool)
        request = self.resource.requests[0]
        for _ in range(5):
            request.write(b"x")
            self.net.flush()
            self.clock.advance(1.5)
        self.assertNoResult(d)
        self.clock.advance(0.5)
        self.net.flush()
        failure = self.failureResultOf(d, http.ReadTimeout)
        self.assertIn("no byte of the response body from http://a.test for 2 s",
                      str(failure.value))
        self.assertEqual(pool.stats()["open"], 0)

    def test_per_request_read_timeout_and_none(self) -> None:
        pool = self.pool(read_timeout=2)
        d = self.get("/slow", pool, read_timeout=None)
        self.clock.advance(100)
        self.assertNoResult(d)
        answer(self.resource.requests[0])
        self.net.flush()
        self.successResultOf(d)
        d = self.get("/slow", pool, read_timeout=0.5)
        self.clock.advance(0.5)
        self.net.flush()
        self.failureResultOf(d, http.ReadTimeout)

    def test_raw_stream_consumer_holding_back_is_not_a_timeout(self) -> None:
        pool = self.pool(read_timeout=2, raw_stream=True)
        d = self.get("/stream", pool)
        request = self.resource.requests[0]
        request.write(b"one")
        self.net.flush()
        resp = self.successResultOf(d)
        body = resp["body"]
        request.write(b"two")
        self.net.flush()
        self.clock.advance(10)  # nobody takes: backpressure, the timer waits
        self.assertFalse(body.is_closed)
        self.assertEqual(self.successResultOf(body.take()), b"one")
        self.assertEqual(self.successResultOf(body.take()), b"two")
        self.clock.advance(1.9)
        self.assertFalse(body.is_closed)
        self.clock.advance(0.1)  # now the server is silent
        self.net.flush()
        self.assertTrue(body.is_closed)
        self.assertEqual(self.successResultOf(body.take("end")), "end")
        self.assertEqual(pool.stats()["open"], 0)
        self.flushLoggedErrors()


class IdleTests(PoolTestCase):

    def test_idle_connection_expires(self) -> None:
        pool = self.pool(idle_timeout=5)
        self.successResultOf(self.get("/now", pool))
        self.assertEqual((pool.stats()["idle"], pool.stats()["open"]), (1, 1))
        self.clock.advance(5)
        self.net.flush()
        self.assertEqual((pool.stats()["idle"], pool.stats()["open"]), (0, 0))

    def test_idle_connection_closed_by_server_is_forgotten(self) -> None:
        pool = self.pool()
        self.successResultOf(self.get("/now", pool))
        self.net.pumps[0].serverIO.loseConnection()
        self.net.flush()
        self.assertEqual((pool.stats()["idle"], pool.stats()["open"]), (0, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])  # its expiry timer is gone too
        self.successResultOf(self.get("/now", pool))
        self.assertEqual(self.net.connections, 2)

    def test_kept_alive_connection_closed_unnoticed_retries_idempotent_requests(self) -> None:
        pool = self.pool(max_per_host=1)
        self.successResultOf(self.get("/now", pool))
        # the server closes the idle connection, and the client has not read that yet
        self.net.pumps[0].serverIO.loseConnection()
        d = http.get("http://a.test/now", pool=pool)  # sent on it, lost, sent again on a new one
        self.net.flush()
        self.assertEqual(self.successResultOf(d)["body"].read(), b"now")
        self.assertEqual(self.net.connections, 2)
        stats = pool.stats()
        self.assertEqual((stats["open"], stats["idle"], stats["in_use"]), (1, 1, 0))
        # a POST is not sent twice
        self.net.pumps[1].serverIO.loseConnection()
        d = http.post("http://a.test/now", body=b"x", pool=pool)
        self.net.flush()
        from twisted.web._newclient import RequestTransmissionFailed, ResponseNeverReceived
        self.failureResultOf(d, ResponseNeverReceived, RequestTransmissionFailed)
        self.assertEqual(self.net.connections, 2)
        self.assertEqual(pool.stats()["in_use"], 0)
        self.successResultOf(self.get("/now", pool))

    def test_stats_shape(self) -> None:
        pool = self.pool()
        self.assertEqual(pool.stats(), {"open": 0, "idle": 0, "in_use": 0, "connecting": 0,
                                        "waiting": 0, "hosts": {}})
        from twisted_aleph.http.testing import stub_pool
        self.assertEqual(stub_pool(Controlled()).stats()["open"], 0)
        self.assertIsInstance(pool.connections, LimitedConnections)


class _Stall(protocol.Protocol):
    """Reads a request, tells the test, answers nothing."""

    def __init__(self, arrived: Deferred) -> None:
        self.arrived = arrived
        self.lost: Deferred = Deferred()

    def dataReceived(self, data: bytes) -> None:
        if not self.arrived.called:
            self.arrived.callback(self)

    def connectionLost(self, reason: Any) -> None:
        self.lost.callback(None)


class RealStallTests(unittest.TestCase):
    """A real server that stalls; the read timer on a clock the test moves."""

    @defer.inlineCallbacks
    def test_read_timeout_against_a_stalling_server(self) -> Any:
        arrived: Deferred = Deferred()
        factory = protocol.Factory.forProtocol(lambda: _Stall(arrived))  # type: ignore[arg-type]
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        clock = MemoryReactorClock()
        pool = http.connection_pool(clock=clock, read_timeout=30)
        self.addCleanup(pool.close)
        d = http.get(f"http://127.0.0.1:{port.getHost().port}/", pool=pool)
        stalled = yield arrived
        clock.advance(30)
        with self.assertRaises(http.ReadTimeout) as caught:
            yield d
        self.assertEqual(caught.exception.phase, "read")
        yield stalled.lost  # the server saw us hang up
