"""Edges that go away while delivery waits for them, and takes given up on.

A sink that closes with a message of ours still pending never answers; the
source must not wait for it (one hung-up consumer of a fan-out must not stop
the others). Takes realized from outside (``deferred.timeout``) must not pile
up on an idle stream.
"""

from __future__ import annotations

from twisted.internet import task
from twisted.trial import unittest

from twisted_aleph import stream as s
from twisted_aleph.deferred import timeout


class ClosedSinkTests(unittest.TestCase):
    def test_a_sink_closed_with_a_put_pending_does_not_stop_the_others(self) -> None:
        src, a, b = s.Stream(), s.Stream(), s.Stream()
        s.connect(src, a)
        s.connect(src, b)
        self.successResultOf(src.put(1))  # handed to both; both puts pending
        self.assertEqual(self.successResultOf(b.take()), 1)
        a.close()  # a's consumer is gone: its pending put will never be taken
        for n in range(2, 6):
            src.put(n)
            self.assertEqual(self.successResultOf(b.take()), n)

    def test_many_sinks_one_hangs_up_mid_stream(self) -> None:
        src = s.Stream()
        sinks = [s.Stream() for _ in range(5)]
        for sink in sinks:
            s.connect(src, sink)
        staying = sinks[:2] + sinks[3:]
        for n in range(20):
            src.put(n)
            if n == 3:
                sinks[2].close()  # with message 3 pending in it
            for sink in (sinks if n < 3 else staying):
                self.assertEqual(self.successResultOf(sink.take()), n)

    def test_the_last_sink_closing_closes_the_source_and_keeps_its_puts(self) -> None:
        src, dst = s.Stream(), s.Stream()
        s.connect(src, dst)
        src.put(1)  # pending in dst
        second = src.put(2)  # waits in src: delivery is blocked on dst
        self.assertNoResult(second)
        dst.close()
        self.assertTrue(src.is_closed)
        self.assertEqual(self.successResultOf(src.take()), 2)  # still takeable
        self.assertTrue(self.successResultOf(second))
        self.assertIsNone(self.successResultOf(src.take()))
        self.assertTrue(src.is_drained)


class AbandonedTakeTests(unittest.TestCase):
    def test_takes_given_up_on_do_not_pile_up(self) -> None:
        clock = task.Clock()
        st = s.Stream()
        for _ in range(1000):
            timeout(st.take(), 1, value=None, clock=clock)
            clock.advance(1)
        self.assertLessEqual(len(st._takers), 64)
        live = st.take()
        st.put("x")
        self.assertEqual(self.successResultOf(live), "x")
