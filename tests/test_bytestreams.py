"""Tests for twisted_aleph.bytestreams: byte-streams' conversions."""

from __future__ import annotations

import io
import os
import tempfile
from typing import Any, List

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger, formatEvent
from twisted.trial import unittest

from twisted_aleph import bytestreams as bs
from twisted_aleph.stream import Stream, stream_of

from tests.test_codec import chunked


# one chunking helper for the codec and byte-stream tests (any sliceable works)
cut = chunked


def drain(test: unittest.TestCase, s: Any) -> List[Any]:
    """Take everything from a stream whose producer is synchronous."""
    got: List[Any] = []
    while True:
        d = s.take(StopIteration)
        value = test.successResultOf(d)
        if value is StopIteration:
            return got
        got.append(value)


class ToBytesTests(unittest.TestCase):

    def test_in_memory_values(self) -> None:
        self.assertEqual(bs.to_bytes(b"ab"), b"ab")
        self.assertEqual(bs.to_bytes(bytearray(b"ab")), b"ab")
        self.assertEqual(bs.to_bytes(memoryview(b"xaby")[1:3]), b"ab")
        self.assertEqual(bs.to_bytes("é"), b"\xc3\xa9")
        self.assertEqual(bs.to_bytes("é", encoding="latin-1"), b"\xe9")
        self.assertIsInstance(bs.to_bytes(bytearray(b"x")), bytes)

    def test_files_and_iterables(self) -> None:
        self.assertEqual(bs.to_bytes(io.BytesIO(b"abc")), b"abc")
        self.assertEqual(bs.to_bytes(io.StringIO("é")), b"\xc3\xa9")
        self.assertEqual(bs.to_bytes([b"a", "b", bytearray(b"c"), memoryview(b"d")]), b"abcd")
        self.assertEqual(bs.to_bytes(iter([b"x", b"y"])), b"xy")
        self.assertEqual(bs.to_bytes([]), b"")

    def test_real_file_is_read_whole(self) -> None:
        fd, path = tempfile.mkstemp()
        self.addCleanup(os.remove, path)
        data = os.urandom(200000)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        with open(path, "rb") as f:
            self.assertEqual(bs.to_bytes(f), data)

    def test_bad_input_is_a_type_error(self) -> None:
        for bad in (42, None, 1.5, [b"a", 3], object(), {"a": 1}):
            self.assertRaises(TypeError, bs.to_bytes, bad)

    def test_stream_gives_a_deferred(self) -> None:
        d = bs.to_bytes(stream_of([b"a", "b", bytearray(b"c")]))
        self.assertIsInstance(d, Deferred)
        self.assertEqual(self.successResultOf(d), b"abc")

    def test_stream_waits_for_its_end(self) -> None:
        s = Stream()
        d = bs.to_bytes(s)
        s.put(b"a")
        s.put(b"b")
        self.assertNoResult(d)
        s.close()
        self.assertEqual(self.successResultOf(d), b"ab")

    def test_deferred_input(self) -> None:
        self.assertEqual(self.successResultOf(bs.to_bytes(succeed("x"))), b"x")
        d = bs.to_bytes(succeed(stream_of([b"1", b"2"])))
        self.assertEqual(self.successResultOf(d), b"12")

    def test_async_iterable(self) -> None:
        async def gen() -> Any:
            yield b"p"
            yield b"q"
        self.assertEqual(self.successResultOf(bs.to_bytes(gen())), b"pq")


