"""Tests for twisted_aleph.bus.EventBus (Manifold's ``manifold.bus``).

Subscribe/publish/is_active/downstream, per-subscriber buffers (a slow
subscriber holds back only the publish Deferred, never the others), and
closed subscribers dropped from their topic.
"""

from __future__ import annotations

from typing import Any, List

from twisted.trial import unittest

from twisted_aleph import stream as s
from twisted_aleph.bus import EventBus


class EventBusTests(unittest.TestCase):

    def test_publish_without_subscribers_is_false(self) -> None:
        bus = EventBus()
        self.assertIs(self.successResultOf(bus.publish("t", 1)), False)
        self.assertFalse(bus.is_active("t"))
        self.assertEqual(bus.downstream("t"), [])

    def test_every_subscriber_of_the_topic_gets_the_message(self) -> None:
        bus = EventBus(buffer_size=4)
        a, b, other = bus.subscribe("t"), bus.subscribe("t"), bus.subscribe("u")
        self.assertTrue(bus.is_active("t"))
        self.assertEqual(bus.downstream("t"), [a, b])
        self.assertIs(self.successResultOf(bus.publish("t", "m")), True)
        self.assertEqual(self.successResultOf(a.take()), "m")
        self.assertEqual(self.successResultOf(b.take()), "m")
        self.assertNoResult(other.take())
        self.assertEqual(sorted(bus.topics()), ["t", "u"])

    def test_slow_subscriber_does_not_stall_the_others(self) -> None:
        bus = EventBus(buffer_size=1)
        slow, fast = bus.subscribe("t"), bus.subscribe("t")
        got: List[Any] = []
        s.consume(got.append, fast)
        first = bus.publish("t", 1)   # fills slow's buffer
        self.assertIs(self.successResultOf(first), True)
        second = bus.publish("t", 2)  # slow's buffer is full
        self.assertNoResult(second)
        third = bus.publish("t", 3)
        self.assertEqual(got, [1, 2, 3])  # fast saw everything already
        self.assertEqual(self.successResultOf(slow.take()), 1)
        self.assertIs(self.successResultOf(second), True)
        self.assertNoResult(third)
        self.assertEqual(self.successResultOf(slow.take()), 2)
        self.assertIs(self.successResultOf(third), True)

    def test_closed_subscriber_is_dropped(self) -> None:
        bus = EventBus()
        a, b = bus.subscribe("t"), bus.subscribe("t")
        a.close()
        self.assertEqual(bus.downstream("t"), [b])
        b.close()
        self.assertFalse(bus.is_active("t"))
        self.assertEqual(bus.topics(), [])
        self.assertIs(self.successResultOf(bus.publish("t", 1)), False)

    def test_subscriber_closed_while_publish_pending(self) -> None:
        bus = EventBus()
        sub = bus.subscribe("t")
        pending = bus.publish("t", 1)
        self.assertNoResult(pending)
        sub.close()
        self.assertFalse(bus.is_active("t"))
        self.assertEqual(self.successResultOf(sub.take()), 1)
        self.assertIs(self.successResultOf(pending), True)

    def test_a_peer_that_hangs_up_mid_publish_does_not_stall_the_publisher(self) -> None:
        bus = EventBus()
        never_reads = s.Stream()  # e.g. a WebSocket client that stopped reading
        subscription = bus.subscribe("room")
        s.connect(subscription, never_reads, upstream=True)
        got: List[Any] = []
        s.consume(got.append, bus.subscribe("room"))
        self.assertIs(self.successResultOf(bus.publish("room", 1)), True)  # in flight
        second = bus.publish("room", 2)  # waits in the full subscription
        self.assertNoResult(second)
        never_reads.close()  # that client hangs up; its subscription closes
        self.assertNotIn(subscription, bus.downstream("room"))
        self.assertIs(self.successResultOf(second), True)
        self.assertEqual(got, [1, 2])

    def test_accepted_publishes_leave_no_callbacks_on_a_slow_subscriber(self) -> None:
        bus = EventBus()
        slow = bus.subscribe("t")
        before = len(slow._on_closed)
        for i in range(100):
            d = bus.publish("t", i)
            self.assertEqual(self.successResultOf(slow.take()), i)
            self.assertIs(self.successResultOf(d), True)
        self.assertEqual(len(slow._on_closed), before)

    def test_derived_stream_closing_drops_subscription(self) -> None:
        bus = EventBus()
        out = s.map(str.upper, bus.subscribe("t"))
        bus.publish("t", "a")
        self.assertEqual(self.successResultOf(out.take()), "A")
        out.close()  # upstream propagation closes the subscription
        self.assertFalse(bus.is_active("t"))

    def test_stream_factory(self) -> None:
        made: List[s.Stream] = []

        def factory() -> s.Stream:
            made.append(s.Stream(7))
            return made[-1]

        bus = EventBus(stream_factory=factory)
        self.assertIs(bus.subscribe("t"), made[0])
        self.assertEqual(made[0].buffer_size, 7)
