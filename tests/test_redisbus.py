"""RESP codec as pure functions; RedisEventBus against a real redis-server.

The integration tests start Debian's ``redis-server`` on a free port
(``.ci/run`` installs it) and skip, saying why, only where it is absent.
"""

from __future__ import annotations

import shutil
import socket

from hypothesis import given, strategies as st
from twisted.internet import defer, protocol, reactor
from twisted.trial import unittest

from twisted_aleph import resp

REDIS = shutil.which("redis-server")


class RespCodec(unittest.TestCase):
    def test_encode_command(self) -> None:
        self.assertEqual(resp.encode_command("PUBLISH", "room", "hé"),
                         b"*3\r\n$7\r\nPUBLISH\r\n$4\r\nroom\r\n$3\r\nh\xc3\xa9\r\n")

    def test_encode_rejects_unknown_types(self) -> None:
        self.assertRaises(TypeError, resp.encode_command, "SET", None)

    def test_reply_kinds(self) -> None:
        p = resp.RespParser()
        replies = p.feed(b"+OK\r\n:42\r\n$-1\r\n$3\r\nabc\r\n*2\r\n$1\r\na\r\n:1\r\n-ERR bad\r\n")
        self.assertEqual(replies[:5], [b"OK", 42, None, b"abc", [b"a", 1]])
        self.assertIsInstance(replies[5], resp.ReplyError)
        self.assertEqual(str(replies[5]), "ERR bad")

    @given(st.lists(st.lists(st.binary(max_size=20), max_size=4), min_size=1, max_size=5),
           st.data())
    def test_any_chunking(self, arrays, data) -> None:
        wire = b"".join(resp.encode_command(*a) if a else b"*0\r\n" for a in arrays)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
        p = resp.RespParser()
        got = []
        last = 0
        for c in cuts + [len(wire)]:
            got.extend(p.feed(wire[last:c]))
            last = c
        self.assertEqual(got, [list(a) for a in arrays])

    def test_garbage_is_an_error(self) -> None:
        self.assertRaises(resp.RespError, resp.RespParser().feed, b"?what\r\n")
        self.assertRaises(resp.RespError, resp.RespParser().feed, b":12x\r\n")

    def test_deep_nesting_is_a_clear_error_not_a_crash(self) -> None:
        # Without a depth limit this was a RecursionError, not a RespError.
        with self.assertRaises(resp.RespError):
            resp.RespParser().feed(b"*1\r\n" * 5000 + b":1\r\n")
        nested = b"*1\r\n" * 10 + b":1\r\n"
        value = resp.RespParser().feed(nested)[0]
        for _ in range(10):
            value = value[0]
        self.assertEqual(value, 1)

    def test_oversized_bulk_refused_before_buffering(self) -> None:
        p = resp.RespParser(max_bulk=10)
        self.assertRaises(resp.RespError, p.feed, b"$11\r\n")

    def test_parse_url(self) -> None:
        self.assertEqual(resp.parse_url("redis://:pw@example:6380/2"),
                         ("example", 6380, "pw", 2, None))
        self.assertEqual(resp.parse_url("redis://localhost"), ("localhost", 6379, None, 0, None))
        self.assertEqual(resp.parse_url("redis://alice:pw@h"), ("h", 6379, "pw", 0, "alice"))
        for bad in ("http://x", "redis://h:99999", "redis://h/two"):
            with self.subTest(url=bad):
                self.assertRaises(ValueError, resp.parse_url, bad)

    def test_pubsub_url_refuses_a_db(self) -> None:
        # pub/sub ignores the db: /2 would look like a separate bus and not be one
        self.assertEqual(resp.parse_pubsub_url("redis://h/0").db, 0)
        e = self.assertRaises(ValueError, resp.parse_pubsub_url, "redis://h:6380/2")
        self.assertIn("shared by all databases", str(e))
        from twisted_aleph.redisbus import RedisEventBus
        self.assertRaises(ValueError, RedisEventBus, "redis://127.0.0.1:1/3")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class RedisProcess(protocol.ProcessProtocol):
    """A redis-server child; ``ready`` fires when it accepts connections."""

    def __init__(self) -> None:
        self.ready: defer.Deferred = defer.Deferred()
        self.ended: defer.Deferred = defer.Deferred()
        self.output = b""

    def outReceived(self, data: bytes) -> None:
        self.output += data
        if not self.ready.called and b"Ready to accept connections" in self.output:
            self.ready.callback(None)

    def processEnded(self, reason: object) -> None:
        if not self.ready.called:
            self.ready.errback(RuntimeError(f"redis-server exited: {self.output[-500:]!r}"))
        self.ended.callback(None)


