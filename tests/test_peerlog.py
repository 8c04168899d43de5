"""The one logging policy for peers' bad input: rate limits, truncation, counters, no tracebacks."""

from __future__ import annotations

from typing import Any, Dict, List

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial import unittest

from twisted_aleph.peerlog import LogThrottle, PeerLog, excerpt, peer_key


class Recorder:
    """An observer collecting the events a Logger emits."""

    def __init__(self) -> None:
        self.events: List[Dict[str, Any]] = []

    def __call__(self, event: Dict[str, Any]) -> None:
        self.events.append(event)

    def texts(self) -> List[str]:
        from twisted.logger import formatEvent
        return [formatEvent(e) for e in self.events]


def make_log(**kwargs: Any) -> Any:
    clock = Clock()
    recorder = Recorder()
    log = PeerLog("test-server", clock=clock, logger=Logger(observer=recorder), **kwargs)
    return log, clock, recorder


class ExcerptTests(unittest.TestCase):
    def test_short_payload_whole(self) -> None:
        self.assertEqual(excerpt(b"abc"), "b'abc'")
        self.assertEqual(excerpt("abc"), "'abc'")

    def test_long_payload_cut_with_its_size(self) -> None:
        text = excerpt(b"x" * 16 * 1024 * 1024, limit=200)
        self.assertIn("16,777,216 bytes", text)
        self.assertLess(len(text), 260)

    def test_huge_int_not_written_out(self) -> None:
        text = excerpt(10 ** 100000)
        self.assertIn("bits", text)
        self.assertLess(len(text), 100)

    def test_big_container_cut(self) -> None:
        self.assertLess(len(excerpt(list(range(100000)), limit=50)), 400)

    def test_memoryview(self) -> None:
        self.assertEqual(excerpt(memoryview(b"ab")), "b'ab'")


class PeerKeyTests(unittest.TestCase):
    def test_address_host_is_the_key(self) -> None:
        self.assertEqual(peer_key(IPv4Address("TCP", "10.0.0.1", 1234)), "10.0.0.1")
        self.assertEqual(peer_key(("10.0.0.2", 99)), "10.0.0.2")
        self.assertEqual(peer_key("somewhere"), "somewhere")


class PeerLogTests(unittest.TestCase):
    def test_one_line_per_peer_per_interval(self) -> None:
        log, clock, recorder = make_log(interval=10)
        for _ in range(1000):
            log.bad_input(("10.0.0.1", 5), "bad frame", "not EDN", b"\xff" * 10)
        self.assertEqual(len(recorder.events), 1)
        self.assertEqual(log.counts, {"bad frame": 1000})
        self.assertEqual(log.suppressed, 999)
        clock.advance(10)
        log.bad_input(("10.0.0.1", 6), "bad frame", "not EDN")
        self.assertEqual(len(recorder.events), 2)
        self.assertIn("999 more from this peer held back", recorder.texts()[1])

    def test_other_peer_still_logged(self) -> None:
        log, clock, recorder = make_log()
        log.bad_input(("10.0.0.1", 5), "bad frame", "x")
        log.bad_input(("10.0.0.1", 5), "bad frame", "x")
        log.bad_input(("10.0.0.2", 5), "bad frame", "x")
        self.assertEqual(len(recorder.events), 2)

    def test_global_cap_over_many_peers(self) -> None:
        log, clock, recorder = make_log(max_lines=5)
        for i in range(100):
            log.bad_input((f"10.0.{i}.1", 5), "bad datagram", "x")
        self.assertEqual(len(recorder.events), 5)
        self.assertEqual(log.total, 100)
        clock.advance(10)
        log.bad_input(("10.0.99.1", 5), "bad datagram", "x")
        self.assertEqual(len(recorder.events), 6)

    def test_line_is_short_and_has_no_traceback(self) -> None:
        log, clock, recorder = make_log()
        try:
            raise ValueError("boom " * 100000)
        except ValueError as e:
            log.bad_input(("10.0.0.1", 5), "bad frame", e, b"\xff" * (16 * 1024 * 1024))
        (event,) = recorder.events
        text = recorder.texts()[0]
        self.assertLess(len(text), 1200)  # 200 bytes of payload (4 characters each in repr) + 200 of detail
        self.assertNotIn("log_failure", event)
        self.assertNotIn("Traceback", text)
        self.assertEqual(event["log_level"].name, "warn")
        self.assertIn("16,777,216 bytes", text)

    def test_peer_table_is_bounded(self) -> None:
        log, clock, recorder = make_log(max_peers=10, max_lines=1000)
        for i in range(100):
            log.bad_input((f"10.0.{i}.1", 5), "bad frame", "x")
        self.assertLessEqual(len(log._peers), 10)
        clock.advance(10)
        for i in range(100, 200):
            log.bad_input((f"10.0.{i}.1", 5), "bad frame", "x")
        self.assertLessEqual(len(log._peers), 10)
        self.assertLessEqual(len(log._held), 10)

    def test_bad_limits_refused(self) -> None:
        self.assertRaises(ValueError, PeerLog, "x", max_lines=0)
        self.assertRaises(ValueError, PeerLog, "x", interval=-1)


class LogThrottleTests(unittest.TestCase):
    def test_counts_what_it_held_back(self) -> None:
        throttle = LogThrottle(10)
        self.assertEqual(throttle.allow(0), (True, 0))
        self.assertEqual(throttle.allow(1), (False, 0))
        self.assertEqual(throttle.allow(2), (False, 0))
        self.assertEqual(throttle.allow(10), (True, 2))
