"""Property tests (hypothesis) for the stream package: Manifold's laws.

* FIFO: whatever the buffer size, puts come out of takes in order;
* backpressure: with buffer n, exactly the puts beyond n stay unrealized,
  checked against a tiny reference model after every put/take/close;
* operators and transducer stages agree with plain Python on lists, both
  when the consumer keeps up (push) and when it pulls one message at a time
  (every stage then waits on backpressure between messages).

Everything here is synchronous: a stream fed from a closed ``stream_of``
needs no reactor, so each take must be realized at once. For a longer
search: ``STREAM_LAWS_EXAMPLES=5000 python -m twisted.trial tests.test_stream_laws``.
"""

from __future__ import annotations

import itertools
import os
from typing import Any, List

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from twisted_aleph import stream as s
from twisted_aleph.stream import xforms

END = object()
SETTINGS = settings(max_examples=int(os.environ.get("STREAM_LAWS_EXAMPLES", "120")),
                    deadline=None)
small_ints = st.lists(st.integers(min_value=-5, max_value=5), max_size=30)
buffer_sizes = st.integers(min_value=0, max_value=8)


def pull_all(case: unittest.TestCase, src: Any) -> List[Any]:
    """Take messages one by one; each take must be realized synchronously."""
    out = []
    while True:
        msg = case.successResultOf(src.take(END))
        if msg is END:
            return out
        out.append(msg)


def push_all(case: unittest.TestCase, src: Any) -> List[Any]:
    """Consume with a push edge; the consume Deferred must fire synchronously."""
    out: List[Any] = []
    case.assertIs(case.successResultOf(s.consume(out.append, src)), True)
    return out


def chunks(xs: List[Any], n: int, keep_partial: bool) -> List[tuple]:
    out = [tuple(xs[i:i + n]) for i in range(0, len(xs), n)]
    if out and len(out[-1]) < n and not keep_partial:
        out.pop()
    return out


class FifoAndBackpressure(unittest.TestCase):

    @SETTINGS
    @given(xs=small_ints, n=buffer_sizes)
    def test_puts_then_takes_keep_order(self, xs: List[int], n: int) -> None:
        stream = s.Stream(n)
        puts = [stream.put(x) for x in xs]
        self.assertEqual(sum(1 for d in puts if d.called), min(n, len(xs)))
        stream.close()
        self.assertEqual(pull_all(self, stream), xs)
        self.assertEqual([self.successResultOf(d) for d in puts], [True] * len(xs))
        self.assertTrue(stream.is_drained)

    @SETTINGS
    @given(n=buffer_sizes)
    def test_one_put_beyond_buffer_waits_for_one_take(self, n: int) -> None:
        stream = s.Stream(n)
        puts = [stream.put(i) for i in range(n + 1)]
        for d in puts[:n]:
            self.assertIs(self.successResultOf(d), True)
        self.assertNoResult(puts[n])
        self.assertEqual(self.successResultOf(stream.take()), 0)
        self.assertIs(self.successResultOf(puts[n]), True)

    @SETTINGS
    @given(n=buffer_sizes, ops=st.lists(
        st.sampled_from(["put", "put", "take", "close"]), max_size=40))
    def test_matches_reference_model(self, n: int, ops: List[str]) -> None:
        """Random put/take/close against a model queue: values, realization
        of every put and take, closed/drained flags."""
        stream = s.Stream(n)
        queue: List[int] = []        # accepted, not yet taken (model)
        waiting_takers: List[Any] = []
        realized = {}                # put value -> its result, once realized
        taken: List[Any] = []
        closed = False
        counter = itertools.count()
        for op in ops:
            if op == "put":
                x = next(counter)
                stream.put(x).addCallback(lambda ok, x=x: realized.update({x: ok}))
                if closed:
                    self.assertIs(realized.pop(x), False)
                    continue
                if waiting_takers:
                    self.assertEqual(self.successResultOf(waiting_takers.pop(0)), x)
                    self.assertIs(realized.pop(x), True)
                    continue
                queue.append(x)
            elif op == "take":
                d = stream.take(END)
                if queue:
                    taken.append(self.successResultOf(d))
                    self.assertEqual(taken[-1], queue.pop(0))
                elif closed:
                    self.assertIs(self.successResultOf(d), END)
                else:
                    self.assertNoResult(d)
                    waiting_takers.append(d)
            else:
                stream.close()
                closed = True
                for d in waiting_takers:
                    self.assertIs(self.successResultOf(d), END)
                waiting_takers = []
            # the first n queued are realized puts; the rest wait
            for i, x in enumerate(queue):
                self.assertEqual(realized.get(x), True if i < n else None)
            self.assertEqual(stream.is_closed, closed)
            self.assertEqual(stream.is_drained, closed and not queue)