class ToStringTests(unittest.TestCase):

    def test_in_memory_values(self) -> None:
        self.assertEqual(bs.to_string("x"), "x")
        self.assertEqual(bs.to_string(b"h\xc3\xa9"), "hé")
        self.assertEqual(bs.to_string(b"\xe9", encoding="latin-1"), "é")
        self.assertEqual(bs.to_string(memoryview(b"ok")), "ok")
        self.assertEqual(bs.to_string(io.BytesIO(b"file")), "file")
        self.assertEqual(bs.to_string(["a", b"b"]), "ab")

    def test_character_cut_between_chunks_is_whole(self) -> None:
        self.assertEqual(bs.to_string([b"h\xc3", b"\xa9"]), "hé")
        d = bs.to_string(stream_of([b"\xe2\x82", b"\xac!"]))
        self.assertEqual(self.successResultOf(d), "\u20ac!")

    def test_bad_bytes(self) -> None:
        self.assertRaises(UnicodeDecodeError, bs.to_string, b"\xff")
        self.failureResultOf(bs.to_string(stream_of([b"\xff"])), UnicodeDecodeError)

    def test_failed_deferred_stays_failed(self) -> None:
        self.failureResultOf(bs.to_string(fail(ValueError("no body"))), ValueError)


class LineSeqTests(unittest.TestCase):

    def test_in_memory(self) -> None:
        self.assertEqual(bs.to_line_seq("a\nb\r\n\nc"), ["a", "b", "", "c"])
        self.assertEqual(bs.to_line_seq(b"a\n"), ["a"])
        self.assertEqual(bs.to_line_seq(""), [])
        self.assertEqual(bs.to_line_seq("\n"), [""])
        self.assertEqual(bs.to_line_seq("a\rb\n"), ["a\rb"])   # lone CR is text
        self.assertEqual(bs.to_line_seq(b"x\r\n"), ["x"])
        self.assertEqual(bs.to_line_seq(b"x\r"), ["x"])

    def test_file_is_read_lazily(self) -> None:
        f = io.BytesIO(b"one\ntwo\nthree")
        lines = bs.to_line_seq(f)
        self.assertEqual(f.tell(), 0)
        self.assertEqual(next(lines), "one")
        self.assertEqual(list(lines), ["two", "three"])
        self.assertEqual(list(bs.to_line_seq(io.StringIO("s\nt\n"))), ["s", "t"])

    def test_crlf_split_between_chunks(self) -> None:
        self.assertEqual(list(bs.to_line_seq([b"a\r", b"\nb\r", b"\n"])), ["a", "b"])
        self.assertEqual(list(bs.to_line_seq(["é\n", b"\xc3", b"\xa9"])), ["é", "é"])

    @settings(max_examples=300, deadline=None)
    @given(text=st.text(alphabet=st.sampled_from("ab é\u20ac\n")),
           cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=20),
           as_bytes=st.booleans())
    def test_any_chunking_matches_splitlines(self, text: str, cuts: List[int],
                                             as_bytes: bool) -> None:
        data: Any = text.encode("utf-8") if as_bytes else text
        expected = text.splitlines()
        self.assertEqual(list(bs.to_line_seq(cut(data, cuts))), expected)
        self.assertEqual(bs.to_line_seq(data), expected)
        # CRLF everywhere gives the same lines
        crlf = text.replace("\n", "\r\n").encode("utf-8")
        self.assertEqual(list(bs.to_line_seq(cut(crlf, cuts))), expected)
        # and a Stream of the same chunks gives a Stream of the same lines
        lines = bs.to_line_seq(stream_of(cut(data, cuts)))
        self.assertIsInstance(lines, Stream)
        self.assertEqual(drain(self, lines), expected)

    def test_stream_of_chunks_with_backpressure(self) -> None:
        chunks = Stream()
        lines = bs.to_line_seq(chunks)
        chunks.put(b"one\ntw")
        pending = chunks.put(b"o\nthree\n")
        self.assertNoResult(pending)           # "one" is not taken yet
        self.assertEqual(self.successResultOf(lines.take()), "one")
        self.assertEqual(self.successResultOf(lines.take()), "two")
        self.assertEqual(self.successResultOf(lines.take()), "three")
        self.assertTrue(self.successResultOf(pending))
        d = lines.take("END")
        self.assertNoResult(d)
        chunks.put(b"last")
        chunks.close()
        self.assertEqual(self.successResultOf(d), "last")
        self.assertEqual(self.successResultOf(lines.take("END")), "END")

    def test_deferred_input(self) -> None:
        self.assertEqual(self.successResultOf(bs.to_line_seq(succeed(b"a\nb"))), ["a", "b"])

    def test_line_splitter_holds_only_the_unfinished_line(self) -> None:
        splitter = bs.LineSplitter()
        self.assertEqual(splitter.feed(b"ab"), [])
        self.assertEqual(splitter.feed("c\nd"), ["abc"])
        self.assertEqual(splitter.finish(), ["d"])
        self.assertEqual(splitter.finish(), [])
        self.assertRaises(TypeError, splitter.feed, 5)


