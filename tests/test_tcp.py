"""twisted_aleph.tcp without sockets: framing, bad input and backpressure.

Connections run over in-memory transports (``StringTransport``, ``iosim``)
with a ``task.Clock``, so every split, stall and disconnect is exact.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, List

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial import unittest

from twisted_aleph import codec, edn, tcp
from twisted_aleph.demo import tcp as demo

END = object()


def frame(payload: bytes) -> bytes:
    """A frame packed by hand, independently of the code under test."""
    return struct.pack(">I", len(payload)) + payload


def unframe(data: bytes) -> List[bytes]:
    """Split whole frames out of ``data`` (independent reference parser)."""
    out = []
    while data:
        (n,) = struct.unpack(">I", data[:4])
        assert len(data) >= 4 + n, "incomplete frame on the wire"
        out.append(data[4:4 + n])
        data = data[4 + n:]
    return out


class Connection:
    """A server-side framed protocol on a StringTransport, with its handler."""

    def __init__(self, handler: Callable[[Any, dict], Any], clock: task.Clock,
                 protocol_class: Any = tcp.FramedEDNProtocol, **options: Any) -> None:
        factory = tcp.DuplexStreamFactory(protocol_class, handler, clock, **options)
        self.protocol = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def receive(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def sent_values(self) -> List[Any]:
        values = [edn.loads(p.decode("utf-8")) for p in unframe(self.transport.value())]
        self.transport.clear()
        return values

    def lose(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionDone()))


def collecting_handler(into: List[Any]) -> Callable[[Any, dict], None]:
    def handler(stream: Any, info: dict) -> None:
        into.append(stream)
    return handler


def take_all(case: unittest.TestCase, stream: Any) -> List[Any]:
    """Every message available now, until the stream is drained or empty."""
    out = []
    while True:
        d = stream.take(END)
        if not d.called:
            # nothing more yet: withdraw the take so it cannot eat a later message
            stream.source._withdraw_take(d)
            return out
        msg = case.successResultOf(d)
        if msg is END:
            return out
        out.append(msg)


def drain(case: unittest.TestCase, stream: Any, clock: task.Clock) -> List[Any]:
    """Take everything, letting paused reading resume in between."""
    out: List[Any] = []
    while True:
        got = take_all(case, stream)
        clock.advance(0)
        if not got and not clock.getDelayedCalls():
            return out
        out.extend(got)


class FramingTests(unittest.TestCase):
    """The wire format, however the bytes are split or coalesced."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.streams: List[Any] = []
        self.conn = Connection(collecting_handler(self.streams), self.clock)
        self.stream = self.streams[0]

    def test_one_byte_writes(self) -> None:
        data = b"".join(frame(p) for p in [b"1", b'"hello"', b"{:a [1 2]}", b""[:0] + b"nil"])
        for i in range(len(data)):
            self.conn.receive(data[i:i + 1])
        self.assertEqual(take_all(self, self.stream),
                         [1, "hello", edn.loads("{:a [1 2]}"), None])
        self.assertEqual(self.conn.protocol.decoder.buffered, 0)

    def test_many_frames_in_one_write(self) -> None:
        data = b"".join(frame(str(i).encode()) for i in range(tcp.INCOMING_BUFFER_SIZE))
        self.conn.receive(data)
        self.assertEqual(take_all(self, self.stream), list(range(tcp.INCOMING_BUFFER_SIZE)))

    def test_empty_and_unicode_payloads(self) -> None:
        self.conn.receive(frame('"été ☃"'.encode()) + frame(b'""'))
        self.assertEqual(take_all(self, self.stream), ["été ☃", ""])

    @settings(max_examples=60, deadline=None)
    @given(values=st.lists(st.one_of(st.integers(), st.text(max_size=20)), max_size=12),
           cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=10))
    def test_any_split(self, values: List[Any], cuts: List[int]) -> None:
        streams: List[Any] = []
        conn = Connection(collecting_handler(streams), self.clock)
        data = b"".join(frame(edn.dumps(v).encode("utf-8")) for v in values)
        points = sorted({c for c in cuts if c < len(data)} | {0, len(data)})
        received: List[Any] = []
        for a, b in zip(points, points[1:]):
            conn.receive(data[a:b])
            received.extend(take_all(self, streams[0]))
            self.clock.advance(0)
        received.extend(take_all(self, streams[0]))
        self.assertEqual(received, values)

    def test_length_over_maximum_drops_the_connection(self) -> None:
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        streams: List[Any] = []
        conn = Connection(collecting_handler(streams), self.clock, max_length=100)
        conn.receive(frame(b"1") + struct.pack(">I", 101) + b"x" * 50)
        self.assertTrue(conn.transport.disconnecting)
        # nothing of the refused frame is kept, nor anything sent after it
        conn.receive(b"y" * 1000)
        self.assertEqual(conn.protocol.decoder.buffered, 0)
        self.assertEqual(list(conn.protocol.decoder._chunks), [])
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["length"], 101)
        conn.lose()
        # the frame before the bad prefix was delivered, then the stream ends
        self.assertEqual(take_all(self, streams[0]), [1])
        self.assertTrue(streams[0].is_drained)

    def test_huge_prefix_allocates_nothing(self) -> None:
        EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.conn.receive(struct.pack(">I", 2 ** 32 - 1))
        self.assertTrue(self.conn.transport.disconnecting)
        self.assertEqual(self.conn.protocol.decoder.buffered, 0)

    def test_default_maximum_is_16_mib(self) -> None:
        self.assertEqual(self.conn.protocol.MAX_LENGTH, 16 * 1024 * 1024)
        self.conn.receive(struct.pack(">I", 16 * 1024 * 1024) + b"12")
        self.assertFalse(self.conn.transport.disconnecting)

    def test_bad_utf8_arrives_as_a_decode_error(self) -> None:
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.conn.receive(frame(b"\xff\xfe") + frame(b"2"))
        bad, good = take_all(self, self.stream)
        self.assertIsInstance(bad, codec.DecodeError)
        self.assertIsInstance(bad.cause, UnicodeDecodeError)
        self.assertEqual(bad.frame, b"\xff\xfe")
        self.assertEqual(good, 2)  # framing intact: the next frame decodes
        self.assertFalse(self.conn.transport.disconnecting)
        self.assertEqual(len([e for e in events if e["log_level"] == LogLevel.warn]), 1)

    def test_bad_edn_arrives_as_a_decode_error(self) -> None:
        EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.conn.receive(frame(b"{:a") + frame(b"3"))
        bad, good = take_all(self, self.stream)
        self.assertIsInstance(bad, codec.DecodeError)
        self.assertIsInstance(bad.cause, edn.EDNError)
        self.assertEqual(good, 3)

    def test_disconnect_mid_frame(self) -> None:
        self.conn.receive(frame(b"1") + frame(b"[1 2 3]")[:5])
        self.conn.lose()
        self.assertEqual(take_all(self, self.stream), [1])
        self.assertTrue(self.stream.is_drained)
        self.assertTrue(self.stream.sink.is_closed)
        self.assertFalse(self.successResultOf(self.stream.put(9)))

    def test_pluggable_payload_codec(self) -> None:
        streams: List[Any] = []
        conn = Connection(collecting_handler(streams), self.clock,
                          encode=lambda v: v.upper(), decode=lambda b: b[::-1])
        conn.receive(frame(b"abc"))
        self.assertEqual(take_all(self, streams[0]), [b"cba"])
        streams[0].put(b"xyz")
        self.assertEqual(unframe(conn.transport.value()), [b"XYZ"])

    def test_framed_and_codec_put_the_same_bytes_on_the_wire(self) -> None:
        values = [1, "ERROR: x", [1, 2.5, None], {"a": [True, False]}, "☃" * 300]
        streams: List[Any] = []
        framed = Connection(collecting_handler(streams), self.clock)
        for v in values:
            streams[0].put(v)
        self.assertEqual(framed.transport.value(),
                         b"".join(codec.encode(demo.protocol, v) for v in values))