def start_redis(port: int, *options: str) -> RedisProcess:
    proc = RedisProcess()
    reactor.spawnProcess(proc, REDIS, [REDIS, "--port", str(port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no", *options], env=None)
    return proc


def stop_redis(proc: RedisProcess) -> defer.Deferred:
    if not proc.ended.called:
        proc.transport.signalProcess("TERM")
    return proc.ended


class RedisBusWithoutRedis(unittest.TestCase):
    """The bus while Redis never answers (connections pending in memory)."""

    def setUp(self) -> None:
        from twisted.internet.testing import MemoryReactorClock

        from twisted_aleph.redisbus import RedisEventBus
        self.reactor = MemoryReactorClock()
        self.bus = RedisEventBus("redis://127.0.0.1:1", reactor=self.reactor)

    def test_waiting_for_a_subscription_that_goes_away_does_not_hang(self) -> None:
        s = self.bus.subscribe("room")
        confirmed = self.bus.when_subscribed("room")
        self.assertNoResult(confirmed)
        s.close()  # e.g. the chat client left before Redis came back
        self.assertIsNone(self.successResultOf(confirmed))
        self.assertEqual(self.bus._confirm_waiters, {})

    def test_resubscribing_waits_for_the_new_confirmation(self) -> None:
        from twisted.internet.testing import StringTransport

        from twisted_aleph.redisbus import RedisProtocol
        connection = RedisProtocol()
        connection.makeConnection(StringTransport())
        self.bus._connected(connection)
        first = self.bus.subscribe("room")
        self.bus._on_push([b"subscribe", b"room", 1])
        self.successResultOf(self.bus.when_subscribed("room"))
        first.close()  # UNSUBSCRIBE on its way
        self.bus.subscribe("room")  # SUBSCRIBE again
        confirmed = self.bus.when_subscribed("room")
        self.assertNoResult(confirmed)  # the old confirmation does not count
        self.bus._on_push([b"unsubscribe", b"room", 0])
        self.assertNoResult(confirmed)
        self.bus._on_push([b"subscribe", b"room", 1])
        self.successResultOf(confirmed)
        self.assertEqual(connection.transport.value().count(b"SUBSCRIBE"), 3)

    def test_reconnecting_is_timed_by_the_given_reactor(self) -> None:
        from twisted.internet.error import ConnectionRefusedError
        from twisted.python.failure import Failure
        before = len(self.reactor.getDelayedCalls())
        self.assertEqual(len(self.reactor.tcpClients), 2)  # subscriber, publisher
        for _host, _port, factory, _timeout, _bind in self.reactor.tcpClients:
            factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        self.assertEqual(len(self.reactor.getDelayedCalls()), before + 2)  # the retries

    def test_an_acl_user_authenticates_with_its_name(self) -> None:
        from twisted.internet.testing import StringTransport

        from twisted_aleph.redisbus import RedisProtocol
        for username, sent in [("alice", resp.encode_command("AUTH", "alice", "pw")),
                               (None, resp.encode_command("AUTH", "pw"))]:
            connection = RedisProtocol("pw", username=username)
            connection.makeConnection(StringTransport())
            self.assertEqual(connection.transport.value(), sent)

    def test_close_lets_subscription_waiters_go(self) -> None:
        self.bus.subscribe("room")
        confirmed = self.bus.when_subscribed("room")
        self.bus.close()
        self.successResultOf(confirmed)
        self.assertEqual(self.bus._confirm_waiters, {})


class RedisBusAsService(unittest.TestCase):
    """RedisEventBus is a Twisted service: connected by startService, closed by stopService."""

    def setUp(self) -> None:
        from twisted.internet.testing import MemoryReactorClock

        from twisted_aleph.redisbus import RedisEventBus
        self.reactor = MemoryReactorClock()
        self.bus = RedisEventBus("redis://127.0.0.1:1", reactor=self.reactor, start=False)

    def test_provides_iservice(self) -> None:
        from twisted.application.service import IService
        from zope.interface.verify import verifyObject
        self.assertTrue(verifyObject(IService, self.bus))

    def test_connects_only_once_started(self) -> None:
        self.assertFalse(self.bus.running)
        self.assertEqual(self.reactor.tcpClients, [])
        self.bus.startService()
        self.assertTrue(self.bus.running)
        self.assertEqual(len(self.reactor.tcpClients), 2)  # subscriber, publisher
        self.bus.startService()  # already running: no second pair of connections
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_connecting_by_default_as_before(self) -> None:
        from twisted_aleph.redisbus import RedisEventBus
        bus = RedisEventBus("redis://127.0.0.1:1", reactor=self.reactor)
        self.assertTrue(bus.running)
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_publish_before_start_fails_at_once(self) -> None:
        from twisted_aleph.redisbus import RedisUnavailable
        f = self.failureResultOf(self.bus.publish("room", "hi"), RedisUnavailable)
        self.assertIn("not running", f.getErrorMessage())

    def test_stop_service_closes_and_waits(self) -> None:
        self.bus.startService()
        room = self.bus.subscribe("room")
        stopped = self.bus.stopService()
        again = self.bus.close()  # a second close waits for the same stop
        self.assertFalse(self.bus.running)
        self.assertTrue(room.is_closed)
        self.assertFalse(self.bus.is_active("room"))
        self.assertNoResult(stopped)
        self.assertNoResult(again)
        self.reactor.advance(0)  # the connections are stopped on the next turn
        self.assertIsNone(self.successResultOf(stopped))
        self.assertIsNone(self.successResultOf(again))
        self.assertIsNone(self.successResultOf(self.bus.close()))

    def test_stopping_a_bus_never_started(self) -> None:
        room = self.bus.subscribe("room")
        self.assertIsNone(self.successResultOf(self.bus.stopService()))
        self.assertTrue(room.is_closed)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_restarted_while_stopping_connects_after_the_stop(self) -> None:
        self.bus.startService()
        self.bus.stopService()
        self.bus.startService()  # before the connections have been stopped
        self.reactor.advance(0)
        self.assertTrue(self.bus.running)
        self.assertTrue(self.bus._sub.running)
        self.assertTrue(self.bus._pub.running)
        self.assertEqual(len(self.reactor.tcpClients), 4)  # a new pair after the stop

    def test_started_and_stopped_by_its_parent(self) -> None:
        from twisted.application.service import MultiService
        parent = MultiService()
        self.bus.setServiceParent(parent)
        parent.startService()
        self.assertTrue(self.bus.running)
        self.assertEqual(len(self.reactor.tcpClients), 2)
        stopped = parent.stopService()
        self.assertNoResult(stopped)  # the parent waits for the bus's connections
        self.reactor.advance(0)
        self.successResultOf(stopped)
        self.assertFalse(self.bus.running)


class RedisBusIntegration(unittest.TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def setUp(self) -> defer.Generator:
        if REDIS is None:
            raise unittest.SkipTest("redis-server not installed (apt-get install redis-server)")
        from twisted_aleph.redisbus import RedisEventBus
        self.port = free_port()
        self.redis = start_redis(self.port)
        self.addCleanup(lambda: stop_redis(self.redis))
        yield self.redis.ready
        url = f"redis://127.0.0.1:{self.port}"
        self.a = RedisEventBus(url)
        self.b = RedisEventBus(url)
        self.addCleanup(self.a.close)
        self.addCleanup(self.b.close)
        yield defer.gatherResults([self.a.when_connected(), self.b.when_connected()])

    @defer.inlineCallbacks
    def test_delivery_both_ways(self) -> defer.Generator:
        sa = self.a.subscribe("shoes and ships")
        sb = self.b.subscribe("shoes and ships")
        yield self.a.when_subscribed("shoes and ships")
        yield self.b.when_subscribed("shoes and ships")
        self.assertTrue(self.a.is_active("shoes and ships"))
        ok = yield self.a.publish("shoes and ships", "Alice: hello")
        self.assertTrue(ok)
        yield self.b.publish("shoes and ships", {"from": "Bob", "n": [1, 2]})
        self.assertEqual((yield sa.take()), "Alice: hello")
        self.assertEqual((yield sb.take()), "Alice: hello")
        self.assertEqual((yield sa.take()), {"from": "Bob", "n": (1, 2)})
        self.assertEqual((yield sb.take()), {"from": "Bob", "n": (1, 2)})

    @defer.inlineCallbacks
    def test_closed_subscriber_leaves(self) -> defer.Generator:
        s = self.b.subscribe("room")
        yield self.b.when_subscribed("room")
        s.close()
        self.assertFalse(self.b.is_active("room"))
        self.assertEqual(self.b.downstream("room"), [])

    @defer.inlineCallbacks
    def test_publish_fails_while_down_then_recovers(self) -> defer.Generator:
        sb = self.b.subscribe("room")
        yield self.b.when_subscribed("room")
        yield stop_redis(self.redis)
        from twisted_aleph.redisbus import RedisUnavailable
        yield self.assertFailure(self.a.publish("room", "lost?"), RedisUnavailable)
        self.redis = start_redis(self.port)
        yield self.redis.ready
        yield self.b.when_subscribed("room")
        yield self.a.when_connected()
        delivered = yield self.a.publish("room", "back")
        self.assertTrue(delivered)
        self.assertEqual((yield sb.take()), "back")


class RedisBusServiceIntegration(unittest.TestCase):
    """As a child service against a real Redis: chats, stops, starts again, chats."""

    timeout = 30

    @defer.inlineCallbacks
    def test_stop_and_start_again(self) -> defer.Generator:
        if REDIS is None:
            raise unittest.SkipTest("redis-server not installed (apt-get install redis-server)")
        from twisted.application.service import MultiService

        from twisted_aleph.redisbus import RedisEventBus, RedisUnavailable
        port = free_port()
        redis = start_redis(port)
        self.addCleanup(lambda: stop_redis(redis))
        yield redis.ready
        parent = MultiService()
        bus = RedisEventBus(f"redis://127.0.0.1:{port}", start=False)
        bus.setServiceParent(parent)
        self.addCleanup(bus.close)
        for round_ in ("first", "second"):
            parent.startService()
            yield bus.when_connected()
            room = bus.subscribe("room")
            yield bus.when_subscribed("room")
            self.assertTrue((yield bus.publish("room", round_)))
            self.assertEqual((yield room.take()), round_)
            yield parent.stopService()
            self.assertTrue(room.is_closed)
            yield self.assertFailure(bus.publish("room", "stopped"), RedisUnavailable)


class RedisBusACLUser(unittest.TestCase):
    """A Redis 6+ ACL user in the URL (redis://user:password@...) authenticates."""

    timeout = 30

    @defer.inlineCallbacks
    def test_an_acl_user_chats(self) -> defer.Generator:
        if REDIS is None:
            raise unittest.SkipTest("redis-server not installed (apt-get install redis-server)")
        from twisted_aleph.redisbus import RedisEventBus
        port = free_port()
        redis = start_redis(port, "--user", "alice", "on", ">secret", "~*", "&*", "+@all",
                            "--user", "default", "off")
        self.addCleanup(lambda: stop_redis(redis))
        yield redis.ready
        bus = RedisEventBus(f"redis://alice:secret@127.0.0.1:{port}")
        self.addCleanup(bus.close)
        yield bus.when_connected()
        room = bus.subscribe("room")
        yield bus.when_subscribed("room")
        self.assertTrue((yield bus.publish("room", "hi")))
        self.assertEqual((yield room.take()), "hi")


class RedisBusCloseIsQuiet(unittest.TestCase):
    """A deliberate close() is not reported as a lost connection."""

    @defer.inlineCallbacks
    def test_close_logs_no_reconnect_warning(self) -> defer.Generator:
        if REDIS is None:
            raise unittest.SkipTest("redis-server not installed (apt-get install redis-server)")
        from twisted.logger import globalLogPublisher
        from twisted_aleph.redisbus import RedisEventBus
        port = free_port()
        redis = start_redis(port)
        self.addCleanup(lambda: stop_redis(redis))
        yield redis.ready
        events: list = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        bus = RedisEventBus(f"redis://127.0.0.1:{port}")
        yield bus.when_connected()
        yield bus.close()
        warned = [e for e in events if "reconnecting" in str(e.get("log_format", ""))]
        self.assertEqual(warned, [])