class MaxLineLengthTests(unittest.TestCase):
    """A line that never ends cannot make ``to_line_seq`` hold unbounded memory."""

    def capture_log(self) -> List[Any]:
        events: List[Any] = []
        self.patch(bs, "log", Logger(observer=events.append))
        return events

    def test_stream_line_past_limit_closes_output_and_source(self) -> None:
        events = self.capture_log()
        chunks = Stream()
        lines = bs.to_line_seq(chunks, max_line_length=8)
        self.assertTrue(self.successResultOf(chunks.put(b"ok\nxxxxx")))
        accepted = chunks.put(b"xxxxxxxxxx")       # the unfinished line is now 15
        self.assertEqual(self.successResultOf(lines.take()), "ok")
        self.assertEqual(self.successResultOf(lines.take("END")), "END")
        self.assertTrue(lines.is_closed)
        self.assertTrue(chunks.is_closed)          # the connection is dropped
        self.assertFalse(self.successResultOf(chunks.put(b"more\n")))
        self.successResultOf(accepted)             # the producer never sees an error
        self.assertEqual(len(events), 1)
        self.assertIsInstance(events[0]["error"], bs.LineTooLong)
        self.assertIn("longer than 8 characters", formatEvent(events[0]))

    def test_stream_default_limit_is_one_mib(self) -> None:
        self.assertEqual(bs.DEFAULT_MAX_LINE_LENGTH, 1024 * 1024)
        events = self.capture_log()
        chunks = Stream()
        lines = bs.to_line_seq(chunks)
        taken = lines.take("END")
        chunk = b"y" * 65536
        sent = 0
        while not chunks.is_closed and sent < 40:  # a peer that never sends a newline
            chunks.put(chunk)
            sent += 1
        self.assertEqual(sent, 17)                 # 17 * 64 KiB > 1 MiB: closed there
        self.assertEqual(self.successResultOf(taken), "END")
        self.assertEqual(len(events), 1)

    def test_lines_before_the_long_one_in_the_same_chunk_are_delivered(self) -> None:
        self.capture_log()
        lines = bs.to_line_seq(stream_of([b"a\nbb\n" + b"c" * 9 + b"\nd\n"]),
                               max_line_length=8)
        self.assertEqual(drain(self, lines), ["a", "bb"])

    def test_limit_counts_the_line_without_its_terminator(self) -> None:
        self.assertEqual(list(bs.to_line_seq([b"abcde\r", b"\nabcde"], max_line_length=5)),
                         ["abcde", "abcde"])
        self.assertEqual(list(bs.to_line_seq(["ab", "cde\r", "\n"], max_line_length=5)),
                         ["abcde"])
        self.assertRaises(bs.LineTooLong, list, bs.to_line_seq([b"abcdef"], max_line_length=5))
        self.assertRaises(bs.LineTooLong, list, bs.to_line_seq([b"abcde\rx"], max_line_length=5))
        self.assertEqual(list(bs.to_line_seq([b"x" * 100], max_line_length=None)), ["x" * 100])

    def test_iterator_raises_after_the_lines_before(self) -> None:
        def endless_without_newline() -> Any:   # bounded only so a bug cannot hang
            yield b"first\n"
            for _ in range(20000):
                yield b"z" * 1000
        it = bs.to_line_seq(endless_without_newline(), max_line_length=64 * 1024)
        self.assertEqual(next(it), "first")
        with self.assertRaises(bs.LineTooLong) as caught:
            next(it)
        self.assertIsInstance(caught.exception, ValueError)
        self.assertIn("65536", str(caught.exception))

    def test_file_and_deferred_inputs(self) -> None:
        self.assertRaises(bs.LineTooLong, list,
                          bs.to_line_seq(io.BytesIO(b"q" * 20), max_line_length=10))
        d = bs.to_line_seq(succeed(io.BytesIO(b"a\n" + b"q" * 20)), max_line_length=10)
        self.failureResultOf(d, bs.LineTooLong)

    def test_in_memory_input_is_split_whole(self) -> None:
        self.assertEqual(bs.to_line_seq(b"x" * 100, max_line_length=10), ["x" * 100])

    @settings(max_examples=300, deadline=None)
    @given(text=st.text(alphabet=st.sampled_from("ab\u20ac\n")),
           cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=12),
           limit=st.integers(min_value=0, max_value=8), crlf=st.booleans())
    def test_any_chunking_gives_the_lines_before_the_first_long_one(
            self, text: str, cuts: List[int], limit: int, crlf: bool) -> None:
        self.capture_log()
        expected = text.splitlines()
        long_at = next((i for i, line in enumerate(expected) if len(line) > limit), None)
        data = (text.replace("\n", "\r\n") if crlf else text).encode("utf-8")
        got: List[str] = []
        it = bs.to_line_seq(cut(data, cuts), max_line_length=limit)
        if long_at is None:
            got.extend(it)
            self.assertEqual(got, expected)
        else:
            with self.assertRaises(bs.LineTooLong):
                for line in it:
                    got.append(line)
            self.assertEqual(got, expected[:long_at])
        chunks = Stream()
        lines = bs.to_line_seq(chunks, max_line_length=limit)
        for piece in cut(data, cuts):
            chunks.put(piece)
        chunks.close()
        self.assertEqual(drain(self, lines), expected if long_at is None else expected[:long_at])


