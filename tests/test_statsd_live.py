"""The statsd live page: its feed, its routes, and backpressure per browser.

A browser that does not read (here a WebSocket client that never takes)
next to one that reads everything: the reader gets every flush, the other
holds one message in flight and one waiting, never a queue.
"""

from __future__ import annotations

import json
import socket
from typing import Any, List

import treq
from klein import Klein
from twisted.internet import defer, reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial import unittest

from tests.test_websocket import bounded
from twisted_aleph import statsd
from twisted_aleph.http import closed, start_server, websocket_client
from twisted_aleph.statsd import live
from twisted_aleph.statsd.live import LiveClient, LiveFeed, add_routes, chart_values
from twisted_aleph.statsd_protocol import StatsdRollup


def rollup_of(packet: bytes, t: float, interval: float = 1.0, **options: Any) -> Any:
    r = StatsdRollup(**options)
    r.add_packet(packet)
    return r.flush(t, interval)


class ChartValuesTests(unittest.SynchronousTestCase):
    def test_one_figure_per_series(self) -> None:
        values = chart_values(rollup_of(b"c:3|c\ng:2|g\nt:1|ms\nt:3|ms\nu:a|s\nc:1|c|#k:v", 5.0))
        self.assertEqual({k: v for k, v in values.items() if "statsd." not in k}, {
            "counters.c": 3.0, "counters.c;k=v": 1.0, "gauges.g": 2.0, "timers.t": 2.0,
            "sets.u": 1.0})


class LiveFeedTests(unittest.SynchronousTestCase):
    def test_history_window_and_messages(self) -> None:
        feed = LiveFeed(window=3.0)
        for t in range(1, 7):
            feed.add_rollup(rollup_of(b"g:%d|g" % t, float(t)))
        self.assertEqual(len(feed.history), 4)  # window / interval + 1 points
        snapshot = json.loads(feed.snapshot())
        self.assertEqual(snapshot["t"], [3.0, 4.0, 5.0, 6.0])
        self.assertEqual(snapshot["series"]["gauges.g"], [3.0, 4.0, 5.0, 6.0])
        self.assertEqual((snapshot["type"], snapshot["window"], snapshot["interval"]),
                         ("snapshot", 3.0, 1.0))

    def test_series_past_max_series_are_hidden_and_counted(self) -> None:
        feed = LiveFeed(max_series=3)
        feed.add_rollup(rollup_of(b"a:1|g\nb:1|g\nc:1|g\nd:1|g\ne:1|g", 1.0, gauge_ttl=0))
        self.assertEqual(len(feed.series), 3)
        self.assertEqual(feed.hidden, 2 + 5)  # two gauges and the five internal counters
        self.assertEqual(json.loads(feed.snapshot())["hidden"], 7)

    def test_series_gone_for_a_window_make_room(self) -> None:
        feed = LiveFeed(window=2.0, max_series=8)
        feed.add_rollup(rollup_of(b"old:1|g", 1.0, gauge_ttl=1))
        self.assertIn("gauges.old", feed.series)
        for t in (2.0, 3.0, 4.0):
            feed.add_rollup(rollup_of(b"new:1|g", t, gauge_ttl=1))
        self.assertNotIn("gauges.old", feed.series)
        self.assertIn("gauges.new", feed.series)

    def test_a_long_history_is_thinned_in_the_snapshot(self) -> None:
        self.patch(live, "MAX_SNAPSHOT_VALUES", 10)
        feed = LiveFeed(window=100.0)
        for t in range(1, 31):
            feed.add_rollup(rollup_of(b"g:%d|g" % t, float(t)))
        snapshot = json.loads(feed.snapshot())
        values = snapshot["series"]["gauges.g"]
        self.assertLessEqual(len(values) * len(snapshot["series"]), 10 + len(snapshot["series"]))
        self.assertEqual(values[-1], 30.0)  # the newest is always there
        self.assertEqual(snapshot["t"][-1], 30.0)

    def test_max_series_is_bounded(self) -> None:
        self.assertRaises(ValueError, LiveFeed, max_series=live.MAX_SERIES_LIMIT + 1)
        self.assertRaises(ValueError, LiveFeed, window=0)

    def test_snapshot_is_made_once_per_flush(self) -> None:
        feed = LiveFeed()
        feed.add_rollup(rollup_of(b"g:1|g", 1.0))
        first = feed.snapshot()
        self.assertIs(feed.snapshot(), first)
        feed.add_rollup(rollup_of(b"g:2|g", 2.0))
        self.assertIsNot(feed.snapshot(), first)

    def test_a_bad_rollup_is_logged_not_raised(self) -> None:
        feed = LiveFeed()
        feed.add_rollup(object())  # type: ignore[arg-type]
        self.assertEqual(len(self.flushLoggedErrors(AttributeError)), 1)
        feed.add_rollup(rollup_of(b"g:1|g", 1.0))
        self.assertEqual(feed.flushes, 1)  # the good one


class FakeConn:
    """A WebSocket whose puts complete only when the test says."""

    def __init__(self) -> None:
        self.puts: List[Any] = []

    def put(self, message: str) -> Deferred:
        d: Deferred = Deferred()
        self.puts.append((message, d))
        return d


class LiveClientTests(unittest.SynchronousTestCase):
    def test_one_in_flight_and_only_the_newest_waiting(self) -> None:
        conn = FakeConn()
        client = LiveClient(conn)
        for i in range(100):
            client.send(f"m{i}")
        self.assertEqual([m for m, _ in conn.puts], ["m0"])
        self.assertEqual((client.waiting, client.skipped), ("m99", 98))
        conn.puts[0][1].callback(True)
        self.assertEqual([m for m, _ in conn.puts], ["m0", "m99"])
        self.assertIsNone(client.waiting)

    def test_a_closed_connection_is_not_fed(self) -> None:
        conn = FakeConn()
        client = LiveClient(conn)
        client.send("a")
        client.send("b")
        conn.puts[0][1].callback(False)  # closed
        self.assertEqual(len(conn.puts), 1)


