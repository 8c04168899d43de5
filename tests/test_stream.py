"""Unit tests for twisted_aleph.stream against Manifold's semantics.

Close/drain propagation through the connection graph, the timed operators on
a ``task.Clock`` (periodically, batch, try_put/try_take), consume/reduce/
put_all, the coercions (``to_source`` of every kind, the blocking iterator
for threads), ``async for`` and spliced duplex streams. The law-like
properties (FIFO, backpressure model, stages vs Python) are in
``test_stream_laws``.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, List

from twisted.internet import defer, task, threads
from twisted.internet.defer import Deferred
from twisted.trial import unittest

from twisted_aleph import stream as s
from twisted_aleph.stream import xforms

END = object()


def collect(case: unittest.TestCase, src: Any) -> List[Any]:
    """Every message of ``src``, which must drain synchronously."""
    out: List[Any] = []
    case.assertIs(case.successResultOf(s.consume(out.append, src)), True)
    return out


class BasicsTests(unittest.TestCase):

    def test_put_on_closed_stream_is_false(self) -> None:
        st = s.Stream(4)
        st.close()
        self.assertIs(self.successResultOf(st.put(1)), False)
        self.assertIs(st.offer(1), False)

    def test_take_on_drained_gives_default_or_none(self) -> None:
        st = s.Stream()
        st.close()
        self.assertIsNone(self.successResultOf(st.take()))
        self.assertEqual(self.successResultOf(st.take("gone")), "gone")

    def test_close_realizes_waiting_takers_with_their_defaults(self) -> None:
        st = s.Stream()
        a, b = st.take(), st.take("x")
        self.assertNoResult(a)
        st.close()
        self.assertIsNone(self.successResultOf(a))
        self.assertEqual(self.successResultOf(b), "x")

    def test_buffered_messages_survive_close(self) -> None:
        st = s.Stream(2)
        st.put(1)
        st.put(2)
        pending = st.put(3)
        st.close()
        self.assertTrue(st.is_closed)
        self.assertFalse(st.is_drained)
        self.assertEqual([self.successResultOf(st.take()) for _ in range(3)], [1, 2, 3])
        self.assertIs(self.successResultOf(pending), True)
        self.assertTrue(st.is_drained)

    def test_on_closed_and_on_drained_fire_once_and_late_registration(self) -> None:
        st = s.Stream(1)
        events: List[str] = []
        st.on_closed(lambda: events.append("closed"))
        st.on_drained(lambda: events.append("drained"))
        st.put("m")
        st.close()
        st.close()
        self.assertEqual(events, ["closed"])
        st.take()
        self.assertEqual(events, ["closed", "drained"])
        st.on_drained(lambda: events.append("late"))
        self.assertEqual(events, ["closed", "drained", "late"])

    def test_offer_answers_true_false_or_deferred(self) -> None:
        st = s.Stream(1)
        self.assertIs(st.offer(1), True)
        later = st.offer(2)
        self.assertIsInstance(later, Deferred)
        self.assertNoResult(later)
        st.take()
        self.assertIs(self.successResultOf(later), True)

    def test_negative_buffer_refused(self) -> None:
        self.assertRaises(ValueError, s.Stream, -1)

    def test_raising_callback_is_logged_not_raised(self) -> None:
        st = s.Stream()
        st.on_closed(lambda: 1 / 0)
        st.close()
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertTrue(st.is_drained)


class TimeoutTests(unittest.TestCase):

    def test_try_put_times_out_and_is_withdrawn(self) -> None:
        clock = task.Clock()
        st = s.Stream()
        d = st.try_put("late", 5, "timeout", clock=clock)
        clock.advance(4.9)
        self.assertNoResult(d)
        clock.advance(0.1)
        self.assertEqual(self.successResultOf(d), "timeout")
        st.close()
        self.assertIsNone(self.successResultOf(st.take()))  # not delivered later
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_try_put_default_timeout_value_is_false(self) -> None:
        clock = task.Clock()
        d = s.Stream().try_put(1, 1, clock=clock)
        clock.advance(1)
        self.assertIs(self.successResultOf(d), False)

    def test_try_put_accepted_in_time_cancels_timer(self) -> None:
        clock = task.Clock()
        st = s.Stream()
        d = st.try_put(1, 5, "timeout", clock=clock)
        self.assertEqual(self.successResultOf(st.take()), 1)
        self.assertIs(self.successResultOf(d), True)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_try_take_times_out_and_is_withdrawn(self) -> None:
        clock = task.Clock()
        st = s.Stream(1)
        d = st.try_take("drained", 2, "timeout", clock=clock)
        clock.advance(2)
        self.assertEqual(self.successResultOf(d), "timeout")
        st.put("kept")  # must not vanish into the withdrawn taker
        self.assertEqual(self.successResultOf(st.take()), "kept")

    def test_zero_timeout_answers_at_once(self) -> None:
        clock = task.Clock()
        st = s.Stream()
        self.assertEqual(self.successResultOf(st.try_take("d", 0, "empty", clock=clock)),
                         "empty")
        self.assertEqual(self.successResultOf(st.try_put(1, 0, "full", clock=clock)),
                         "full")
        self.assertEqual(clock.getDelayedCalls(), [])
        st.put(2)  # neither the withdrawn take nor the withdrawn put interferes
        self.assertEqual(self.successResultOf(st.take()), 2)

    def test_try_take_gets_message_or_drained_default(self) -> None:
        clock = task.Clock()
        st = s.Stream()
        d = st.try_take("drained", 2, "timeout", clock=clock)
        st.put("m")
        self.assertEqual(self.successResultOf(d), "m")
        d2 = st.try_take("drained", 2, "timeout", clock=clock)
        st.close()
        self.assertEqual(self.successResultOf(d2), "drained")
        self.assertEqual(clock.getDelayedCalls(), [])


    def test_a_take_given_up_on_does_not_swallow_or_break_the_next_put(self) -> None:
        # deferred.timeout (Manifold's timeout!) and cancel() realize a take's
        # Deferred from outside; as in Manifold, the stream then skips that
        # taker instead of raising AlreadyCalledError into the putter.
        from twisted_aleph import deferred
        clock = task.Clock()
        st = s.Stream()
        timed_out = deferred.timeout(st.take(), 1, clock=clock)
        cancelled = st.take()
        cancelled.cancel()
        clock.advance(1)
        self.failureResultOf(timed_out, TimeoutError)
        self.failureResultOf(cancelled, defer.CancelledError)
        put = st.put("kept")
        self.assertEqual(self.successResultOf(st.take()), "kept")
        self.assertIs(self.successResultOf(put), True)
        late = st.take()
        late.cancel()
        self.failureResultOf(late, defer.CancelledError)
        st.close()  # draining skips the given-up taker too
        self.assertTrue(st.is_drained)

    def test_cancel_withdraws_a_pending_put_or_take(self) -> None:
        st = s.Stream()
        put = st.put("withdrawn")
        put.cancel()
        self.failureResultOf(put, defer.CancelledError)
        take = st.take()
        take.cancel()
        self.failureResultOf(take, defer.CancelledError)
        self.assertEqual(repr(st), "<Stream open buffered=0 pending=0>")
        self.assertEqual(len(st._takers), 0)  # gone at once, not at the next put
        st.put("next")
        self.assertEqual(self.successResultOf(st.take()), "next")

    def test_a_put_given_up_on_is_still_delivered_without_error(self) -> None:
        # Manifold: timeout! on a put! realizes that deferred; the message
        # stays queued and is taken later (use try_put to withdraw it).
        from twisted_aleph import deferred
        clock = task.Clock()
        for buffer_size in (0, 1):
            st = s.Stream(buffer_size)
            for i in range(buffer_size):
                st.put(i)
            put = deferred.timeout(st.put("late"), 1, clock=clock)
            clock.advance(1)
            self.failureResultOf(put, TimeoutError)
            taken = [self.successResultOf(st.take()) for _ in range(buffer_size + 1)]
            self.assertEqual(taken, list(range(buffer_size)) + ["late"])
        src = s.Stream()
        put = deferred.timeout(src.put("pushed"), 1, clock=clock)
        clock.advance(1)
        self.failureResultOf(put, TimeoutError)
        got: List[Any] = []
        s.consume(got.append, src)
        self.assertEqual(got, ["pushed"])


class PropagationTests(unittest.TestCase):

    def test_drained_source_closes_downstream_sink(self) -> None:
        src, dst = s.Stream(), s.Stream(4)
        s.connect(src, dst)
        src.put(1)
        self.assertFalse(dst.is_closed)
        src.close()
        self.assertTrue(dst.is_closed)
        self.assertEqual(collect(self, dst), [1])

    def test_downstream_false_leaves_sink_open(self) -> None:
        src, dst = s.Stream(), s.Stream(4)
        s.connect(src, dst, downstream=False)
        src.put(1)
        src.close()
        self.assertTrue(src.is_drained)
        self.assertFalse(dst.is_closed)
        self.assertEqual(self.successResultOf(dst.take()), 1)

    def test_drain_propagates_through_a_chain(self) -> None:
        a, b, c = s.Stream(), s.Stream(), s.Stream(10)
        s.connect(a, b)
        s.connect(b, c)
        self.successResultOf(s.put_all(a, [1, 2, 3]))
        a.close()
        self.assertTrue(b.is_drained)
        self.assertTrue(c.is_closed)
        self.assertEqual(collect(self, c), [1, 2, 3])

    def test_connect_to_already_drained_source_closes_sink(self) -> None:
        src, dst = s.Stream(), s.Stream()
        src.close()
        s.connect(src, dst)
        self.assertTrue(dst.is_closed)

    def test_closing_end_of_map_transform_chain_closes_head(self) -> None:
        head = s.Stream()
        end = s.transform(s.take(100), s.filter(bool, s.map(str, head)))
        end.close()
        self.assertTrue(head.is_closed)
        self.assertIs(self.successResultOf(head.put(1)), False)

    def test_transform_take_closes_head_after_n(self) -> None:
        head = s.Stream()
        out = s.transform(s.take(2), head)
        got: List[Any] = []
        done = s.consume(got.append, out)
        for i in range(2):
            self.assertIs(self.successResultOf(head.put(i)), True)
        self.assertTrue(head.is_closed)
        self.assertIs(self.successResultOf(head.put(2)), False)
        self.assertEqual(got, [0, 1])
        self.assertIs(self.successResultOf(done), True)

    def test_closed_only_sink_closes_source_and_loses_nothing(self) -> None:
        src, dst = s.Stream(5), s.Stream(5)
        s.connect(src, dst)
        src.put(1)
        src.put(2)
        dst.close()
        self.assertEqual(src.downstream, [])
        self.assertTrue(src.is_closed)  # Manifold: its only sink went away
        self.assertIs(self.successResultOf(src.put(3)), False)
        self.assertEqual(collect(self, dst), [1, 2])  # what dst took stays

    def test_source_stays_open_while_another_sink_remains(self) -> None:
        src, a, b = s.Stream(), s.Stream(), s.Stream()
        s.connect(src, a)
        s.connect(src, b)
        a.close()
        self.assertFalse(src.is_closed)
        self.assertEqual(src.downstream, [b])
        b.close()
        self.assertTrue(src.is_closed)

    def test_upstream_true_closes_source_even_with_other_sinks(self) -> None:
        src, a, b = s.Stream(), s.Stream(), s.Stream()
        s.connect(src, a, upstream=True)
        s.connect(src, b)
        a.close()
        self.assertTrue(src.is_closed)

    def test_fan_out_to_two_sinks_waits_for_slowest(self) -> None:
        src, fast, slow = s.Stream(), s.Stream(10), s.Stream(0)
        s.connect(src, fast)
        s.connect(src, slow)
        self.assertEqual(sorted(map(id, src.downstream)), sorted([id(fast), id(slow)]))
        first = src.put(1)
        self.assertIs(self.successResultOf(first), True)  # accepted by src
        second = src.put(2)
        self.assertNoResult(second)  # src is waiting for slow to take 1
        self.assertEqual(self.successResultOf(fast.take()), 1)
        self.assertEqual(self.successResultOf(slow.take()), 1)
        self.assertEqual(self.successResultOf(slow.take()), 2)
        src.close()
        self.assertEqual(collect(self, fast), [2])
        self.assertTrue(slow.is_drained)

    def test_close_while_message_in_flight_loses_nothing(self) -> None:
        src = s.Stream()
        out = s.mapcat(lambda x: [x, x + 1, x + 2], src)
        src.put(10)
        src.close()
        self.assertFalse(out.is_closed)  # three items still going in
        self.assertEqual([self.successResultOf(out.take()) for _ in range(3)],
                         [10, 11, 12])
        self.assertTrue(out.is_closed)
        self.assertIsNone(self.successResultOf(out.take()))

    def test_error_in_map_closes_that_pipeline_only(self) -> None:
        src = s.Stream()
        out = s.map(lambda x: 1 // x, src)
        got: List[Any] = []
        done = s.consume(got.append, out)
        other = s.Stream(5)
        s.connect(src, other)
        src.put(1)
        src.put(0)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertTrue(out.is_closed)
        self.assertIs(self.successResultOf(done), True)
        self.assertFalse(src.is_closed)  # `other` still reads it
        src.put(2)
        self.assertEqual(got, [1])
        self.assertEqual([self.successResultOf(other.take()) for _ in range(3)],
                         [1, 0, 2])

    def test_buffer_accepts_n_ahead(self) -> None:
        src = s.Stream()
        buf = s.buffer(3, src)
        puts = [src.put(i) for i in range(5)]
        self.assertEqual([d.called for d in puts], [True] * 4 + [False])
        self.assertEqual(self.successResultOf(buf.take()), 0)
        self.assertTrue(puts[4].called)


    def test_long_lived_sink_does_not_keep_finished_sources(self) -> None:
        shared = s.Stream(1000)
        for i in range(100):
            s.connect(s.stream_of([i]), shared, downstream=False)
        self.assertEqual(shared._on_closed, [])  # no registration per source left
        self.assertFalse(shared.is_closed)
        src = s.Stream()
        s.connect(src, shared)
        src.put("x")
        src.close()  # downstream=True: shared is closed by this one
        self.assertEqual(collect(self, shared), list(range(100)) + ["x"])

class BatchTests(unittest.TestCase):

    def test_max_size(self) -> None:
        clock = task.Clock()
        out = s.batch(3, None, s.stream_of(range(8)), clock=clock)
        self.assertEqual(collect(self, out), [[0, 1, 2], [3, 4, 5], [6, 7]])

    def test_max_latency_from_first_message_of_batch(self) -> None:
        clock = task.Clock()
        src = s.Stream()
        out = s.batch(10, 1.0, src, clock=clock)
        got: List[Any] = []
        done = s.consume(got.append, out)
        src.put("a")
        clock.advance(0.5)
        src.put("b")
        clock.advance(0.49)
        self.assertEqual(got, [])
        clock.advance(0.01)
        self.assertEqual(got, [["a", "b"]])
        src.put("c")
        clock.advance(0.99)
        self.assertEqual(got, [["a", "b"]])
        src.close()  # flushes the partial batch at once
        self.assertEqual(got, [["a", "b"], ["c"]])
        self.assertIs(self.successResultOf(done), True)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_timed_flush_not_taken_holds_the_source(self) -> None:
        clock = task.Clock()
        src = s.Stream()
        out = s.batch(10, 1.0, src, clock=clock)
        src.put("a")
        clock.advance(1.0)  # ["a"] offered to out, nobody takes it
        self.assertIs(self.successResultOf(src.put("b")), True)  # in flight
        held = src.put("c")
        self.assertNoResult(held)
        self.assertEqual(self.successResultOf(out.take()), ["a"])
        self.assertIs(self.successResultOf(held), True)
        src.close()
        self.assertEqual(collect(self, out), [["b", "c"]])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_closing_batch_output_cancels_its_timer(self) -> None:
        clock = task.Clock()
        src = s.Stream()
        out = s.batch(10, 1.0, src, clock=clock)
        src.put("a")
        out.close()
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertTrue(src.is_closed)


class PeriodicallyTests(unittest.TestCase):

    def test_emits_every_period(self) -> None:
        clock = task.Clock()
        counter = iter(range(100))
        st = s.periodically(2.0, lambda: next(counter), clock=clock)
        got: List[Any] = []
        s.consume(got.append, st)
        clock.advance(1.9)
        self.assertEqual(got, [])
        clock.advance(0.1)
        self.assertEqual(got, [0])
        clock.pump([2.0] * 3)
        self.assertEqual(got, [0, 1, 2, 3])
        st.close()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_skips_ticks_while_unconsumed(self) -> None:
        clock = task.Clock()
        calls: List[int] = []

        def fn() -> int:
            calls.append(1)
            return len(calls)

        st = s.periodically(1.0, fn, clock=clock)
        clock.pump([1.0] * 10)
        # one buffered, one pending put; every other tick skipped fn entirely
        self.assertEqual(len(calls), 2)
        self.assertEqual(self.successResultOf(st.take()), 1)
        self.assertEqual(self.successResultOf(st.take()), 2)
        clock.advance(1.0)
        self.assertEqual(self.successResultOf(st.take()), 3)
        st.close()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_close_before_first_tick_leaves_no_timer(self) -> None:
        clock = task.Clock()
        st = s.periodically(5.0, lambda: 1, clock=clock)
        st.close()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_closing_a_derived_stream_stops_the_timer(self) -> None:
        clock = task.Clock()
        st = s.periodically(1.0, lambda: 1, clock=clock)
        out = s.map(str, st)
        clock.advance(1.0)
        self.assertEqual(self.successResultOf(out.take()), "1")
        out.close()
        self.assertTrue(st.is_closed)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_raising_fn_closes_stream(self) -> None:
        clock = task.Clock()
        st = s.periodically(1.0, lambda: 1 // 0, clock=clock)
        clock.advance(1.0)
        self.assertTrue(st.is_closed)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(clock.getDelayedCalls(), [])


class ConsumeReduceTests(unittest.TestCase):

    def test_consume_with_deferred_fn_is_backpressure(self) -> None:
        src = s.Stream()
        waits: List[Deferred] = []
        seen: List[Any] = []

        def slow(msg: Any) -> Deferred:
            seen.append(msg)
            d: Deferred = Deferred()
            waits.append(d)
            return d

        done = s.consume(slow, src)
        self.assertIs(self.successResultOf(src.put(1)), True)
        second = src.put(2)
        self.assertNoResult(second)  # 1 is still being handled
        self.assertEqual(seen, [1])
        waits[0].callback(None)
        self.assertTrue(second.called)
        self.assertEqual(seen, [1, 2])
        src.close()
        self.assertNoResult(done)  # 2 still being handled
        waits[1].callback(None)
        self.assertIs(self.successResultOf(done), True)

    def test_consume_with_coroutine_fn(self) -> None:
        seen: List[Any] = []

        async def handle(msg: Any) -> None:
            seen.append(msg)

        done = s.consume(handle, s.stream_of([1, 2, 3]))
        self.assertIs(self.successResultOf(done), True)
        self.assertEqual(seen, [1, 2, 3])

    def test_consume_raising_fn_fails_and_closes_source(self) -> None:
        src = s.Stream(5)
        done = s.consume(lambda m: 1 // m, src)
        src.put(1)
        src.put(0)
        self.failureResultOf(done, ZeroDivisionError)
        self.assertTrue(src.is_closed)

    def test_consume_failing_deferred_fails_and_closes_source(self) -> None:
        src = s.Stream(5)
        done = s.consume(lambda m: defer.fail(ValueError(m)), src)
        src.put("bad")
        self.failureResultOf(done, ValueError)
        self.assertTrue(src.is_closed)

    def test_reduce(self) -> None:
        d = s.reduce(lambda acc, x: acc + [x], [], s.stream_of([1, 2, 3]))
        self.assertEqual(self.successResultOf(d), [1, 2, 3])

    def test_reduce_of_empty_is_init(self) -> None:
        self.assertEqual(self.successResultOf(s.reduce(max, "init", s.stream_of([]))),
                         "init")

    def test_reduce_stops_early_on_reduced(self) -> None:
        src = s.Stream(10)
        for i in range(10):
            src.put(i)

        def upto(acc: int, x: int) -> Any:
            return xforms.Reduced(acc + x) if x == 3 else acc + x

        self.assertEqual(self.successResultOf(s.reduce(upto, 0, src)), 6)
        self.assertEqual(self.successResultOf(src.take()), 4)  # rest left alone

    def test_reduce_raising_fails(self) -> None:
        d = s.reduce(lambda acc, x: acc / x, 1, s.stream_of([1, 0]))
        self.failureResultOf(d, ZeroDivisionError)

    def test_put_all_waits_on_backpressure(self) -> None:
        st = s.Stream(1)
        d = s.put_all(st, [1, 2, 3])
        self.assertNoResult(d)
        self.assertEqual(self.successResultOf(st.take()), 1)
        self.assertNoResult(d)
        self.assertEqual(self.successResultOf(st.take()), 2)
        self.assertIs(self.successResultOf(d), True)
        self.assertEqual(self.successResultOf(st.take()), 3)

    def test_put_all_into_stream_closed_midway_is_false(self) -> None:
        st = s.Stream(1)
        d = s.put_all(st, [1, 2, 3])
        st.close()
        self.assertEqual(self.successResultOf(st.take()), 1)
        self.assertEqual(self.successResultOf(st.take()), 2)
        self.assertIs(self.successResultOf(d), False)
        self.assertIs(self.successResultOf(s.put_all(st, [])), True)

    def test_zip_streams_ends_with_shortest(self) -> None:
        out = s.zip_streams(s.stream_of("abc"), s.stream_of([1, 2]))
        self.assertEqual(collect(self, out), [("a", 1), ("b", 2)])

    def test_zip_streams_logs_a_failed_take_and_closes(self) -> None:
        from twisted.logger import Logger
        from twisted_aleph.stream import operators

        class FailingSource:
            def __init__(self, failures: List[Any]) -> None:
                self.failures = failures

            def take(self, default: Any = None) -> Deferred:
                failure = self.failures.pop(0)
                if failure == "raise":
                    raise ValueError("take raised")
                if failure is None:
                    return defer.succeed("ok")
                return defer.fail(failure)

        for failures, error, zipped in (
                ([None, RuntimeError("disk on fire")], RuntimeError, [("a", "ok")]),
                (["raise"], ValueError, [])):
            events: List[Any] = []
            self.patch(operators, "log", Logger(observer=events.append))
            out = s.zip_streams(s.stream_of("abc"), FailingSource(failures))
            self.assertEqual(collect(self, out), zipped)
            self.assertTrue(out.is_closed)
            self.assertEqual(len(events), 1)
            self.assertTrue(events[0]["log_failure"].check(error))
            self.assertIn("zip_streams", events[0]["log_format"])


class ToSourceTests(unittest.TestCase):

    def test_stream_is_returned_as_is(self) -> None:
        st = s.Stream()
        self.assertIs(s.to_source(st), st)
        sp = s.splice(s.Stream(), s.Stream())
        self.assertIs(s.to_source(sp), sp)

    def test_list_and_generator_pulled_lazily(self) -> None:
        self.assertEqual(collect(self, s.to_source([1, 2, 3])), [1, 2, 3])
        produced: List[int] = []

        def gen() -> Any:
            for i in range(5):
                produced.append(i)
                yield i

        st = s.to_source(gen())
        self.assertEqual(produced, [0])  # buffer 0: one pending put, no more
        self.assertEqual(self.successResultOf(st.take()), 0)
        self.assertEqual(produced, [0, 1])
        self.assertEqual(collect(self, st), [1, 2, 3, 4])

    def test_raising_generator_closes_stream_keeping_items(self) -> None:
        def gen() -> Any:
            yield 1
            raise RuntimeError("boom")

        st = s.to_source(gen(), buffer_size=5)
        self.assertEqual(collect(self, st), [1])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_deferred(self) -> None:
        d: Deferred = Deferred()
        st = s.to_source(d)
        t = st.take()
        self.assertNoResult(t)
        d.callback("v")
        self.assertEqual(self.successResultOf(t), "v")
        self.assertIsNone(self.successResultOf(st.take()))

    def test_failed_deferred_closes_stream(self) -> None:
        st = s.to_source(defer.fail(ValueError("x")))
        self.assertIsNone(self.successResultOf(st.take()))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_async_generator(self) -> None:
        gate: Deferred = Deferred()

        async def agen() -> Any:
            yield 1
            await gate
            yield 2

        st = s.to_source(agen())
        self.assertEqual(self.successResultOf(st.take()), 1)
        t = st.take()
        self.assertNoResult(t)
        gate.callback(None)
        self.assertEqual(self.successResultOf(t), 2)
        self.assertIsNone(self.successResultOf(st.take()))

    def test_async_generator_yielding_none_and_many_items(self) -> None:
        async def agen() -> Any:
            yield None  # a message, not the end
            for i in range(20000):
                yield i

        got = collect(self, s.to_source(agen()))
        self.assertEqual(got, [None] + list(range(20000)))

    def test_blocking_iterable_yielding_none(self) -> Deferred:
        st = s.to_source(iter([None, 1]), blocking=True)
        return s.reduce(lambda acc, x: acc + [x], [], st).addCallback(
            self.assertEqual, [None, 1])

    def test_queue_queue_read_in_thread_pool(self) -> Deferred:
        q: queue.Queue = queue.Queue()
        st = s.to_source(q)
        for x in ("a", "b", None):
            q.put(x)
        return s.reduce(lambda acc, x: acc + [x], [], st).addCallback(
            self.assertEqual, ["a", "b"])

    def test_closed_stream_stops_reading_its_queue(self) -> Deferred:
        """No pool thread stays blocked on an idle queue after close (it
        would hang the reactor's shutdown)."""
        from twisted.internet import reactor
        from twisted_aleph.stream import coerce

        self.patch(coerce, "QUEUE_POLL_SECONDS", 0.01)
        timed_out: Deferred = Deferred()
        reads = [0]

        class WatchedQueue(queue.Queue):
            def get(self, block: bool = True, timeout: Any = None) -> Any:
                reads[0] += 1
                try:
                    return super().get(block, timeout)
                except queue.Empty:
                    if not timed_out.called:
                        reactor.callFromThread(timed_out.callback, reads[0])
                    raise

        q = WatchedQueue()
        st = s.to_source(q)
        st.close()

        def after_timeout(n: int) -> Deferred:
            return task.deferLater(reactor, 0, lambda: self.assertEqual(reads[0], n))

        return timed_out.addCallback(after_timeout)

    def test_blocking_iterable_runs_off_reactor_thread(self) -> Deferred:
        threads_seen: List[bool] = []

        def gen() -> Any:
            for i in range(3):
                threads_seen.append(threading.current_thread() is threading.main_thread())
                yield i

        st = s.to_source(gen(), blocking=True)

        def check(got: List[int]) -> None:
            self.assertEqual(got, [0, 1, 2])
            self.assertEqual(threads_seen, [False] * 3)

        return s.reduce(lambda acc, x: acc + [x], [], st).addCallback(check)


class BlockingIterTests(unittest.TestCase):

    def test_refused_on_reactor_thread(self) -> None:
        st = s.stream_of([1])
        with self.assertRaises(RuntimeError):
            next(iter(s.to_blocking_iter(st)))

    def test_iterates_from_a_thread(self) -> Deferred:
        src = s.Stream()
        s.put_all(src, [1, 2, 3]).addCallback(lambda _: src.close())
        d = threads.deferToThread(lambda: list(s.to_blocking_iter(src, timeout=10)))
        return d.addCallback(self.assertEqual, [1, 2, 3])

    def test_timeout_from_a_thread(self) -> Deferred:
        src = s.Stream()
        self.addCleanup(src.close)

        def run() -> None:
            with self.assertRaises(TimeoutError):
                next(iter(s.to_blocking_iter(src, timeout=0.01)))

        return threads.deferToThread(run)

    @defer.inlineCallbacks
    def test_a_timed_out_wait_loses_no_message(self) -> Any:
        src = s.Stream()
        self.addCleanup(src.close)

        def wait_in_vain() -> None:
            with self.assertRaises(TimeoutError):
                next(iter(s.to_blocking_iter(src, timeout=0.01)))

        yield threads.deferToThread(wait_in_vain)
        put = src.put("kept")  # must not go to the abandoned wait
        self.assertEqual((yield src.take()), "kept")
        self.assertIs((yield put), True)


class AsyncForAndSpliceTests(unittest.TestCase):

    def test_async_for(self) -> None:
        src = s.Stream()

        async def total() -> int:
            acc = 0
            async for x in src:
                acc += x
            return acc

        d = defer.ensureDeferred(total())
        src.put(1)
        src.put(2)
        self.assertNoResult(d)
        src.close()
        self.assertEqual(self.successResultOf(d), 3)

    def test_async_for_over_none_messages(self) -> None:
        async def items() -> List[Any]:
            return [x async for x in s.stream_of([None, 0])]

        self.assertEqual(self.successResultOf(defer.ensureDeferred(items())), [None, 0])

    def test_spliced_put_goes_to_sink_take_from_source(self) -> None:
        sink, source = s.Stream(5), s.Stream(5)
        duplex = s.splice(sink, source)
        duplex.put("out")
        source.put("in")
        self.assertEqual(self.successResultOf(sink.take()), "out")
        self.assertEqual(self.successResultOf(duplex.take()), "in")
        self.assertIs(duplex.offer("x"), True)

    def test_spliced_close_closes_sink_only(self) -> None:
        sink, source = s.Stream(), s.Stream()
        duplex = s.splice(sink, source)
        closed: List[bool] = []
        duplex.on_closed(lambda: closed.append(True))
        duplex.close()
        self.assertTrue(duplex.is_closed and sink.is_closed and closed)
        self.assertFalse(source.is_closed)
        self.assertFalse(duplex.is_drained)
        source.close()
        self.assertTrue(duplex.is_drained)

    def test_connect_from_and_to_spliced(self) -> None:
        inbound, outbound = s.Stream(), s.Stream(5)
        conn = s.splice(outbound, inbound)
        s.connect(conn, conn)  # echo: everything read is written back
        inbound.put("ping")
        self.assertEqual(self.successResultOf(outbound.take()), "ping")
        self.assertEqual(conn.downstream, [conn])
        inbound.close()
        self.assertTrue(outbound.is_closed)


class HotPathTests(unittest.TestCase):

    def count_deferreds(self, fn: Any) -> int:
        created = [0]
        original = Deferred.__init__

        def counting(d: Any, *args: Any, **kwargs: Any) -> None:
            created[0] += 1
            original(d, *args, **kwargs)

        Deferred.__init__ = counting  # type: ignore[method-assign]
        try:
            fn()
        finally:
            Deferred.__init__ = original  # type: ignore[method-assign]
        return created[0]

    def test_offer_through_connected_edges_allocates_no_deferred(self) -> None:
        src = s.Stream()
        got: List[Any] = []
        done = s.consume(got.append, s.filter(bool, s.map(abs, src)))
        direct, into = s.Stream(), s.Stream(1000)
        s.connect(direct, into)

        def offers() -> None:
            for i in range(100):
                self.assertIs(src.offer(i), True)
                self.assertIs(direct.offer(i), True)

        self.assertEqual(self.count_deferreds(offers), 0)
        self.assertEqual(got, list(range(1, 100)))
        src.close()
        self.assertIs(self.successResultOf(done), True)


class EdgeProtocolTests(unittest.TestCase):
    """The Edge contract that transports rely on (``stream.core.attach``)."""

    class Recorder(s.Edge):
        def __init__(self) -> None:
            super().__init__(None, False, "recorder")
            self.got: List[Any] = []
            self.answers: List[Any] = []
            self.drained = False

        def deliver(self, msg: Any) -> Any:
            self.got.append(msg)
            return self.answers.pop(0) if self.answers else True

        def source_drained(self) -> None:
            self.drained = True

    def test_deferred_answer_pauses_until_fired(self) -> None:
        from twisted_aleph.stream.core import attach
        src, edge = s.Stream(), self.Recorder()
        wait: Deferred = Deferred()
        edge.answers.append(wait)
        attach(src, edge)
        self.assertIs(src.offer(1), True)  # taken by the edge, which is busy
        later = src.offer(2)
        self.assertNoResult(later)
        self.assertEqual(edge.got, [1])
        src.close()
        self.assertFalse(edge.drained)  # 2 is still to come
        wait.callback(True)
        self.assertEqual(edge.got, [1, 2])
        self.assertIs(self.successResultOf(later), True)
        self.assertTrue(edge.drained)
        self.assertTrue(src.is_drained)

    def test_deferred_false_answer_detaches_the_edge(self) -> None:
        from twisted_aleph.stream.core import attach
        src, edge = s.Stream(3), self.Recorder()
        wait: Deferred = Deferred()
        edge.answers.append(wait)
        attach(src, edge)
        src.put(1)
        src.put(2)
        wait.callback(False)
        self.assertEqual(edge.got, [1])
        self.assertEqual(self.successResultOf(src.take()), 2)  # left in src

    def test_attach_takes_a_source_only(self) -> None:
        """Coercion is the facade's job (connect, map...); core.attach refuses a list."""
        from twisted_aleph.stream.core import attach
        e = self.assertRaises(TypeError, attach, [1, 2], self.Recorder())
        self.assertIn("to_source", str(e))

    def test_raising_edge_is_detached_and_logged(self) -> None:
        from twisted_aleph.stream.core import attach
        src, edge = s.Stream(3), self.Recorder()
        edge.deliver = lambda msg: 1 // 0  # type: ignore[assignment]
        attach(src, edge)
        src.put(1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(src.downstream, [])
        # it was the source's only consumer, so the source is closed (Manifold)
        self.assertTrue(src.is_closed)
        self.assertIs(self.successResultOf(src.put(2)), False)


def _raising_after(items: List[Any], error: Exception) -> Any:
    """A generator of ``items`` that then raises ``error``."""
    yield from items
    raise error


class IterableErrorTests(unittest.TestCase):
    """put_all and mapcat when the iterable itself raises."""

    def test_put_all_raising_at_once_is_a_failed_deferred(self) -> None:
        d = s.put_all(s.Stream(), _raising_after([], ValueError("first")))
        self.failureResultOf(d, ValueError)

    def test_put_all_raising_after_backpressure_fails_its_deferred(self) -> None:
        st = s.Stream(1)
        d = s.put_all(st, _raising_after([1, 2], ValueError("third")))
        self.assertNoResult(d)
        self.assertEqual(self.successResultOf(st.take()), 1)
        self.failureResultOf(d, ValueError)
        self.assertEqual(self.successResultOf(st.take()), 2)
        self.assertFalse(st.is_closed)

    def test_put_all_failing_put_fails_its_deferred(self) -> None:
        st = s.Stream()
        d = s.put_all(st, [1, 2])
        st._pending[0][1].errback(RuntimeError("put failed"))
        self.failureResultOf(d, RuntimeError)

    def test_mapcat_raising_after_backpressure_ends_the_pipeline(self) -> None:
        src = s.Stream()
        out = s.mapcat(lambda m: _raising_after([m], ValueError(m)), src)
        self.assertIs(self.successResultOf(src.put("a")), True)
        self.assertEqual(self.successResultOf(out.take()), "a")
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertTrue(out.is_closed)
        self.assertIs(self.successResultOf(out.take(END)), END)
        self.assertTrue(src.is_closed)  # like map: its only consumer ended
        self.assertIs(self.successResultOf(src.put("b")), False)


class ReduceLeavesSourceOpenTests(unittest.TestCase):
    """Manifold's reduce takes what it folds and leaves the rest in the source."""

    def test_reduced_leaves_the_source_open(self) -> None:
        src = s.Stream(10)
        for i in range(5):
            src.put(i)

        def upto(acc: int, x: int) -> Any:
            return xforms.Reduced(acc + x) if x == 2 else acc + x

        self.assertEqual(self.successResultOf(s.reduce(upto, 0, src)), 3)
        self.assertFalse(src.is_closed)
        self.assertIs(self.successResultOf(src.put(5)), True)
        self.assertEqual(collect(self, s.transform(s.take(3), src)), [3, 4, 5])

    def test_raising_f_leaves_the_source_open(self) -> None:
        src = s.Stream(3)
        for x in (1, 0, 5):
            src.put(x)
        self.failureResultOf(s.reduce(lambda acc, x: acc / x, 1, src), ZeroDivisionError)
        self.assertFalse(src.is_closed)
        self.assertEqual(self.successResultOf(src.take()), 5)
        self.assertIs(self.successResultOf(src.put(6)), True)

    def test_reduced_on_an_unbuffered_source_leaves_later_puts_pending(self) -> None:
        src = s.Stream()
        d = s.reduce(lambda acc, x: xforms.Reduced(x), None, src)
        self.assertIs(self.successResultOf(src.put("first")), True)
        self.assertEqual(self.successResultOf(d), "first")
        later = src.put("second")
        self.assertNoResult(later)
        self.assertEqual(self.successResultOf(src.take()), "second")
        self.assertIs(self.successResultOf(later), True)


class ZipClosingTests(unittest.TestCase):
    """Closing a zipped stream (or a multi-source map) stops its sources."""

    def test_closing_multi_source_map_stops_periodically_sources(self) -> None:
        clock = task.Clock()
        a = s.periodically(1.0, lambda: 1, clock=clock)
        b = s.periodically(1.0, lambda: 2, clock=clock)
        out = s.map(lambda x, y: x + y, a, b)
        clock.advance(1.0)
        self.assertEqual(self.successResultOf(out.take()), 3)
        out.close()
        self.assertTrue(a.is_closed)
        self.assertTrue(b.is_closed)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_closing_zip_closes_sources_and_no_put_is_swallowed(self) -> None:
        a, b = s.Stream(), s.Stream()
        out = s.zip_streams(a, b)
        out.close()
        self.assertTrue(a.is_closed)
        self.assertTrue(b.is_closed)
        self.assertIs(self.successResultOf(a.put(1)), False)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_closing_zip_withdraws_a_pending_take(self) -> None:
        # a duplex source: closing it closes its sink half, not the half
        # the zip takes from, so the take must be withdrawn
        inbound = s.Stream(1)
        duplex = s.splice(s.Stream(), inbound)
        other = s.Stream(1)
        out = s.zip_streams(duplex, other)
        out.close()
        self.assertTrue(other.is_closed)
        self.assertIs(self.successResultOf(inbound.put("kept")), True)
        self.assertEqual(self.successResultOf(inbound.take()), "kept")
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_source_with_another_downstream_is_left_open(self) -> None:
        a, b, c = s.Stream(), s.Stream(), s.Stream()
        out = s.zip_streams(a, b)
        s.connect(a, c)
        out.close()
        self.assertFalse(a.is_closed)
        self.assertTrue(b.is_closed)

    def test_closing_zip_while_its_put_is_pending_stops_the_loop(self) -> None:
        a, b = s.Stream(5), s.Stream(5)
        for i in range(3):
            a.put(i)
            b.put(i)
        out = s.zip_streams(a, b)
        out.close()
        self.assertEqual(collect(self, out), [(0, 0)])
        self.assertEqual(self.successResultOf(a.take()), 1)  # nothing more taken


class CoercedSourceTests(unittest.TestCase):
    """Operators coerce a plain iterable with ``to_source`` (Manifold's ->source)."""

    def test_operators_accept_a_list(self) -> None:
        self.assertEqual(collect(self, s.map(str, [1, 2])), ["1", "2"])
        self.assertEqual(collect(self, s.filter(bool, [0, 1, 2])), [1, 2])
        self.assertEqual(collect(self, s.mapcat(lambda x: [x, x], [1])), [1, 1])
        self.assertEqual(collect(self, s.map(lambda x, y: x + y, [1, 2], [10, 20])),
                         [11, 22])
        self.assertEqual(collect(self, s.zip_streams([1], "a")), [(1, "a")])
        self.assertEqual(self.successResultOf(s.reduce(lambda a, x: a + x, 0, [1, 2])), 3)
        self.assertEqual(collect(self, s.batch(2, None, [1, 2, 3], clock=task.Clock())),
                         [[1, 2], [3]])
        self.assertEqual(collect(self, s.transform(s.take(2), [1, 2, 3])), [1, 2])
        self.assertEqual(collect(self, s.buffer(2, [1, 2])), [1, 2])
        dst = s.Stream(2)
        s.connect_via([1, 2], dst.offer, dst)
        self.assertEqual(collect(self, dst), [1, 2])
        got: List[Any] = []
        self.assertIs(self.successResultOf(s.consume(got.append, (x for x in "ab"))), True)
        self.assertEqual(got, ["a", "b"])

    def test_connect_accepts_a_list(self) -> None:
        dst = s.Stream(3)
        s.connect([1, 2, 3], dst)
        self.assertEqual(collect(self, dst), [1, 2, 3])