class WriterTests(unittest.TestCase):
    """The sink side: writes, the transport's producer calls, closing."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.streams: List[Any] = []
        self.conn = Connection(collecting_handler(self.streams), self.clock)
        self.stream = self.streams[0]

    def test_registered_as_streaming_producer(self) -> None:
        self.assertIs(self.conn.transport.producer, self.conn.protocol.writer)
        self.assertTrue(self.conn.transport.streaming)

    def test_full_write_buffer_holds_back_puts(self) -> None:
        """A peer that never reads: puts stay pending, memory stays bounded."""
        self.assertTrue(self.successResultOf(self.stream.put(1)))
        self.conn.transport.producer.pauseProducing()  # the transport is full
        self.assertIs(self.stream.offer(2), True)      # written; the sink now waits
        later = [self.stream.put(i) for i in range(3, 1003)]
        self.assertNoResult(later[0])
        self.assertNoResult(later[-1])
        self.assertEqual(self.conn.sent_values(), [1, 2])  # nothing beyond one message
        self.conn.transport.producer.resumeProducing()
        self.assertTrue(all(self.successResultOf(d) for d in later))
        self.assertEqual(self.conn.sent_values(), list(range(3, 1003)))

    def test_close_hangs_up_after_queued_data(self) -> None:
        self.conn.transport.producer.pauseProducing()
        self.stream.put(1)
        pending = self.stream.put(2)
        self.stream.close()
        self.assertFalse(self.conn.transport.disconnecting)  # 2 is not written yet
        self.conn.transport.producer.resumeProducing()
        self.assertTrue(self.successResultOf(pending))
        self.assertEqual(self.conn.sent_values(), [1, 2])
        self.assertTrue(self.conn.transport.disconnecting)
        self.assertIsNone(self.conn.transport.producer)

    def test_pending_puts_finish_when_the_connection_is_lost(self) -> None:
        self.conn.transport.producer.pauseProducing()
        self.stream.put(1)
        pending = [self.stream.put(i) for i in range(2, 5)]
        self.conn.lose()
        self.assertTrue(all(d.called for d in pending))
        self.assertFalse(self.successResultOf(self.stream.put(5)))

    def test_unencodable_value_closes_that_connection(self) -> None:
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.stream.put(object())
        self.assertTrue(self.conn.transport.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors()), 1)
        self.assertTrue(any(e["log_level"] == LogLevel.critical for e in events))

    def test_raw_stream_accepts_bytes_like_and_text(self) -> None:
        streams: List[Any] = []
        conn = Connection(collecting_handler(streams), self.clock, tcp.ByteStreamProtocol)
        for chunk in [b"a", bytearray(b"b"), memoryview(b"c"), "é"]:
            self.assertTrue(self.successResultOf(streams[0].put(chunk)))
        self.assertEqual(conn.transport.value(), "abcé".encode())

    def test_raw_stream_refuses_anything_else_at_once(self) -> None:
        streams: List[Any] = []
        conn = Connection(collecting_handler(streams), self.clock, tcp.ByteStreamProtocol)
        for wrong in [12345, None, [b"a"], object()]:
            with self.subTest(wrong=wrong):
                self.assertRaises(TypeError, streams[0].put, wrong)
        self.assertTrue(self.successResultOf(streams[0].put(b"still fine")))
        self.assertEqual(conn.transport.value(), b"still fine")
        self.assertFalse(conn.transport.disconnecting)


class HotPathTests(unittest.TestCase):
    def test_no_deferred_per_message_while_peers_keep_up(self) -> None:
        """The fast echo allocates no Deferred per message (offer, not put)."""
        conn = Connection(demo.fast_echo_handler(demo.inc), task.Clock())
        created = []
        original = Deferred.__init__

        def counting(d: Deferred, *args: Any, **kwargs: Any) -> None:
            created.append(1)
            original(d, *args, **kwargs)
        self.patch(Deferred, "__init__", counting)
        conn.receive(b"".join(frame(b"1") for _ in range(1000)))
        self.assertEqual(conn.sent_values(), [2] * 1000)
        self.assertEqual(created, [])


class ReadBackpressureTests(unittest.TestCase):
    """A handler that is behind stops the transport reading."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.streams: List[Any] = []

    def test_framed_pauses_reading_and_stops_parsing(self) -> None:
        conn = Connection(collecting_handler(self.streams), self.clock)
        n = tcp.INCOMING_BUFFER_SIZE
        data = b"".join(frame(str(i).encode()) for i in range(n + 50))
        conn.receive(data)
        self.assertEqual(conn.transport.producerState, "paused")
        # one message waits on the full buffer; the rest stay unparsed bytes
        self.assertEqual(conn.protocol.decoder.buffered, len(data) - len(
            b"".join(frame(str(i).encode()) for i in range(n + 1))))
        got = [self.successResultOf(self.streams[0].take()) for _ in range(n + 1)]
        self.assertEqual(got, list(range(n + 1)))
        self.assertEqual(conn.transport.producerState, "paused")
        self.clock.advance(0)  # reading resumes on a fresh stack
        self.assertEqual(drain(self, self.streams[0], self.clock), list(range(n + 1, n + 50)))
        self.assertEqual(conn.transport.producerState, "producing")

    def test_bytes_read_while_paused_are_held_unparsed(self) -> None:
        """A read the transport still delivers after the pause (TLS may) is kept as bytes."""
        EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        conn = Connection(collecting_handler(self.streams), self.clock)
        n = tcp.INCOMING_BUFFER_SIZE
        conn.receive(b"".join(frame(str(i).encode()) for i in range(n + 1)))
        self.assertEqual(conn.transport.producerState, "paused")
        late = frame(b"100") + frame(b"\xff") + frame(b"101")[:3]
        conn.receive(late)
        self.assertEqual(conn.protocol.decoder.buffered, len(late))
        conn.receive(frame(b"101")[3:])
        self.assertEqual(conn.protocol.decoder.buffered, len(late) + len(frame(b"101")[3:]))
        got = drain(self, self.streams[0], self.clock)
        self.assertEqual(got[:n + 2], list(range(n + 1)) + [100])
        self.assertIsInstance(got[n + 2], codec.DecodeError)
        self.assertEqual(got[n + 3:], [101])
        self.assertEqual(conn.transport.producerState, "producing")

    @settings(max_examples=60, deadline=None)
    @given(items=st.lists(st.one_of(st.integers(), st.none()), max_size=40),
           cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=12),
           takes=st.lists(st.integers(min_value=0, max_value=5), max_size=12))
    def test_any_split_with_bad_frames_and_a_slow_handler(
            self, items: List[Any], cuts: List[int], takes: List[int]) -> None:
        """Exact order under any split while the handler takes a few at a time; None stands
        for a frame of bad UTF-8, which arrives as a DecodeError in its place."""
        EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        streams: List[Any] = []
        conn = Connection(collecting_handler(streams), self.clock)
        data = b"".join(frame(b"\xff" if v is None else str(v).encode()) for v in items)
        points = sorted({c for c in cuts if c < len(data)} | {0, len(data)})
        got: List[Any] = []
        for i, (a, b) in enumerate(zip(points, points[1:])):
            conn.receive(data[a:b])
            for _ in range(takes[i] if i < len(takes) else 0):
                d = streams[0].take(END)
                if not d.called:
                    streams[0].source._withdraw_take(d)
                    break
                got.append(self.successResultOf(d))
            self.clock.advance(0)
        got.extend(drain(self, streams[0], self.clock))
        self.assertEqual([None if isinstance(v, codec.DecodeError) else v for v in got], items)
        self.assertEqual(conn.protocol.decoder.buffered, 0)

    def test_raw_pauses_reading(self) -> None:
        conn = Connection(collecting_handler(self.streams), self.clock, tcp.ByteStreamProtocol)
        for _ in range(tcp.INCOMING_BUFFER_SIZE):
            conn.receive(b"x")
        self.assertEqual(conn.transport.producerState, "producing")
        conn.receive(b"y")
        self.assertEqual(conn.transport.producerState, "paused")
        self.assertEqual(len(take_all(self, self.streams[0])), tcp.INCOMING_BUFFER_SIZE + 1)
        self.clock.advance(0)
        self.assertEqual(conn.transport.producerState, "producing")

    def test_lost_while_paused_cancels_the_resume(self) -> None:
        conn = Connection(collecting_handler(self.streams), self.clock, tcp.ByteStreamProtocol)
        for _ in range(tcp.INCOMING_BUFFER_SIZE + 1):
            conn.receive(b"x")
        self.successResultOf(self.streams[0].take())
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        conn.lose()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(take_all(self, self.streams[0])), tcp.INCOMING_BUFFER_SIZE)
        self.assertTrue(self.streams[0].is_drained)

    def test_echo_to_a_peer_that_never_reads_is_bounded(self) -> None:
        """fast echo + a full write buffer: the pipeline blocks, reading stops."""
        conn = Connection(demo.fast_echo_handler(demo.inc), self.clock)
        conn.transport.producer.pauseProducing()
        data = b"".join(frame(b"1") for _ in range(2000))
        conn.receive(data)
        self.assertEqual(conn.transport.producerState, "paused")
        self.assertEqual(len(conn.sent_values()), 1)  # written, then it waited
        # One message in flight per pipeline stage and a full source buffer;
        # the rest is kept as the bytes already read, not as queued messages.
        in_flight = tcp.INCOMING_BUFFER_SIZE + 4
        self.assertGreaterEqual(conn.protocol.decoder.buffered, len(data) - in_flight * len(frame(b"1")))
        conn.transport.producer.resumeProducing()
        self.clock.advance(0)
        self.assertEqual(conn.sent_values(), [2] * 1999)


