"""Tests for twisted_aleph.deferred: Manifold's deferred vocabulary on Twisted.

chain/catch/zip/alt with values, Deferreds and coroutines; ``timeout`` on a
``task.Clock`` with and without a value; ``future`` in the thread pool; and
``loop``/``recur`` for a million synchronous rounds (no stack growth).
"""

from __future__ import annotations

import threading
from typing import Any, List

from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.trial import unittest

from twisted_aleph import deferred as d


class ChainTests(unittest.TestCase):

    def test_plain_value_and_functions(self) -> None:
        r = d.chain(2, lambda x: x + 1, lambda x: x * 10)
        self.assertEqual(self.successResultOf(r), 30)

    def test_steps_may_return_deferreds_and_coroutines(self) -> None:
        later: Deferred = Deferred()

        async def double(x: int) -> int:
            return 2 * (await defer.succeed(x))

        r = d.chain(later, lambda x: defer.succeed(x + 1), double, str)
        self.assertNoResult(r)
        later.callback(1)
        self.assertEqual(self.successResultOf(r), "4")

    def test_coroutine_as_initial_value(self) -> None:
        async def five() -> int:
            return 5

        self.assertEqual(self.successResultOf(d.chain(five(), lambda x: x + 1)), 6)

    def test_any_awaitable_as_initial_value(self) -> None:
        class Ready:
            def __await__(self) -> Any:
                if False:
                    yield
                return 7

        self.assertEqual(self.successResultOf(d.chain(Ready(), str)), "7")
        self.assertEqual(self.successResultOf(d.to_deferred(Ready())), 7)

    def test_string_step_looks_up_key(self) -> None:
        r = d.chain({"body": b"hi"}, "body", bytes.decode)
        self.assertEqual(self.successResultOf(r), "hi")

    def test_error_skips_remaining_steps(self) -> None:
        calls: List[Any] = []
        r = d.chain(0, lambda x: 1 // x, calls.append)
        self.failureResultOf(r, ZeroDivisionError)
        self.assertEqual(calls, [])


    def test_two_chains_from_one_deferred_each_see_its_value(self) -> None:
        """Manifold's chain returns a new deferred and leaves ``x`` alone:
        ``status``/``body`` branches of one response both see the response."""
        resp: Deferred = Deferred()
        status = d.chain(resp, "status")
        body = d.chain(resp, "body")
        self.assertIsNot(status, resp)
        resp.callback({"status": 200, "body": b"hi"})
        self.assertEqual(self.successResultOf(status), 200)
        self.assertEqual(self.successResultOf(body), b"hi")
        self.assertEqual(self.successResultOf(resp), {"status": 200, "body": b"hi"})
        done = defer.succeed({"status": 201})
        self.assertEqual(self.successResultOf(d.chain(done, "status")), 201)
        self.assertEqual(self.successResultOf(done), {"status": 201})

    def test_failure_reaches_every_chain_and_is_not_unhandled_on_x(self) -> None:
        """Both branches get ``x``'s error; ``x`` does not log it as an
        unhandled error (trial would fail the test) since branches carry it."""
        resp: Deferred = Deferred()
        status = d.chain(resp, "status")
        body = d.chain(resp, "body")
        resp.errback(KeyError("k"))
        self.failureResultOf(status, KeyError)
        self.failureResultOf(body, KeyError)
        failed = defer.fail(ValueError("v"))
        self.failureResultOf(d.chain(failed, str), ValueError)
        self.failureResultOf(d.chain(failed, str), ValueError)
        self.failureResultOf(failed, ValueError)  # x keeps its own result

    def test_cancelling_the_chain_cancels_x(self) -> None:
        cancelled: List[Deferred] = []
        src: Deferred = Deferred(cancelled.append)
        r = d.chain(src, str)
        r.cancel()
        self.assertEqual(cancelled, [src])
        self.failureResultOf(r, defer.CancelledError)


class CatchTests(unittest.TestCase):

    def test_catches_any_exception_by_default(self) -> None:
        r = d.catch(defer.fail(ValueError("v")), lambda e: ("caught", str(e)))
        self.assertEqual(self.successResultOf(r), ("caught", "v"))

    def test_only_given_error_types(self) -> None:
        r = d.catch(defer.fail(ValueError("v")), lambda e: "caught", KeyError)
        self.failureResultOf(r, ValueError)
        r2 = d.catch(defer.fail(KeyError("k")), lambda e: "caught", ValueError, KeyError)
        self.assertEqual(self.successResultOf(r2), "caught")

    def test_handler_may_return_a_deferred_and_success_passes_through(self) -> None:
        r = d.catch(defer.fail(ValueError()), lambda e: defer.succeed("async"))
        self.assertEqual(self.successResultOf(r), "async")
        self.assertEqual(self.successResultOf(d.catch(7, lambda e: 0)), 7)

    def test_error_in_handler_propagates(self) -> None:
        r = d.catch(defer.fail(ValueError()), lambda e: 1 // 0)
        self.failureResultOf(r, ZeroDivisionError)


    def test_leaves_the_caught_deferred_alone(self) -> None:
        """``catch(x, f)`` recovers in a new Deferred; ``x`` keeps its error
        for whoever else holds it."""
        x: Deferred = Deferred()
        r = d.catch(x, lambda e: "caught")
        later: List[Any] = []
        x.addErrback(later.append)
        x.errback(ValueError("v"))
        self.assertEqual(self.successResultOf(r), "caught")
        self.assertEqual(len(later), 1)
        self.assertIsInstance(later[0].value, ValueError)


class ZipAltTests(unittest.TestCase):

    def test_zip_keeps_order_whatever_the_firing_order(self) -> None:
        a: Deferred = Deferred()
        b: Deferred = Deferred()
        r = d.zip(a, 2, b)
        b.callback(3)
        self.assertNoResult(r)
        a.callback(1)
        self.assertEqual(self.successResultOf(r), [1, 2, 3])

    def test_zip_of_nothing(self) -> None:
        self.assertEqual(self.successResultOf(d.zip()), [])

    def test_zip_fails_with_the_original_error(self) -> None:
        later: Deferred = Deferred()
        r = d.zip(later, defer.fail(KeyError("k")))
        self.failureResultOf(r, KeyError)
        later.errback(ValueError())  # a second error is consumed, not unhandled

    def test_alt_first_to_realize_wins(self) -> None:
        a: Deferred = Deferred()
        b: Deferred = Deferred()
        r = d.alt(a, b)
        self.assertNoResult(r)
        b.callback("b")
        a.callback("a")
        self.assertEqual(self.successResultOf(r), "b")

    def test_alt_first_error_wins_later_errors_handled(self) -> None:
        a: Deferred = Deferred()
        b: Deferred = Deferred()
        r = d.alt(a, b)
        a.errback(ValueError("first"))
        b.errback(KeyError("late"))  # consumed by alt: trial would fail otherwise
        self.failureResultOf(r, ValueError)

    def test_alt_leaves_the_values_of_its_inputs_alone(self) -> None:
        a: Deferred = Deferred()
        b: Deferred = Deferred()
        d.alt(a, b)
        a.callback("a")
        b.callback("b")
        self.assertEqual(self.successResultOf(a), "a")  # not None
        self.assertEqual(self.successResultOf(b), "b")

    def test_alt_with_a_plain_value(self) -> None:
        self.assertEqual(self.successResultOf(d.alt(Deferred(), "now")), "now")


class TimeoutTests(unittest.TestCase):

    def test_without_value_fails_with_timeout_error(self) -> None:
        clock = task.Clock()
        pending: Deferred = Deferred()
        r = d.timeout(pending, 3, clock=clock)
        self.assertIs(r, pending)
        clock.advance(2.9)
        self.assertNoResult(r)
        clock.advance(0.1)
        self.failureResultOf(r, TimeoutError)

    def test_with_value_realizes_it(self) -> None:
        clock = task.Clock()
        r = d.timeout(Deferred(), 3, value="default", clock=clock)
        clock.advance(3)
        self.assertEqual(self.successResultOf(r), "default")

    def test_with_value_none(self) -> None:
        clock = task.Clock()
        r = d.timeout(Deferred(), 1, value=None, clock=clock)
        clock.advance(1)
        self.assertIsNone(self.successResultOf(r))

    def test_realized_in_time_cancels_timer(self) -> None:
        clock = task.Clock()
        pending: Deferred = Deferred()
        r = d.timeout(pending, 3, clock=clock)
        pending.callback("ok")
        self.assertEqual(self.successResultOf(r), "ok")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_already_realized_is_untouched(self) -> None:
        clock = task.Clock()
        r = d.timeout(defer.succeed(1), 3, clock=clock)
        self.assertEqual(self.successResultOf(r), 1)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_coroutine_is_accepted(self) -> None:
        clock = task.Clock()

        async def never() -> None:
            await Deferred()

        r = d.timeout(never(), 2, value="late", clock=clock)
        self.assertNoResult(r)
        clock.advance(2)
        self.assertEqual(self.successResultOf(r), "late")


    def test_fired_but_waiting_on_another_deferred_times_out(self) -> None:
        """A Deferred paused on a chained Deferred is not realized: the
        timer still runs, and on expiry it fails with TimeoutError."""
        clock = task.Clock()
        never: Deferred = Deferred()
        r = d.timeout(Deferred().addCallback(lambda _: never), 5, clock=clock)
        paused: Deferred = Deferred()
        paused.addCallback(lambda _: never)
        paused.callback(1)
        self.assertFalse(d.realized(paused))
        r2 = d.timeout(paused, 5, clock=clock)
        self.assertIs(r2, paused)
        clock.advance(4.9)
        self.assertNoResult(r2)
        clock.advance(5)
        self.failureResultOf(r2, TimeoutError)
        self.failureResultOf(r, TimeoutError)  # never fired: the plain case
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_chain_waiting_on_another_deferred_times_out_with_value(self) -> None:
        clock = task.Clock()
        never: Deferred = Deferred()
        r = d.timeout(d.chain(1, lambda _: never), 5, value="late", clock=clock)
        clock.advance(10)
        self.assertEqual(self.successResultOf(r), "late")

    def test_late_callback_after_timeout_is_a_no_op(self) -> None:
        """Manifold's timeout! makes a later success! a no-op: the producer
        firing a timed-out Deferred gets no AlreadyCalledError."""
        clock = task.Clock()
        pending: Deferred = Deferred()
        d.timeout(pending, 1, clock=clock)
        clock.advance(1)
        pending.callback(1)  # must not raise AlreadyCalledError
        self.failureResultOf(pending, TimeoutError)
        with_value: Deferred = Deferred()
        d.timeout(with_value, 1, value="v", clock=clock)
        clock.advance(1)
        with_value.errback(ValueError())
        self.assertEqual(self.successResultOf(with_value), "v")


class FutureTests(unittest.TestCase):

    def test_runs_in_a_thread(self) -> Deferred:
        def where(x: int) -> Any:
            return x, threading.current_thread() is threading.main_thread()

        return d.future(where, 4).addCallback(self.assertEqual, (4, False))

    def test_exception_fails_the_deferred(self) -> Deferred:
        r = d.future(lambda: 1 // 0)
        return self.assertFailure(r, ZeroDivisionError)

    def test_realized(self) -> None:
        later: Deferred = Deferred()
        self.assertFalse(d.realized(later))
        later.callback(1)
        self.assertTrue(d.realized(later))
        self.assertTrue(d.realized(defer.succeed(None)))
        waiting = defer.succeed(None).addCallback(lambda _: Deferred())
        self.assertFalse(d.realized(waiting))


class LoopTests(unittest.TestCase):

    def test_a_million_synchronous_rounds(self) -> None:
        def body(i: int, acc: int) -> Any:
            if i == 10 ** 6:
                return acc
            return d.recur(i + 1, acc + 1)

        self.assertEqual(self.successResultOf(d.loop(body, 0, 0)), 10 ** 6)

    def test_a_million_rounds_of_already_fired_deferreds(self) -> None:
        def body(i: int) -> Any:
            if i == 10 ** 6:
                return defer.succeed("done")
            return defer.succeed(d.recur(i + 1))

        self.assertEqual(self.successResultOf(d.loop(body, 0)), "done")

    def test_coroutine_body(self) -> None:
        async def body(i: int) -> Any:
            x = await defer.succeed(i)
            return d.recur(x + 1) if x < 10 ** 4 else x

        self.assertEqual(self.successResultOf(d.loop(body, 0)), 10 ** 4)

    def test_asynchronous_rounds_mixed_with_synchronous(self) -> None:
        clock = task.Clock()

        def body(i: int) -> Any:
            if i == 50000:
                return i
            if i % 10000 == 0:
                return task.deferLater(clock, 1, d.recur, i + 1)
            return d.recur(i + 1)

        r = d.loop(body, 0)
        for _ in range(4):
            self.assertNoResult(r)
            clock.advance(1)
        self.assertNoResult(r)
        clock.advance(1)
        self.assertEqual(self.successResultOf(r), 50000)

    def test_many_asynchronous_rounds(self) -> None:
        """Each round waits on a Deferred fired later, from outside: each
        resumption runs on the firer's stack and returns to it."""
        gates: List[Deferred] = []

        def body(i: int) -> Any:
            if i == 10 ** 5:
                return i
            g: Deferred = Deferred()
            gates.append(g)
            return g.addCallback(lambda _: d.recur(i + 1))

        r = d.loop(body, 0)
        while not r.called:
            gates.pop().callback(None)
        self.assertEqual(self.successResultOf(r), 10 ** 5)

    def test_exception_in_body_fails_the_loop(self) -> None:
        def body(i: int) -> Any:
            if i == 3:
                raise ValueError(i)
            return d.recur(i + 1)

        self.failureResultOf(d.loop(body, 0), ValueError)

    def test_failed_deferred_in_body_fails_the_loop(self) -> None:
        r = d.loop(lambda: defer.fail(KeyError("k")))
        self.failureResultOf(r, KeyError)


class FindCauseTests(unittest.TestCase):
    def test_through_reasons_and_causes(self) -> None:
        from twisted.python.failure import Failure
        from twisted.web._newclient import ResponseNeverReceived

        from twisted_aleph.deferred import find_cause
        inner = KeyError("inner")
        try:
            try:
                raise inner
            except KeyError as e:
                raise RuntimeError("outer") from e
        except RuntimeError as outer:
            wrapped = ResponseNeverReceived([Failure(ValueError("other")), Failure(outer)])
        self.assertIs(find_cause(Failure(wrapped), lambda e: isinstance(e, KeyError)), inner)
        self.assertIsNone(find_cause(Failure(wrapped), lambda e: isinstance(e, OSError)))
        self.assertIsNone(find_cause(None, lambda e: True))

    def test_bounded(self) -> None:
        from twisted_aleph.deferred import find_cause

        class Many(Exception):
            def __init__(self) -> None:
                super().__init__()
                self.reasons = [ValueError(i) for i in range(100)] + [KeyError()]
        self.assertIsNone(find_cause(Many(), lambda e: isinstance(e, KeyError)))
        self.assertIsInstance(find_cause(Many(), lambda e: isinstance(e, KeyError), 200), KeyError)