# stage, equivalent on a list
def _stages(k: int) -> List[Any]:
    even = lambda x: x % 2 == 0  # noqa: E731
    small = lambda x: x < 2  # noqa: E731
    return [
        (xforms.take(k), lambda xs: xs[:k]),
        (xforms.drop(k), lambda xs: xs[k:]),
        (xforms.take_while(small), lambda xs: list(itertools.takewhile(small, xs))),
        (xforms.drop_while(small), lambda xs: list(itertools.dropwhile(small, xs))),
        (xforms.partition(k + 1), lambda xs: chunks(xs, k + 1, False)),
        (xforms.partition_all(k + 1), lambda xs: chunks(xs, k + 1, True)),
        (xforms.partition_by(even),
         lambda xs: [tuple(g) for _, g in itertools.groupby(xs, even)]),
        (xforms.dedupe(), lambda xs: [x for x, _ in itertools.groupby(xs)]),
        (xforms.map(abs), lambda xs: [abs(x) for x in xs]),
        (xforms.filter(even), lambda xs: [x for x in xs if even(x)]),
        (xforms.mapcat(lambda x: [x] * (x % 3)),
         lambda xs: [y for x in xs for y in [x] * (x % 3)]),
        (xforms.comp(xforms.drop(1), xforms.take(k)), lambda xs: xs[1:][:k]),
        (xforms.comp(xforms.mapcat(lambda x: [x, x, x]), xforms.take(k)),
         lambda xs: [y for x in xs for y in (x, x, x)][:k]),
        (xforms.comp(xforms.take(k), xforms.partition_all(2)),
         lambda xs: chunks(xs[:k], 2, True)),
        (xforms.comp(xforms.partition_all(2), xforms.take(k)),
         lambda xs: chunks(xs, 2, True)[:k]),
        (xforms.comp(xforms.dedupe(), xforms.partition_by(even), xforms.take(k)),
         lambda xs: [tuple(g) for _, g in itertools.groupby(
             [x for x, _ in itertools.groupby(xs)], even)][:k]),
    ]


stage_index = st.integers(min_value=0, max_value=len(_stages(0)) - 1)


class OperatorsAgreeWithPython(unittest.TestCase):

    @SETTINGS
    @given(xs=small_ints, k=st.integers(min_value=0, max_value=6), i=stage_index)
    def test_xforms_run(self, xs: List[int], k: int, i: int) -> None:
        stage, python = _stages(k)[i]
        self.assertEqual(xforms.run(stage, xs), python(xs))

    @SETTINGS
    @given(xs=small_ints, k=st.integers(min_value=0, max_value=6), i=stage_index,
           pull=st.booleans(), n=buffer_sizes)
    @example(xs=[0], k=2, i=12, pull=False, n=0)  # one step, several outputs, Reduced
    def test_transform(self, xs: List[int], k: int, i: int, pull: bool,
                       n: int) -> None:
        stage, python = _stages(k)[i]
        out = s.transform(stage, s.stream_of(xs), buffer_size=n)
        got = pull_all(self, out) if pull else push_all(self, out)
        self.assertEqual(got, python(xs))
        self.assertTrue(out.is_drained)

    @SETTINGS
    @given(xs=small_ints, pull=st.booleans())
    @example(xs=[0, 0], pull=False)  # zip ends while its last tuple is in flight
    def test_map_filter_mapcat(self, xs: List[int], pull: bool) -> None:
        collect = (lambda src: pull_all(self, src)) if pull else (
            lambda src: push_all(self, src))
        self.assertEqual(collect(s.map(lambda x: x * 10, s.stream_of(xs))),
                         [x * 10 for x in xs])
        self.assertEqual(collect(s.filter(lambda x: x > 0, s.stream_of(xs))),
                         [x for x in xs if x > 0])
        self.assertEqual(collect(s.mapcat(lambda x: [x] * (x % 4), s.stream_of(xs))),
                         [y for x in xs for y in [x] * (x % 4)])
        self.assertEqual(collect(s.map(lambda a, b: (a, b), s.stream_of(xs),
                                       s.stream_of(xs[1:]))),
                         list(zip(xs, xs[1:])))

    @SETTINGS
    @given(xs=small_ints, sizes=st.lists(buffer_sizes, min_size=1, max_size=4),
           pull=st.booleans())
    @example(xs=[0, 1], sizes=[0], pull=False)  # pending put re-entering offer
    def test_connect_chain_preserves_order(self, xs: List[int], sizes: List[int],
                                           pull: bool) -> None:
        head = s.Stream(sizes[0])
        tail = head
        for n in sizes[1:]:
            nxt = s.Stream(n)
            s.connect(tail, nxt)
            tail = nxt
        done = s.put_all(head, xs)
        head_closed = done.addCallback(lambda ok: head.close() or ok)
        got = pull_all(self, tail) if pull else push_all(self, tail)
        self.assertEqual(got, xs)
        self.assertIs(self.successResultOf(head_closed), True)
        self.assertTrue(tail.is_drained)

    @SETTINGS
    @given(xs=small_ints)
    def test_reduce_and_buffer(self, xs: List[int]) -> None:
        total = s.reduce(lambda acc, x: acc + x, 0, s.buffer(3, s.stream_of(xs)))
        self.assertEqual(self.successResultOf(total), sum(xs))