class InMemoryConnectionTests(unittest.TestCase):
    """Server and client protocols talking through iosim."""

    def connect(self, handler: Callable[[Any, dict], Any], **options: Any) -> Any:
        clock = task.Clock()
        factory = tcp.DuplexStreamFactory(tcp.FramedEDNProtocol, handler, clock, **options)
        client, server, pump = iosim.connectedServerAndClient(
            lambda: factory.buildProtocol(None),
            lambda: tcp.FramedEDNProtocol(clock, **options), clock=clock)
        return client, server, pump

    def test_fast_echo_inc(self) -> None:
        client, server, pump = self.connect(demo.fast_echo_handler(demo.inc))
        c = client.stream
        self.assertTrue(self.successResultOf(c.put(1)))
        pump.flush()
        self.assertEqual(self.successResultOf(c.take()), 2)

    def test_values_round_trip(self) -> None:
        client, server, pump = self.connect(demo.fast_echo_handler(demo.identity))
        values = [None, True, 2 ** 80, -1.5, "line\nbreak", [1, [2, [3]]],
                  {"k": "v"}, frozenset({1, 2})]
        for v in values:
            client.stream.put(v)
        pump.flush()
        got = [self.successResultOf(client.stream.take()) for _ in values]
        self.assertEqual([edn.dumps(v) for v in got], [edn.dumps(v) for v in values])

    def test_info(self) -> None:
        infos: List[dict] = []
        self.connect(lambda st, info: infos.append(info))
        self.assertEqual(sorted(infos[0]), ["remote_addr", "remote_port", "server_name",
                                            "server_port", "ssl_session"])
        self.assertIsNone(infos[0]["ssl_session"])

    def test_client_close_ends_the_server_stream(self) -> None:
        streams: List[Any] = []
        client, server, pump = self.connect(collecting_handler(streams))
        client.stream.put("bye")
        client.stream.close()
        pump.flush()
        self.assertEqual(self.successResultOf(streams[0].take()), "bye")
        self.assertEqual(self.successResultOf(streams[0].take(END)), END)
        self.assertTrue(streams[0].sink.is_closed)

    def test_handler_exception_closes_only_that_connection(self) -> None:
        def broken(stream: Any, info: dict) -> None:
            raise RuntimeError("handler bug")
        client, server, pump = self.connect(broken)
        pump.flush()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(client.stream.is_drained)

    def test_failed_handler_deferred_closes_the_connection(self) -> None:
        async def broken(stream: Any, info: dict) -> None:
            await stream.take()
            raise RuntimeError("async handler bug")
        client, server, pump = self.connect(broken)
        client.stream.put(1)
        pump.flush()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(client.stream.is_drained)

    def test_fast_echo_closes_on_a_bad_frame(self) -> None:
        EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        client, server, pump = self.connect(demo.fast_echo_handler(demo.inc))
        client.transport.write(frame(b"1") + frame(b"\xff"))
        pump.flush()
        self.assertEqual(self.successResultOf(client.stream.take()), 2)
        self.assertEqual(self.successResultOf(client.stream.take(END)), END)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)

    def test_wrap_duplex_stream_over_raw_protocols(self) -> None:
        clock = task.Clock()

        def handler(raw: Any, info: dict) -> None:
            demo.fast_echo_handler(demo.inc)(tcp.wrap_duplex_stream(demo.protocol, raw), info)

        factory = tcp.DuplexStreamFactory(tcp.ByteStreamProtocol, handler, clock)
        client, server, pump = iosim.connectedServerAndClient(
            lambda: factory.buildProtocol(None),
            lambda: tcp.ByteStreamProtocol(clock), clock=clock)
        c = tcp.wrap_duplex_stream(demo.protocol, client.stream)
        for i in range(5):
            self.assertTrue(self.successResultOf(c.put(i)))
        pump.flush()
        self.assertEqual([self.successResultOf(c.take()) for _ in range(5)], [1, 2, 3, 4, 5])

    def test_slow_echo_handler_with_a_fake_blocking_f(self) -> None:
        """The seed's slow demo; ``future`` is run inline (a fake thread pool)."""
        self.patch(demo.d, "future", lambda f, *a: demo.d.to_deferred(f(*a)))
        for make in (demo.slow_echo_handler, demo.slow_echo_handler_async):
            client, server, pump = self.connect(make(demo.inc))
            self.assertTrue(self.successResultOf(client.stream.put(1)))
            pump.flush()
            self.assertEqual(self.successResultOf(client.stream.take()), 2)
            client.stream.put(41)
            pump.flush()
            self.assertEqual(self.successResultOf(client.stream.take()), 42)

    def test_slow_echo_sends_error_and_closes(self) -> None:
        EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.patch(demo.d, "future", lambda f, *a: demo.d.to_deferred(f(*a)))
        for make in (demo.slow_echo_handler, demo.slow_echo_handler_async):
            for bad, expected in [(frame(b'"a"'), "ERROR: "),
                                  (frame(b"{:a"), "ERROR: could not decode a 3-byte frame")]:
                client, server, pump = self.connect(make(demo.inc))
                client.transport.write(bad)
                pump.flush()
                reply = self.successResultOf(client.stream.take())
                self.assertTrue(reply.startswith(expected), reply)
                self.assertEqual(self.successResultOf(client.stream.take(END)), END)


class HandlerNamedTests(unittest.TestCase):
    def test_names(self) -> None:
        self.assertTrue(callable(demo.handler_named("inc")))
        self.assertTrue(callable(demo.handler_named("echo")))
        self.assertIs(demo.handler_named("twisted_aleph.demo.tcp:inc"), demo.inc)

    def test_bad_names(self) -> None:
        for spec in ["nope", "x:", ":y", "twisted_aleph.demo.tcp:protocol"]:
            self.assertRaises(ValueError, demo.handler_named, spec)
        self.assertRaises(ImportError, demo.handler_named, "no_such_module_xyz:f")