class ToByteStreamTests(unittest.TestCase):

    def test_bytes_are_cut_into_chunks(self) -> None:
        s = bs.to_byte_stream(b"abcdefg", chunk_size=3)
        self.assertEqual(drain(self, s), [b"abc", b"def", b"g"])
        self.assertEqual(drain(self, bs.to_byte_stream("é", chunk_size=10)), [b"\xc3\xa9"])
        self.assertEqual(drain(self, bs.to_byte_stream(b"")), [])
        self.assertRaises(ValueError, bs.to_byte_stream, b"x", chunk_size=0)

    def test_file_is_read_in_chunks_as_consumed(self) -> None:
        f = io.BytesIO(b"0123456789")
        s = bs.to_byte_stream(f, chunk_size=4)
        self.assertLessEqual(f.tell(), 4)      # only what the stream holds
        self.assertEqual(drain(self, s), [b"0123", b"4567", b"89"])
        text = bs.to_byte_stream(io.StringIO("ab"), chunk_size=1)
        self.assertEqual(drain(self, text), [b"a", b"b"])

    def test_iterables_keep_their_chunks(self) -> None:
        s = bs.to_byte_stream(["ab", b"c", memoryview(b"de")])
        self.assertEqual(drain(self, s), [b"ab", b"c", b"de"])

    def test_stream_chunks_become_bytes(self) -> None:
        s = bs.to_byte_stream(stream_of(["x", bytearray(b"y")]))
        got = drain(self, s)
        self.assertEqual(got, [b"x", b"y"])
        self.assertTrue(all(type(c) is bytes for c in got))

    def test_deferred_input(self) -> None:
        d: Deferred = Deferred()
        s = bs.to_byte_stream(d, chunk_size=2)
        t = s.take("END")
        self.assertNoResult(t)
        d.callback(b"abc")
        self.assertEqual(self.successResultOf(t), b"ab")
        self.assertEqual(drain(self, s), [b"c"])

    def test_failed_deferred_closes_the_stream(self) -> None:
        s = bs.to_byte_stream(fail(ValueError("gone")))
        self.assertEqual(drain(self, s), [])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_round_trip_through_to_bytes(self) -> None:
        data = os.urandom(10000)
        d = bs.to_bytes(bs.to_byte_stream(data, chunk_size=999))
        self.assertEqual(self.successResultOf(d), data)