class StalledBrowser(Protocol):
    """Asks for the WebSocket, then never reads a byte (with a small receive
    buffer, so the server's send buffer fills after a few MB, not 32)."""

    def connectionMade(self) -> None:
        self.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.transport.pauseProducing()
        self.transport.write(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n")


class LivePageTests(unittest.TestCase):
    """A real statsd server with its live page; flushes timed by task.Clock."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.server = statsd.start_server(0, interface="127.0.0.1", clock=self.clock,
                                          reactor=reactor, http_port=0,
                                          live_options={"max_series": 3000})
        self.addCleanup(self.server.close)
        self.page = self.server.attached[0]
        self.base = f"http://127.0.0.1:{self.page.port}"
        self.protocol = self.server.listening_port.protocol

    async def ws(self, **options: Any) -> Any:
        conn = await bounded(websocket_client(f"ws://127.0.0.1:{self.page.port}/ws",
                                              max_message_size=64 * 1024 * 1024,
                                              ping_interval=None, **options))

        async def hang_up() -> None:
            conn.close()
            await bounded(closed(conn))
        self.addCleanup(lambda: defer.ensureDeferred(hang_up()))
        return conn

    async def _page_and_script(self) -> None:
        response = await bounded(treq.get(self.base + "/", persistent=False))
        html = (await bounded(treq.text_content(response))).lower()
        self.assertEqual(response.code, 200)
        self.assertIn('<script src="live.js">', html)
        self.assertNotIn("http://", html.replace("http://www.w3.org", ""))
        self.assertNotIn("https://", html)
        response = await bounded(treq.get(self.base + "/live.js", persistent=False))
        script = await bounded(treq.text_content(response))
        self.assertIn("new WebSocket", script)
        self.assertNotIn("http", script.replace("http://www.w3.org/2000/svg", "")
                         .replace("https:", "").replace("http:", ""))
        response = await bounded(treq.get(self.base + "/ws", persistent=False))
        self.assertEqual(response.code, 400)
        await bounded(treq.content(response))
        self.protocol.datagramReceived(b"page.hits:2|c", ("10.0.0.1", 1))
        self.clock.advance(1.0)
        response = await bounded(treq.get(self.base + "/snapshot.json", persistent=False))
        snapshot = json.loads(await bounded(treq.content(response)))
        self.assertEqual(snapshot["series"]["counters.page.hits"], [2.0])

    def test_page_script_and_snapshot_are_served(self) -> Any:
        return defer.ensureDeferred(self._page_and_script())

    async def _slow_browser(self) -> None:
        feed = self.page.feed
        connected: List[Any] = []
        both: Deferred = Deferred()
        connect = feed.connect

        def record(conn: Any) -> LiveClient:
            connected.append(connect(conn))
            if len(connected) == 2:
                both.callback(None)
            return connected[-1]
        self.patch(feed, "connect", record)
        polite = await self.ws()
        self.assertEqual(json.loads(await bounded(polite.take()))["type"], "snapshot")
        stalled = StalledBrowser()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.page.port)
        await bounded(connectProtocol(endpoint, stalled))
        self.addCleanup(stalled.transport.abortConnection)
        await bounded(both)
        slow = connected[1]
        names = b"\n".join(b"gauge.with.a.long.name.to.make.the.message.big.%04d:%d|g"
                           % (i, i) for i in range(2000))
        flushes = 0
        while flushes < 400 and slow.skipped < 3:
            self.protocol.datagramReceived(names, ("10.0.0.1", 1))
            self.clock.advance(1.0)
            flushes += 1
            message = json.loads(await bounded(polite.take()))
            self.assertEqual((message["type"], message["t"]), ("flush", float(flushes)))
        self.assertLess(flushes, 400)
        # every flush reached the reader; the other holds one in flight, one waiting
        self.assertEqual(connected[0].skipped, 0)
        self.assertEqual(slow.skipped, 3)
        self.assertTrue(slow.in_flight)
        self.assertIsNotNone(slow.waiting)
        self.assertEqual(slow.sent + slow.skipped + 1, 1 + flushes)  # snapshot + flushes
        self.assertEqual(flushes, feed.flushes)

    def test_a_browser_that_does_not_read_gets_fewer_updates_not_a_queue(self) -> Any:
        return defer.ensureDeferred(self._slow_browser())

    async def _mounted(self) -> None:
        app = Klein()

        @app.route("/other")
        def other(request: Any) -> dict:
            return {"status": 200, "body": "other"}
        feed = LiveFeed()
        add_routes(app, feed, prefix="/statsd")
        server = start_server(app, 0, interface="127.0.0.1")
        self.addCleanup(server.close)
        base = f"http://127.0.0.1:{server.port}"
        for path, expected in (("/other", b"other"), ("/statsd/", b"<!doctype html>")):
            response = await bounded(treq.get(base + path, persistent=False))
            self.assertTrue((await bounded(treq.content(response))).startswith(expected))
        conn = await bounded(websocket_client(f"ws://127.0.0.1:{server.port}/statsd/ws",
                                              ping_interval=None))
        self.assertEqual(json.loads(await bounded(conn.take()))["type"], "snapshot")
        feed.add_rollup(rollup_of(b"g:5|g", 1.0))
        self.assertEqual(json.loads(await bounded(conn.take()))["values"]["gauges.g"], 5.0)
        conn.close()
        await bounded(closed(conn))

    def test_mountable_in_any_klein_app(self) -> Any:
        return defer.ensureDeferred(self._mounted())
