"""Tests for twisted_aleph.codec (frames, the incremental Decoder) and the stream side of
framing, twisted_aleph.stream.decode_stream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from typing import Any, List

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from twisted_aleph import codec as c
from twisted_aleph.stream import Stream, decode_stream, stream_of

PREFIXES = ["uint8", "uint16", "uint32", "uint64"]
UTF8 = c.string("utf-8")


def frame(prefix: str = "uint32", pre: Any = None, post: Any = None) -> c.CompiledFrame:
    return c.compile_frame(c.finite_frame(prefix, UTF8), pre, post)


def chunked(data: Any, cuts: List[int]) -> List[Any]:
    """Split ``data`` at the (sorted, deduplicated) cut points."""
    points = sorted({min(max(x, 0), len(data)) for x in cuts})
    out, last = [], 0
    for p in points + [len(data)]:
        out.append(data[last:p])
        last = p
    return out


def peak_bytes_allocated(fn: Any) -> Any:
    """(fn's result or raised error, peak bytes allocated while it ran);
    the peak is None where tracemalloc is missing (PyPy)."""
    try:
        import tracemalloc
    except ImportError:
        tracemalloc = None  # type: ignore[assignment]
    if tracemalloc is not None:
        tracemalloc.start()
    try:
        try:
            result: Any = fn()
        except Exception as e:
            result = e
        peak = tracemalloc.get_traced_memory()[1] if tracemalloc is not None else None
    finally:
        if tracemalloc is not None:
            tracemalloc.stop()
    return result, peak


def feed_all(decoder: c.Decoder, chunks: List[bytes]) -> List[Any]:
    values: List[Any] = []
    for chunk in chunks:
        values.extend(decoder.feed(chunk))
    return values


class EncodeTests(unittest.TestCase):

    def test_wire_format_is_gloss_finite_frame(self) -> None:
        """uint32 big-endian length of the UTF-8 bytes, then the bytes."""
        self.assertEqual(c.encode(frame(), "hé"), b"\x00\x00\x00\x03h\xc3\xa9")
        self.assertEqual(c.encode(frame("uint8"), "ab"), b"\x02ab")
        self.assertEqual(c.encode(frame("uint16"), ""), b"\x00\x00")
        self.assertEqual(c.encode(frame("uint64"), "x"), b"\x00" * 7 + b"\x01x")

    def test_prefix_spellings(self) -> None:
        self.assertEqual(c.encode(frame(":uint32"), "a"), b"\x00\x00\x00\x01a")
        self.assertEqual(c.encode(frame("uint32-le"), "a"), b"\x01\x00\x00\x00a")
        self.assertEqual(c.encode(frame("int16"), "a"), b"\x00\x01a")
        self.assertEqual(c.string(":utf-8").encoding, "utf-8")

    def test_unknown_prefix_and_encoding(self) -> None:
        self.assertRaises(ValueError, c.finite_frame, "uint24", UTF8)
        self.assertRaises(ValueError, c.string, "no-such-encoding")
        self.assertRaises(TypeError, c.finite_frame, "uint32", "utf-8")
        self.assertRaises(TypeError, c.compile_frame, 42)

    def test_each_prefix_max_on_encode(self) -> None:
        self.assertEqual(frame("uint8").max_body, 255)
        self.assertEqual(frame("uint16").max_body, 65535)
        self.assertEqual(frame("uint32").max_body, 2 ** 32 - 1)
        self.assertEqual(frame("uint64").max_body, 2 ** 64 - 1)
        self.assertEqual(frame("int8").max_body, 127)
        for prefix, limit in (("uint8", 255), ("uint16", 65535), ("int8", 127)):
            codec = frame(prefix)
            self.assertEqual(c.decode(codec, c.encode(codec, "a" * limit)), "a" * limit)
            e = self.assertRaises(c.FrameTooLong, c.encode, codec, "a" * (limit + 1))
            self.assertEqual((e.length, e.max_length), (limit + 1, limit))

    def test_pre_encoder_and_type_errors(self) -> None:
        codec = frame(pre=json.dumps, post=json.loads)
        self.assertEqual(c.encode(codec, [1]), b"\x00\x00\x00\x03[1]")
        e = self.assertRaises(c.EncodeError, c.encode, frame(), 42)
        self.assertIsInstance(e.cause, TypeError)
        self.assertIsInstance(e, c.CodecError)
        self.assertIsInstance(e, ValueError)
        e = self.assertRaises(c.EncodeError, c.encode, codec, object())
        self.assertIsInstance(e.cause, TypeError)
        latin = c.compile_frame(c.finite_frame("uint8", c.string("latin-1")))
        self.assertRaises(c.EncodeError, c.encode, latin, "\u20ac")
        self.assertEqual(c.encode(latin, "\xe9"), b"\x01\xe9")

    def test_compile_frame_composes(self) -> None:
        inner = frame(pre=json.dumps, post=json.loads)
        outer = c.compile_frame(inner, lambda v: {"v": v}, lambda m: m["v"])
        data = c.encode(outer, 5)
        self.assertEqual(data, c.encode(inner, {"v": 5}))
        self.assertEqual(c.decode(outer, data), 5)
        self.assertIs(c.compile_frame(inner).frame, inner.frame)

    def test_unframed_string(self) -> None:
        codec = c.compile_frame(UTF8)
        self.assertEqual(c.encode(codec, "é"), b"\xc3\xa9")
        self.assertEqual(c.decode(codec, b"\xc3\xa9"), "é")
        self.assertRaises(TypeError, c.Decoder, codec)

    def test_each_codec_error_has_its_own_values(self) -> None:
        first = c.CodecError("one")
        first.values.append("decoded before the error")
        self.assertEqual(c.CodecError("two").values, [])  # not a shared class list

    def test_decode_needs_exactly_one_frame(self) -> None:
        codec = frame()
        one = c.encode(codec, "a")
        self.assertEqual(c.decode(codec, one), "a")
        self.assertRaises(c.CodecError, c.decode, codec, one + one)
        self.assertRaises(c.CodecError, c.decode, codec, one[:-1])
        self.assertRaises(c.CodecError, c.decode, codec, b"")
        self.assertRaises(c.CodecError, c.decode_all, codec, one + b"\x00")
        self.assertEqual(c.decode_all(codec, one + one), ["a", "a"])
        self.assertEqual(c.decode_all(codec, b""), [])

    def test_edn_protocol_of_the_seed(self) -> None:
        try:
            from twisted_aleph import edn
        except ImportError:
            raise unittest.SkipTest("twisted_aleph.edn is not there yet")
        if not hasattr(edn, "loads"):
            raise unittest.SkipTest("twisted_aleph.edn has no loads yet")
        protocol = c.compile_frame(c.finite_frame("uint32", c.string("utf-8")),
                                   edn.dumps, edn.loads)
        data = c.encode(protocol, 1)
        self.assertEqual(data, b"\x00\x00\x00\x011")
        self.assertEqual(c.Decoder(protocol).feed(data + c.encode(protocol, "hi")), [1, "hi"])
        e = self.assertRaises(c.DecodeError, c.decode, protocol, b"\x00\x00\x00\x01]")
        self.assertIsInstance(e.cause, edn.EDNError)

    def test_module_does_not_import_the_reactor(self) -> None:
        code = ("import sys, twisted_aleph.codec as c; "
                "c.Decoder(c.compile_frame(c.finite_frame('uint8', c.string()))); "
                "print('twisted.internet.reactor' in sys.modules)")
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                             text=True, check=True, cwd=root)
        self.assertEqual(out.stdout.strip(), "False")


class DecoderTests(unittest.TestCase):

    @settings(max_examples=200, deadline=None)
    @given(prefix=st.sampled_from(PREFIXES),
           values=st.lists(st.text(max_size=40), max_size=12),
           cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=30))
    def test_any_chunking_yields_exactly_the_values(self, prefix: str, values: List[str],
                                                    cuts: List[int]) -> None:
        codec = frame(prefix)
        data = b"".join(c.encode(codec, v) for v in values)
        self.assertEqual(feed_all(c.Decoder(codec), chunked(data, cuts)), values)
        # everything coalesced, and one byte at a time
        self.assertEqual(c.Decoder(codec).feed(data), values)
        decoder = c.Decoder(codec)
        self.assertEqual(feed_all(decoder, [data[i:i + 1] for i in range(len(data))]),
                         values)
        self.assertEqual(decoder.buffered, 0)

    @settings(max_examples=100, deadline=None)
    @given(values=st.lists(st.dictionaries(st.text(max_size=5), st.integers()), max_size=8),
           cuts=st.lists(st.integers(min_value=0, max_value=500), max_size=20),
           kind=st.sampled_from([bytes, bytearray, memoryview]))
    def test_json_values_and_bytes_like_chunks(self, values: List[Any], cuts: List[int],
                                               kind: Any) -> None:
        codec = frame(pre=json.dumps, post=json.loads)
        data = b"".join(c.encode(codec, v) for v in values)
        chunks = [kind(x) for x in chunked(data, cuts)]
        self.assertEqual(feed_all(c.Decoder(codec), chunks), values)

    @settings(max_examples=150, deadline=None)
    @given(items=st.lists(st.one_of(st.text(max_size=10), st.just(None)), max_size=12),
           cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=20))
    def test_bad_frames_are_skipped_exactly_under_any_chunking(
            self, items: List[Any], cuts: List[int]) -> None:
        """None stands for a frame of bad UTF-8: it comes out as one DecodeError."""
        codec = frame("uint16")
        bad = b"\x00\x01\xff"
        data = b"".join(bad if v is None else c.encode(codec, v) for v in items)
        decoder = c.Decoder(codec)
        got: List[Any] = []
        for chunk in chunked(data, cuts):
            while True:
                try:
                    got.extend(decoder.feed(chunk))
                    break
                except c.DecodeError as e:
                    got.extend(e.values)
                    got.append(None)
                    chunk = b""
        self.assertEqual(got, items)
        self.assertEqual(decoder.buffered, 0)

    def test_each_prefix_with_its_max_length(self) -> None:
        for prefix, size in (("uint8", 1), ("uint16", 2), ("uint32", 4), ("uint64", 8)):
            codec = frame(prefix)
            decoder = c.Decoder(codec, max_length=10)
            self.assertEqual(decoder.feed(c.encode(codec, "a" * 10)), ["a" * 10])
            e = self.assertRaises(c.FrameTooLong, decoder.feed, c.encode(codec, "a" * 11))
            self.assertEqual((e.length, e.max_length), (11, 10))
            # the decoder's own ceiling is the prefix's
            self.assertEqual(c.Decoder(codec, max_length=None).max_length,
                             2 ** (8 * size) - 1)
        self.assertEqual(c.Decoder(frame("uint8")).max_length, 255)
        self.assertEqual(c.Decoder(frame()).max_length, c.DEFAULT_MAX_LENGTH)

    def test_oversized_prefix_fails_at_once_without_allocating(self) -> None:
        codec = frame()
        good = c.encode(codec, "ok")
        decoder = c.Decoder(codec)
        e, peak = peak_bytes_allocated(
            lambda: decoder.feed(good + b"\xff\xff\xff\xff" + b"x" * 10))
        self.assertIsInstance(e, c.FrameTooLong)
        if peak is not None:
            self.assertLess(peak, 64 * 1024)
        self.assertEqual(e.length, 0xFFFFFFFF)
        self.assertEqual(e.max_length, c.DEFAULT_MAX_LENGTH)
        self.assertEqual(e.values, ["ok"])          # nothing decoded is lost
        self.assertEqual(decoder.buffered, 0)
        # framing is lost: the decoder stays failed (and repeats no values)
        again = self.assertRaises(c.FrameTooLong, decoder.feed, good)
        self.assertEqual(again.values, [])
        self.assertEqual(again.length, 0xFFFFFFFF)
        self.assertRaises(TypeError, c.Decoder(codec).feed, "text")

    def test_prefix_is_checked_when_its_last_byte_arrives(self) -> None:
        decoder = c.Decoder(frame(), max_length=100)
        self.assertEqual(decoder.feed(b"\xff"), [])
        self.assertEqual(decoder.feed(b"\xff\xff"), [])
        self.assertRaises(c.FrameTooLong, decoder.feed, b"\xff")
        self.assertEqual(decoder.buffered, 0)

    def test_a_large_allowed_frame_is_not_preallocated(self) -> None:
        """A 4 GiB prefix within max_length buffers only the bytes fed so far."""
        decoder = c.Decoder(frame(), max_length=None)
        values, peak = peak_bytes_allocated(
            lambda: decoder.feed(b"\xff\xff\xff\xff" + b"x" * 1000))
        self.assertEqual(values, [])
        if peak is not None:
            self.assertLess(peak, 64 * 1024)
        self.assertEqual(decoder.buffered, 1004)

    def test_negative_signed_prefix_is_an_error(self) -> None:
        decoder = c.Decoder(frame("int32"))
        e = self.assertRaises(c.FrameTooLong, decoder.feed, b"\xff\xff\xff\xfe")
        self.assertIn("negative", str(e))

    def test_bad_utf8_is_a_decode_error_and_decoding_continues(self) -> None:
        codec = frame()
        bad = b"\x00\x00\x00\x02\xc3\x28"
        data = c.encode(codec, "a") + bad + c.encode(codec, "b") + c.encode(codec, "c")[:3]
        decoder = c.Decoder(codec)
        e = self.assertRaises(c.DecodeError, decoder.feed, data)
        self.assertIsInstance(e.cause, UnicodeDecodeError)
        self.assertIs(e.__cause__, e.cause)
        self.assertEqual(e.values, ["a"])
        self.assertEqual(e.frame, b"\xc3\x28")
        self.assertEqual(decoder.feed(b""), ["b"])
        self.assertEqual(decoder.feed(c.encode(codec, "c")[3:]), ["c"])
        self.assertEqual(decoder.buffered, 0)

    def test_decode_error_in_buffered_path(self) -> None:
        """The same recovery when the bad frame was assembled from pieces."""
        codec = frame("uint8")
        decoder = c.Decoder(codec)
        self.assertEqual(decoder.feed(b"\x02\xff"), [])
        e = self.assertRaises(c.DecodeError, decoder.feed, b"\xfe\x01z\x01")
        self.assertEqual(e.values, [])
        self.assertEqual(decoder.feed(b""), ["z"])
        self.assertEqual(decoder.feed(b"y"), ["y"])

    def test_post_decoder_error_is_a_decode_error(self) -> None:
        codec = frame(post=json.loads)
        decoder = c.Decoder(codec)
        e = self.assertRaises(c.DecodeError, decoder.feed, c.encode(codec, "{"))
        self.assertIsInstance(e.cause, ValueError)
        self.assertEqual(decoder.feed(c.encode(codec, "[1]")), [[1]])

    def test_many_small_feeds_of_one_large_frame(self) -> None:
        codec = frame()
        text = "z" * 50000
        data = c.encode(codec, text) + c.encode(codec, "tail")
        decoder = c.Decoder(codec)
        got = feed_all(decoder, [data[i:i + 7] for i in range(0, len(data), 7)])
        self.assertEqual(got, [text, "tail"])


class FeedIntoTests(unittest.TestCase):
    """Decoder.feed_into: each value handed over as it is decoded, stopping on a hold."""

    HOLD = object()

    def test_values_in_order_and_none_when_done(self) -> None:
        codec = frame()
        got: List[Any] = []
        decoder = c.Decoder(codec)
        data = b"".join(c.encode(codec, v) for v in "abc")
        self.assertIsNone(decoder.feed_into(data[:-1], got.append))
        self.assertEqual(got, ["a", "b"])
        self.assertIsNone(decoder.feed_into(data[-1:], lambda v: got.append(v) or True))
        self.assertEqual(got, ["a", "b", "c"])
        self.assertEqual(decoder.buffered, 0)

    @settings(max_examples=100, deadline=None)
    @given(values=st.lists(st.text(max_size=8), max_size=12),
           cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12),
           holds=st.sets(st.integers(min_value=0, max_value=11)))
    def test_a_hold_stops_after_that_frame_under_any_chunking(
            self, values: List[str], cuts: List[int], holds: Any) -> None:
        """Frame i answered with a hold: nothing after it is decoded until fed again."""
        codec = frame("uint16")
        data = b"".join(c.encode(codec, v) for v in values)
        decoder = c.Decoder(codec)
        got: List[Any] = []

        def emit(value: Any) -> Any:
            got.append(value)
            return self.HOLD if len(got) - 1 in holds else True

        for chunk in chunked(data, cuts):
            before = len(got)
            r = decoder.feed_into(chunk, emit)
            while r is not None:
                self.assertIs(r, self.HOLD)
                self.assertIn(len(got) - 1, holds)
                before = len(got)
                r = decoder.feed_into(b"", emit)
            self.assertGreaterEqual(len(got), before)
        self.assertEqual(got, values)
        self.assertEqual(decoder.buffered, 0)

    def test_bytes_held_while_behind_are_decoded_on_the_next_feed(self) -> None:
        codec = frame()
        decoder = c.Decoder(codec)
        got: List[Any] = []
        decoder.hold(c.encode(codec, "x")[:3])
        decoder.hold(bytearray(c.encode(codec, "x")[3:] + c.encode(codec, "y")))
        self.assertEqual(got, [])              # held, not parsed
        self.assertEqual(decoder.buffered, 10)
        self.assertIsNone(decoder.feed_into(b"", got.append))
        self.assertEqual(got, ["x", "y"])

    def test_errors_after_the_values_before_them(self) -> None:
        codec = frame("uint8")
        decoder = c.Decoder(codec, max_length=3)
        got: List[Any] = []
        e = self.assertRaises(c.DecodeError, decoder.feed_into,
                              b"\x01a\x01\xff\x01b\x09", got.append)
        self.assertEqual((got, e.frame), (["a"], b"\xff"))
        # the rest of that chunk: "b", then a prefix over the maximum
        e2 = self.assertRaises(c.FrameTooLong, decoder.feed_into, b"", got.append)
        self.assertEqual((got, e2.length), (["a", "b"], 9))
        self.assertRaises(c.FrameTooLong, decoder.feed_into, b"\x01c", got.append)
        self.assertEqual(got, ["a", "b"])
        decoder.hold(b"more")                   # a failed decoder keeps nothing
        self.assertEqual(decoder.buffered, 0)

    def test_stopping_after_each_frame_copies_nothing(self) -> None:
        """A hold or a bad frame keeps the chunk and an offset, not a copy of the rest:
        otherwise a consumer holding after every frame costs O(frames x bytes)."""
        codec = frame("uint8")
        n = 2000
        data = b"".join(b"\x01\xff" if i % 2 else c.encode(codec, "v") for i in range(n))
        decoder = c.Decoder(codec)
        got: List[Any] = []
        r: Any = decoder.feed_into(data, lambda v: got.append(v) or self.HOLD)
        while decoder.buffered:
            self.assertIs(decoder._chunks[0], data)      # the same object: no copy
            try:
                r = decoder.feed_into(b"", lambda v: got.append(v) or self.HOLD)
            except c.DecodeError:
                got.append(None)
                continue
            if r is None:
                break
        self.assertEqual(got, ["v", None] * (n // 2))
        self.assertEqual(decoder.buffered, 0)

    def test_an_error_in_emit_counts_its_frame_as_consumed(self) -> None:
        codec = frame()
        decoder = c.Decoder(codec)
        data = b"".join(c.encode(codec, v) for v in "abc")

        def emit(value: Any) -> None:
            if value == "b":
                raise ZeroDivisionError()
        self.assertRaises(ZeroDivisionError, decoder.feed_into, data, emit)
        self.assertEqual(decoder.feed(b""), ["c"])

    def test_bodies_are_bytes_whatever_the_input(self) -> None:
        block = c.compile_frame(c.finite_block("uint32"))
        data = c.encode(block, b"ab") + c.encode(block, bytearray(b"cd"))
        for kind in (bytes, bytearray, memoryview):
            decoder = c.Decoder(block)
            got = decoder.feed(kind(data[:5])) + decoder.feed(kind(data[5:]))
            self.assertEqual(got, [b"ab", b"cd"])
            self.assertEqual({type(v) for v in got}, {bytes})

    def test_finite_block_with_a_payload_codec(self) -> None:
        """The framed TCP protocol's frame: uint32 + raw payload, EDN through pre/post."""
        from twisted_aleph import edn
        block = c.compile_frame(c.finite_block(":uint32"), lambda v: edn.dumps(v).encode(),
                                lambda b: edn.loads(b.decode()))
        text = c.compile_frame(c.finite_frame("uint32", UTF8), edn.dumps, edn.loads)
        for value in [1, "é", [1, None]]:
            self.assertEqual(c.encode(block, value), c.encode(text, value))
            self.assertEqual(c.decode(block, c.encode(text, value)), value)
        self.assertRaises(c.EncodeError, c.encode, c.finite_block("uint8"), "text")
        self.assertRaises(c.EncodeError, c.encode, c.finite_block("uint8"), 5)
        self.assertEqual(c.decode(c.finite_block("uint8"), b"\x02hi"), b"hi")


class DecodeStreamAliasTests(unittest.TestCase):

    def test_codec_decode_stream_is_a_deprecated_alias(self) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            alias = c.decode_stream
        self.assertIs(alias, decode_stream)
        self.assertEqual([w.category for w in caught], [DeprecationWarning])
        self.assertIn("twisted_aleph.stream.decode_stream", str(caught[0].message))
        self.assertEqual(caught[0].filename, __file__.replace(".pyc", ".py"))

    def test_other_missing_names_are_still_attribute_errors(self) -> None:
        self.assertRaises(AttributeError, getattr, c, "no_such_name")
        self.assertNotIn("decode_stream", c.__all__)


class DecodeStreamTests(unittest.TestCase):

    def setUp(self) -> None:
        self.codec = frame(pre=json.dumps, post=json.loads)

    def take_all(self, s: Any) -> List[Any]:
        got: List[Any] = []
        while True:
            d = s.take("END")
            self.assertTrue(d.called, "take did not fire synchronously")
            value = self.successResultOf(d)
            if value == "END":
                return got
            got.append(value)

    def test_values_from_a_list_of_chunks(self) -> None:
        data = b"".join(c.encode(self.codec, v) for v in [1, [2], {"a": 3}])
        out = decode_stream(chunked(data, [1, 5, 6, 17]), self.codec)
        self.assertEqual(self.take_all(out), [1, [2], {"a": 3}])
        self.assertTrue(out.is_drained)

    @settings(max_examples=100, deadline=None)
    @given(values=st.lists(st.integers(), max_size=10),
           cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=15),
           buffer_size=st.integers(min_value=0, max_value=3))
    def test_any_chunking_through_a_stream(self, values: List[int], cuts: List[int],
                                           buffer_size: int) -> None:
        data = b"".join(c.encode(self.codec, v) for v in values)
        source = Stream(buffer_size)
        out = decode_stream(source, self.codec)
        puts = [source.put(chunk) for chunk in chunked(data, cuts)]
        source.close()
        self.assertEqual(self.take_all(out), values)
        self.assertTrue(all(self.successResultOf(d) for d in puts))

    def test_backpressure_a_slow_consumer_leaves_puts_pending(self) -> None:
        """While decoded values wait downstream, the next chunk is not taken."""
        source = Stream()
        out = decode_stream(source, self.codec)
        three = b"".join(c.encode(self.codec, v) for v in [1, 2, 3])
        source.put(three)                       # taken: its values now wait in `out`
        second = source.put(c.encode(self.codec, 4))
        self.assertNoResult(second)
        self.assertEqual(self.successResultOf(out.take()), 1)
        self.assertEqual(self.successResultOf(out.take()), 2)
        self.assertNoResult(second)             # value 3 is still waiting downstream
        self.assertEqual(self.successResultOf(out.take()), 3)
        third = source.put(c.encode(self.codec, 5))
        self.assertNoResult(third)              # value 4 waits: the source is held
        self.assertEqual(self.successResultOf(out.take()), 4)
        self.assertTrue(self.successResultOf(second))
        self.assertEqual(self.successResultOf(out.take()), 5)
        self.assertTrue(self.successResultOf(third))
        source.close()
        self.assertEqual(self.successResultOf(out.take("END")), "END")

    def test_decode_error_closes_output_and_source_after_earlier_values(self) -> None:
        source = Stream(4)
        out = decode_stream(source, self.codec)
        later = c.encode(self.codec, "never")
        r = source.put(c.encode(self.codec, 1) + c.encode(self.codec, 2)
                       + b"\x00\x00\x00\x01{" + later)
        self.assertTrue(source.is_closed)
        self.assertEqual(self.take_all(out), [1, 2])
        self.assertTrue(out.is_drained)
        self.assertTrue(self.successResultOf(r))
        self.assertFalse(self.successResultOf(source.put(later)))

    def test_decode_errors_can_be_delivered_as_messages(self) -> None:
        source = Stream(4)
        out = decode_stream(source, self.codec, deliver_decode_errors=True)
        bad = b"\x00\x00\x00\x01{"
        source.put(c.encode(self.codec, 1) + bad + c.encode(self.codec, 2) + bad)
        source.put(c.encode(self.codec, 3))
        source.close()
        got = self.take_all(out)
        self.assertEqual(len(got), 5)
        self.assertEqual([got[0], got[2], got[4]], [1, 2, 3])
        for error in (got[1], got[3]):
            self.assertIsInstance(error, c.DecodeError)
            self.assertEqual(error.frame, b"{")
        self.assertTrue(out.is_drained)

    def test_frame_too_long_still_closes_when_delivering_errors(self) -> None:
        source = Stream(4)
        out = decode_stream(source, self.codec, max_length=4,
                              deliver_decode_errors=True)
        source.put(b"\x00\x00\x00\x01{" + c.encode(self.codec, 1)
                   + c.encode(self.codec, "too long"))
        self.assertTrue(source.is_closed)
        got = self.take_all(out)
        self.assertIsInstance(got[0], c.DecodeError)
        self.assertEqual(got[1:], [1])
        self.assertTrue(out.is_drained)

    def test_frame_too_long_closes_only_that_stream(self) -> None:
        bad_source, good_source = Stream(), Stream()
        bad = decode_stream(bad_source, self.codec, max_length=8)
        good = decode_stream(good_source, self.codec, max_length=8)
        bad_source.put(c.encode(self.codec, "x" * 20))
        good_source.put(c.encode(self.codec, 7))
        self.assertTrue(bad_source.is_closed)
        self.assertTrue(bad.is_closed)
        self.assertEqual(self.successResultOf(bad.take("END")), "END")
        self.assertFalse(good_source.is_closed)
        self.assertEqual(self.successResultOf(good.take()), 7)

    def test_source_ending_inside_a_frame_closes_output(self) -> None:
        source = Stream(2)
        out = decode_stream(source, self.codec)
        data = c.encode(self.codec, 5) + c.encode(self.codec, 6)
        source.put(data[:-1])
        source.close()
        self.assertEqual(self.take_all(out), [5])
        self.assertTrue(out.is_drained)

    def test_closing_the_output_closes_the_source(self) -> None:
        source = Stream()
        out = decode_stream(source, self.codec)
        out.close()
        self.assertTrue(source.is_closed)

    def test_a_pending_take_is_served(self) -> None:
        source = Stream()
        out = decode_stream(source, self.codec)
        d = out.take()
        self.assertNoResult(d)
        source.put(c.encode(self.codec, {"k": [1]})[:5])
        self.assertNoResult(d)
        source.put(c.encode(self.codec, {"k": [1]})[5:])
        self.assertEqual(self.successResultOf(d), {"k": [1]})

    def test_duplex_source_is_closed_on_error(self) -> None:
        from twisted_aleph.stream import splice
        inbound, outbound = Stream(1), Stream(1)
        duplex = splice(outbound, inbound)
        out = decode_stream(duplex, self.codec)
        inbound.put(b"\x00\x00\x00\x02}}")
        self.assertTrue(outbound.is_closed)
        self.assertEqual(self.successResultOf(out.take("END")), "END")

    def test_stream_of_helper(self) -> None:
        out = decode_stream(stream_of([c.encode(self.codec, "s")]), self.codec)
        self.assertEqual(self.take_all(out), ["s"])
