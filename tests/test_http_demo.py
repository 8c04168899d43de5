"""The seed's HTTP routes (twisted_aleph.demo.http), in memory on a task.Clock."""

from __future__ import annotations

from typing import Any

from hypothesis import given, strategies as st
from twisted.internet import task
from twisted.trial import unittest

from twisted_aleph import bytestreams, http, stream
from twisted_aleph.demo import http as demo
from twisted_aleph.http.testing import stub_pool

from .test_http_server import RawConnection


class Req:
    """Just enough of a request for parse_count."""

    def __init__(self, params: dict) -> None:
        self.params = params


class DemoRoutesTests(unittest.TestCase):

    def setUp(self) -> None:
        self.clock = task.Clock()

    def pool(self, **variants: Any) -> Any:
        return stub_pool(demo.make_app(clock=self.clock, websocket=False, **variants))

    def get(self, pool: Any, path: str) -> Any:
        return http.get("http://test" + path, pool=pool)

    def run_clock(self, pool: Any, seconds: float, step: float = 0.1) -> None:
        pool.flush()
        for _ in range(int(round(seconds / step))):
            self.clock.advance(step)
            pool.flush()

    def test_hello(self) -> None:
        pool = self.pool()
        d = self.get(pool, "/hello")
        pool.flush()
        resp = self.successResultOf(d)
        self.assertEqual(resp["status"], 200)
        self.assertEqual(resp["headers"]["content-type"], "text/plain")
        self.assertEqual(bytestreams.to_string(resp["body"]), "hello world!")

    def test_delayed_hello_both_variants(self) -> None:
        for variant in ("timeout", "async"):
            pool = self.pool(delayed=variant)
            d = self.get(pool, "/delayed_hello")
            pool.flush()
            self.clock.advance(0.9)
            pool.flush()
            self.assertNoResult(d)
            self.clock.advance(0.1)
            pool.flush()
            resp = self.successResultOf(d)
            self.assertEqual(bytestreams.to_string(resp["body"]), "hello world!", variant)
            self.assertEqual(self.clock.getDelayedCalls(), [], variant)

    def test_numbers_periodically_counts_from_one(self) -> None:
        pool = self.pool()
        d = self.get(pool, "/numbers?count=5")
        self.run_clock(pool, 0.4)
        self.assertNoResult(d)
        self.run_clock(pool, 0.1)
        body = self.successResultOf(d)["body"]
        self.assertEqual(list(bytestreams.to_line_seq(body)), ["1", "2", "3", "4", "5"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_numbers_async_counts_from_zero(self) -> None:
        pool = self.pool(numbers="async")
        d = self.get(pool, "/numbers?count=5")
        self.run_clock(pool, 0.5)
        body = self.successResultOf(d)["body"]
        self.assertEqual([int(x) for x in bytestreams.to_line_seq(body)], [0, 1, 2, 3, 4])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_numbers_raw_stream_arrive_every_tick(self) -> None:
        pool = stub_pool(demo.make_app(clock=self.clock, websocket=False), raw_stream=True)
        d = self.get(pool, "/numbers?count=3")
        pool.flush()
        chunks: list = []
        body = self.successResultOf(d)["body"]
        done = stream.consume(chunks.append, body)
        self.run_clock(pool, 0.2)
        self.assertEqual(b"".join(chunks), b"1\n2\n")
        self.run_clock(pool, 0.1)
        self.successResultOf(done)
        self.assertEqual(b"".join(chunks), b"1\n2\n3\n")

    def test_hang_up_mid_numbers_leaves_no_timer(self) -> None:
        for variant in ("periodically", "async"):
            conn = RawConnection(demo.make_app(clock=self.clock, websocket=False,
                                               numbers=variant))
            conn.get("/numbers?count=50")
            for _ in range(3):
                self.clock.advance(0.1)
            self.assertIn(b"\r\n2\n\r\n", conn.received(), variant)
            conn.hang_up()
            # at most the tick already under way completes; then nothing is left
            self.clock.advance(0.1)
            self.assertEqual(self.clock.getDelayedCalls(), [], variant)
            self.assertNotIn(b"\r\n4\n\r\n", conn.received(), variant)

    def test_missing_count_is_zero(self) -> None:
        pool = self.pool(numbers="async")
        d = self.get(pool, "/numbers")
        pool.flush()
        resp = self.successResultOf(d)
        self.assertEqual((resp["status"], resp["body"].read()), (200, b""))

    def test_bad_counts_are_400_one_line(self) -> None:
        pool = self.pool()
        cases = {
            "abc": b"count must be a whole number, got 'abc'",
            "-1": b"count must be between 0 and 10000, got -1",
            "10001": b"count must be between 0 and 10000, got 10001",
            "9" * 50: b"count must be between 0 and 10000, got 99999999999999999999...",
            "-" + "9" * 50: b"count must be between 0 and 10000, got -9999999999999999999...",
            "9" * 50 + "x": b"count must be a whole number, got '99999999999999999999...'",
            "1.5": b"count must be a whole number, got '1.5'",
            # digits are ASCII: int() reads these as 3, 12 and 5
            "%D9%A3": "count must be a whole number, got '\u0663'".encode(),
            "%EF%BC%91%EF%BC%92": "count must be a whole number, got '\uff11\uff12'".encode(),
            "%205": b"count must be a whole number, got ' 5'",
        }
        for raw, reason in cases.items():
            d = self.get(pool, "/numbers?count=" + raw)
            pool.flush()
            resp = self.successResultOf(d)
            self.assertEqual((resp["status"], resp["body"].read()), (400, reason), raw)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_anything_else_is_404(self) -> None:
        pool = self.pool()
        d = self.get(pool, "/elsewhere")
        pool.flush()
        resp = self.successResultOf(d)
        self.assertEqual((resp["status"], resp["body"].read()), (404, b"No such page."))

    def test_unknown_variant_refused(self) -> None:
        self.assertRaises(ValueError, demo.make_app, numbers="lazy")
        self.assertRaises(ValueError, demo.make_app, delayed="soon")

    def test_unicode_digits_are_not_a_count(self) -> None:
        for raw in ("\u0663", "\u0661\u0660", "\uff15", "\U0001d7d3", "5\u00a0", "\u0663" * 30):
            self.assertRaises(http.BadRequest, demo.parse_count, Req({"count": raw}))
        self.assertEqual(demo.parse_count(Req({"count": "0042"})), 42)

    @given(st.text(max_size=30))
    def test_parse_count_total(self, raw: str) -> None:
        try:
            n = demo.parse_count(Req({"count": raw}))
        except http.BadRequest as e:
            self.assertNotIn("\n", str(e))
            return
        self.assertTrue(0 <= n <= demo.MAX_COUNT)
        self.assertEqual(n, int(raw))
        self.assertTrue(raw.lstrip("+-").isascii() and raw.lstrip("+-").isdigit(), raw)