# a pipeline stage: (builder from a source stream, equivalent on a list)
def _pipeline_stage(kind: str, n: int) -> Any:
    if kind == "connect":
        def build(src: Any) -> Any:
            dst = s.Stream(n)
            s.connect(src, dst)
            return dst
        return build, lambda xs: xs
    if kind == "map":
        return (lambda src: s.map(lambda x: x * 2, src)), (lambda xs: [x * 2 for x in xs])
    if kind == "filter":
        return (lambda src: s.filter(lambda x: x % 3, src)), (
            lambda xs: [x for x in xs if x % 3])
    if kind == "mapcat":
        return (lambda src: s.mapcat(lambda x: [x, -x], src)), (
            lambda xs: [y for x in xs for y in (x, -x)])
    if kind == "buffer":
        return (lambda src: s.buffer(n, src)), (lambda xs: xs)
    # holds up to n messages inside the stage, released in chunks and on close
    regroup = xforms.comp(xforms.partition_all(n + 1), xforms.mapcat(list))
    return (lambda src: s.transform(regroup, src)), (lambda xs: xs)


pipeline_stages = st.lists(st.tuples(
    st.sampled_from(["connect", "map", "filter", "mapcat", "buffer", "partition_all"]),
    buffer_sizes), max_size=4)


class PipelineInterleavings(unittest.TestCase):

    @SETTINGS
    @given(head_size=buffer_sizes, stages=pipeline_stages,
           ops=st.lists(st.sampled_from(["put", "put", "take"]), max_size=40))
    def test_any_interleaving_loses_and_reorders_nothing(
            self, head_size: int, stages: List[Any], ops: List[str]) -> None:
        """Puts into the head and takes from the tail, in any order, then
        close: the tail yields exactly the pipeline applied to the puts."""
        head = s.Stream(head_size)
        tail, python = head, (lambda xs: xs)
        for kind, n in stages:
            build, equivalent = _pipeline_stage(kind, n)
            tail = build(tail)
            python = (lambda f, g: lambda xs: g(f(xs)))(python, equivalent)
        puts, takes, counter = [], [], itertools.count(1)
        for op in ops:
            if op == "put":
                puts.append(head.put(next(counter)))
            else:
                takes.append(tail.take(END))
        head.close()
        rest = pull_all(self, tail)
        got = [self.successResultOf(d) for d in takes]
        got = [x for x in got if x is not END] + rest
        self.assertEqual(got, python(list(range(1, len(puts) + 1))))
        self.assertEqual([self.successResultOf(d) for d in puts], [True] * len(puts))
        self.assertTrue(tail.is_drained)
        self.assertTrue(head.is_drained)

    @SETTINGS
    @given(head_size=buffer_sizes, stages=pipeline_stages,
           puts_before=st.integers(min_value=0, max_value=5))
    def test_closing_the_tail_closes_the_head(
            self, head_size: int, stages: List[Any], puts_before: int) -> None:
        head = s.Stream(head_size)
        tail = head
        for kind, n in stages:
            tail = _pipeline_stage(kind, n)[0](tail)
        for i in range(puts_before):
            head.put(i + 1)
        tail.close()
        # every stage had one consumer, so closing propagates all the way up
        self.assertTrue(head.is_closed)
        self.assertIs(self.successResultOf(head.put(0)), False)
