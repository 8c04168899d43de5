"""WebSocket: handshake check, echo and chat over real sockets, bad input, backpressure.

Servers listen on 127.0.0.1 port 0; clients are our ``websocket_client`` or a
raw TCP protocol that writes hand-made frames (so the server is checked
against bytes it did not produce). The independent ``websockets`` client is in
test_websocket_interop, the browser in test_websocket_browser.
"""

from __future__ import annotations

import base64
import os
import struct
from typing import Any, Callable, List, Optional, Tuple

from hypothesis import given, strategies as st
from klein import Klein
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest

from twisted_aleph import stream as s
from twisted_aleph.bus import EventBus
from twisted_aleph.deferred import timeout
from twisted_aleph.demo import websocket as demo
from twisted_aleph.http import start_server
from twisted_aleph.http.websocket import (
    NotAWebSocket, WebSocketHandshakeError, closed, handshake_problem,
    websocket_client, websocket_close, websocket_connection,
)

KEY = base64.b64encode(b"0123456789abcdef").decode()
VALID = {"host": "localhost", "upgrade": "websocket", "connection": "Upgrade",
         "sec-websocket-version": "13", "sec-websocket-key": KEY}
WAIT = 10.0  # upper bound on any wait; a passing test takes milliseconds


def bounded(d: Any, seconds: float = WAIT) -> Deferred:
    """Fail instead of hanging if ``d`` (Deferred or coroutine) does not fire in time."""
    return timeout(defer.ensureDeferred(d), seconds)


async def take_n(conn: Any, n: int) -> List[Any]:
    return [await bounded(conn.take()) for _ in range(n)]


# -- servers and clients used by the tests ---------------------------------------


class WatchedBus(EventBus):
    """An in-process EventBus that tells the test when its subscriptions
    change (``when(check)``), so a test waits for the server to subscribe
    or drop a client without polling."""

    def __init__(self) -> None:
        super().__init__()
        self._waiters: List[Tuple[Callable[[], bool], Deferred]] = []

    def subscribe(self, topic: Any) -> Any:
        s = super().subscribe(topic)
        s.on_closed(self._changed)  # after the bus's own callback has dropped it
        self._changed()
        return s

    def when(self, check: Callable[[], bool]) -> Deferred:
        """Fires once ``check()`` holds (now, or at a later change)."""
        if check():
            return defer.succeed(None)
        d: Deferred = Deferred()
        self._waiters.append((check, d))
        return d

    def _changed(self) -> None:
        for check, d in list(self._waiters):
            if check():
                self._waiters.remove((check, d))
                d.callback(None)


class Harness:
    """A Klein app with the demo routes plus test routes, served on port 0."""

    def __init__(self, case: unittest.TestCase, bus: Optional[EventBus] = None,
                 tls: Any = None, **ws_options: Any) -> None:
        self.case = case
        self.app = Klein()
        self.bus = demo.add_routes(self.app, bus if bus is not None else WatchedBus())
        self.server_conns: List[Any] = []
        self.accepted: Deferred = Deferred()
        self.handler_results: List[Deferred] = []

        @self.app.route("/chain")
        def chain_echo(request: Any) -> Any:
            return demo.echo_handler_chain(request)

        @self.app.route("/keep")
        def keep(request: Any) -> Any:
            """Upgrade with ws_options and hand the server side to the test."""
            d = websocket_connection(request, **ws_options)

            def opened(conn: Any) -> None:
                self.server_conns.append(conn)
                waiter, self.accepted = self.accepted, Deferred()
                waiter.callback(conn)
            return d.addCallback(opened)

        @self.app.route("/echo-limited")
        def echo_limited(request: Any) -> Any:
            d = websocket_connection(request, **ws_options)
            return d.addCallback(lambda conn: s.connect(conn, conn))

        self.scheme = "ws" if tls is None else "wss"
        self.server = start_server(self.app, 0, interface="127.0.0.1", tls=tls)
        case.addCleanup(self.shutdown)

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.port}{path}"

    async def client(self, path: str, **options: Any) -> Any:
        conn = await bounded(websocket_client(self.url(path), **options))
        self.case.addCleanup(lambda: bounded(websocket_close(conn)))
        return conn

    async def shutdown(self) -> None:
        for conn in self.server_conns:
            conn.close()
            await bounded(closed(conn))
        await self.server.close()
        await bounded(self.server.when_idle())


def after_call(obj: Any, name: str, check: Callable[[], bool]) -> Deferred:
    """Fires once ``check()`` holds: at once if it holds now, else on the
    reactor turn after the first call of ``obj.<name>`` that leaves it holding
    (not inside that call: the test must not run re-entrantly in the protocol).
    The method is wrapped on this one instance until the Deferred fires (or is
    failed by a timeout), then put back. For waiting on the call that sets a
    flag instead of polling the flag."""
    if check():
        return defer.succeed(None)
    fired: List[Any] = []
    d: Deferred = Deferred(lambda _: [call.cancel() for call in fired if call.active()])
    had_own = name in vars(obj)
    original = getattr(obj, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if not fired and check():
            fired.append(reactor.callLater(0, d.callback, None))
        return result

    def restore(result: Any) -> Any:
        if vars(obj).get(name) is wrapper:
            if had_own:
                setattr(obj, name, original)
            else:
                delattr(obj, name)
        return result

    setattr(obj, name, wrapper)
    d.addBoth(restore)  # first in the chain: put back before the waiter runs
    return d


class RawClient(protocol.Protocol):
    """A bare TCP peer: writes what the test says, records every byte it gets."""

    def __init__(self) -> None:
        self.data = b""
        self.lost: Deferred = Deferred()
        self._waiters: List[Any] = []

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        for pred, d in list(self._waiters):
            if pred(self.data):
                self._waiters.remove((pred, d))
                d.callback(self.data)

    def connectionLost(self, reason: Any = None) -> None:
        for _, d in self._waiters:
            d.callback(self.data)
        self._waiters = []
        self.lost.callback(self.data)

    def wait_for(self, pred: Callable[[bytes], bool]) -> Deferred:
        d: Deferred = Deferred()
        if pred(self.data):
            d.callback(self.data)
        else:
            self._waiters.append((pred, d))
        return bounded(d)


async def raw_connect(case: unittest.TestCase, port: int) -> RawClient:
    client = RawClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)

    async def cleanup() -> None:
        if not client.lost.called:
            client.transport.abortConnection()
        await bounded(client.lost)
    case.addCleanup(cleanup)
    return client


def upgrade_request(path: str, **overrides: Optional[str]) -> bytes:
    headers = dict(VALID)
    headers.update({k.replace("_", "-"): v for k, v in overrides.items()})
    lines = [f"GET {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()
                                         if v is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def client_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A masked client frame, built by hand (RFC 6455 5.2)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_code_sent(data: bytes) -> Optional[int]:
    """The code of the server's close frame after the 101 response, if any."""
    _, _, frames = data.partition(b"\r\n\r\n")
    while len(frames) >= 2:
        opcode, n = frames[0] & 0x0F, frames[1] & 0x7F
        start = 2
        if n == 126:
            n, start = struct.unpack(">H", frames[2:4])[0], 4
        elif n == 127:
            n, start = struct.unpack(">Q", frames[2:10])[0], 10
        if opcode == 8 and n >= 2:
            return int(struct.unpack(">H", frames[start:start + 2])[0])
        frames = frames[start + n:]
    return None


def http_response_complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return True


# -- the handshake check (pure) -------------------------------------------------


class HandshakeProblemTests(unittest.TestCase):
    def test_valid_handshake(self) -> None:
        self.assertIsNone(handshake_problem(b"GET", VALID))

    def test_header_values_are_case_and_list_tolerant(self) -> None:
        headers = dict(VALID, upgrade="WebSocket", connection="keep-alive, Upgrade")
        self.assertIsNone(handshake_problem(b"GET", headers))

    def test_each_missing_piece_is_named(self) -> None:
        cases = {
            "method": (b"POST", VALID),
            "Host": (b"GET", dict(VALID, host="")),
            "Upgrade": (b"GET", {k: v for k, v in VALID.items() if k != "upgrade"}),
            "Connection": (b"GET", dict(VALID, connection="keep-alive")),
            "Version": (b"GET", dict(VALID, **{"sec-websocket-version": "8"})),
            "Key": (b"GET", dict(VALID, **{"sec-websocket-key": "not base64!"})),
        }
        for word, (method, headers) in cases.items():
            problem = handshake_problem(method, headers)
            self.assertIsNotNone(problem, word)
            self.assertIn(word.lower(), problem.lower())

    @given(st.binary(max_size=40))
    def test_key_must_be_16_bytes_of_base64(self, raw: bytes) -> None:
        headers = dict(VALID, **{"sec-websocket-key": base64.b64encode(raw).decode()})
        self.assertEqual(handshake_problem(b"GET", headers) is None, len(raw) == 16)

    @given(st.text(max_size=30))
    def test_arbitrary_keys_never_raise(self, key: str) -> None:
        result = handshake_problem(b"GET", dict(VALID, **{"sec-websocket-key": key}))
        self.assertTrue(result is None or isinstance(result, str))


# -- the seed's demonstrations ---------------------------------------------------


class EchoTests(unittest.TestCase):
    async def echo_ten(self, path: str) -> None:
        harness = Harness(self)
        conn = await harness.client(path)
        await bounded(s.put_all(conn, [str(i) for i in range(10)]))
        self.assertEqual(await take_n(conn, 10), [str(i) for i in range(10)])

    @defer.inlineCallbacks
    def test_ten_messages_echoed_in_order(self) -> Any:
        yield defer.ensureDeferred(self.echo_ten("/echo"))

    @defer.inlineCallbacks
    def test_chain_variant_echoes_too(self) -> Any:
        yield defer.ensureDeferred(self.echo_ten("/chain"))

    async def _binary_and_text(self) -> None:
        harness = Harness(self)
        conn = await harness.client("/echo")
        await conn.put(b"\x00\xffbinary")
        await conn.put("t\u00e9xt \u2603")
        self.assertEqual(await take_n(conn, 2), [b"\x00\xffbinary", "t\u00e9xt \u2603"])

    def test_binary_frames_are_bytes_and_text_frames_str(self) -> Deferred:
        return defer.ensureDeferred(self._binary_and_text())

    async def _compression(self) -> None:
        harness = Harness(self)
        deflated = await harness.client("/echo")
        plain = await harness.client("/echo", compression=False)
        self.assertEqual(deflated.info["extensions"], ["permessage-deflate"])
        self.assertEqual(plain.info["extensions"], [])
        big = "aleph " * 10000
        await deflated.put(big)
        self.assertEqual(await bounded(deflated.take()), big)
        protocol = deflated.sink.protocol
        self.assertLess(protocol.trafficStats.outgoingOctetsWireLevel, len(big) // 10)

    def test_permessage_deflate_negotiated_and_used(self) -> Deferred:
        return defer.ensureDeferred(self._compression())

    async def _close_codes(self) -> None:
        harness = Harness(self)
        conn = await harness.client("/keep")
        server_side = harness.server_conns[0]
        info = await bounded(websocket_close(conn, 4001, "bye now"))
        self.assertEqual(info["local_close_code"], 4001)
        server_info = await bounded(closed(server_side))
        self.assertEqual((server_info["close_code"], server_info["close_reason"]),
                         (4001, "bye now"))
        self.assertTrue(server_info["was_clean"])
        self.assertIsNone(await bounded(server_side.take()))  # its stream is drained

    def test_close_code_and_reason_reach_the_other_side(self) -> Deferred:
        return defer.ensureDeferred(self._close_codes())

    async def _close_flushes(self) -> None:
        harness = Harness(self)
        conn = await harness.client("/keep")
        server_side = harness.server_conns[0]
        for i in range(5):
            server_side.put(f"last words {i}")
        server_side.close()  # queued messages first, then the close frame
        self.assertEqual(await take_n(conn, 5), [f"last words {i}" for i in range(5)])
        self.assertIsNone(await bounded(conn.take()))
        self.assertEqual(conn.info["close_code"], 1000)
        self.assertTrue(conn.is_closed)
        self.assertFalse(await conn.put("too late"))

    def test_closing_sends_queued_messages_then_close_frame(self) -> Deferred:
        return defer.ensureDeferred(self._close_flushes())

    async def _wrong_type(self) -> None:
        harness = Harness(self)
        conn = await harness.client("/echo")
        self.assertRaises(TypeError, conn.put, 42)
        await conn.put("still fine")
        self.assertEqual(await bounded(conn.take()), "still fine")

    def test_putting_something_not_str_or_bytes_is_a_type_error(self) -> Deferred:
        return defer.ensureDeferred(self._wrong_type())

    async def _headers(self) -> None:
        harness = Harness(self)
        await harness.client("/keep", headers={"X-Room-Hint": "shoes"})
        self.assertEqual(harness.server_conns[0].info["headers"]["x-room-hint"], "shoes")

    def test_client_headers_reach_the_server(self) -> Deferred:
        return defer.ensureDeferred(self._headers())


class SecureWebSocketTests(unittest.TestCase):
    """wss:// through the HTTP server's TLS and twisted_aleph.tls contexts."""

    def setUp(self) -> None:
        from twisted_aleph import tls
        directory = self.mktemp()
        os.makedirs(directory)
        files = tls.generate_pki(directory)
        self.server_tls = tls.server_context(files.server_cert, files.server_key)
        self.client_tls = tls.client_context(ca=files.ca_cert)

    async def _echo_and_backpressure(self) -> None:
        harness = Harness(self, tls=self.server_tls, buffer_size=2)
        conn = await harness.client("/keep", tls=self.client_tls)
        server_side = harness.server_conns[0]
        await s.put_all(conn, [str(i) for i in range(5)])
        self.assertEqual(await take_n(server_side, 5), [str(i) for i in range(5)])
        puts = [conn.put(os.urandom(60000)) for _ in range(100)]
        # _StreamBridge.onMessage sets _reading_paused (and pauses the TCP
        # reader) when a message finds the incoming stream full.
        bridge = server_side.sink.protocol
        await bounded(after_call(bridge, "onMessage", lambda: bridge._reading_paused))
        got = [await bounded(server_side.take()) for _ in range(100)]
        self.assertEqual(len(got), 100)
        self.assertTrue(all(d.called for d in puts))

    def test_wss_echo_and_incoming_backpressure(self) -> Deferred:
        return defer.ensureDeferred(self._echo_and_backpressure())

    async def _untrusted(self) -> None:
        from twisted_aleph import tls
        harness = Harness(self, tls=self.server_tls)
        other = self.mktemp()
        os.makedirs(other)
        stranger = tls.client_context(ca=tls.generate_pki(other).ca_cert)
        with self.assertRaises(Exception):
            await bounded(websocket_client(harness.url("/echo"), tls=stranger))

    def test_wss_refuses_a_server_it_does_not_trust(self) -> Deferred:
        return defer.ensureDeferred(self._untrusted())


class ChatTests(unittest.TestCase):
    async def _alice_and_bob(self) -> None:
        harness = Harness(self)
        conn1 = await harness.client("/chat")
        conn2 = await harness.client("/chat")
        await s.put_all(conn1, ["shoes and ships", "Alice"])
        await s.put_all(conn2, ["shoes and ships", "Bob"])
        await bounded(harness.bus.when(lambda: len(harness.bus.downstream("shoes and ships")) == 2))
        await conn1.put("hello")
        self.assertEqual(await take_n(conn1, 1), ["Alice: hello"])
        self.assertEqual(await take_n(conn2, 1), ["Alice: hello"])
        await conn2.put("hi!")
        self.assertEqual(await take_n(conn1, 1), ["Bob: hi!"])
        self.assertEqual(await take_n(conn2, 1), ["Bob: hi!"])

    def test_alice_and_bob_see_both_lines(self) -> Deferred:
        return defer.ensureDeferred(self._alice_and_bob())

    async def _rooms_are_separate(self) -> None:
        harness = Harness(self)
        a = await harness.client("/chat")
        b = await harness.client("/chat")
        await s.put_all(a, ["room a", "A"])
        await s.put_all(b, ["room b", "B"])
        await bounded(harness.bus.when(lambda: harness.bus.is_active("room a")
                                     and harness.bus.is_active("room b")))
        await a.put("only for a")
        await b.put("only for b")
        self.assertEqual(await take_n(a, 1), ["A: only for a"])
        self.assertEqual(await take_n(b, 1), ["B: only for b"])

    def test_rooms_are_separate(self) -> Deferred:
        return defer.ensureDeferred(self._rooms_are_separate())

    async def _leaving(self) -> None:
        harness = Harness(self)
        stay = await harness.client("/chat")
        leave = await harness.client("/chat")
        await s.put_all(stay, ["r", "Stay"])
        await s.put_all(leave, ["r", "Leave"])
        await bounded(harness.bus.when(lambda: len(harness.bus.downstream("r")) == 2))
        leave.sink.protocol.transport.abortConnection()  # vanishes, no close frame
        await bounded(harness.bus.when(lambda: len(harness.bus.downstream("r")) == 1))
        await stay.put("anyone?")
        self.assertEqual(await take_n(stay, 1), ["Stay: anyone?"])
        await bounded(websocket_close(stay))
        await bounded(harness.bus.when(lambda: not harness.bus.is_active("r")))
        self.assertEqual(harness.bus.topics(), [])

    def test_a_client_that_leaves_leaves_the_room(self) -> Deferred:
        return defer.ensureDeferred(self._leaving())

    async def _silent(self) -> None:
        harness = Harness(self)
        silent = await raw_connect(self, harness.server.port)
        silent.transport.write(upgrade_request("/chat"))
        await silent.wait_for(lambda d: b"\r\n\r\n" in d)
        half = await raw_connect(self, harness.server.port)
        half.transport.write(upgrade_request("/chat") + client_frame(1, b"lonely room"))
        await half.wait_for(lambda d: b"\r\n\r\n" in d)
        self.assertEqual(len(harness.server.connections), 2)
        silent.transport.abortConnection()
        half.transport.abortConnection()
        await bounded(harness.server.when_idle())
        self.assertEqual(harness.bus.topics(), [])

    def test_clients_that_go_before_naming_themselves_leak_nothing(self) -> Deferred:
        return defer.ensureDeferred(self._silent())


# -- bad input -------------------------------------------------------------------


class BadInputTests(unittest.TestCase):
    async def refused(self, request: bytes) -> bytes:
        harness = Harness(self)
        raw = await raw_connect(self, harness.server.port)
        raw.transport.write(request)
        return await raw.wait_for(http_response_complete)

    async def _plain_get(self) -> None:
        for path in ("/echo", "/chat"):
            response = await self.refused(
                f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            self.assertTrue(response.startswith(b"HTTP/1.1 400 "), response)
            self.assertIn(b"content-type: application/text", response.lower())
            self.assertTrue(response.endswith(b"\r\n\r\nExpected a websocket request."))

    def test_plain_get_is_400(self) -> Deferred:
        return defer.ensureDeferred(self._plain_get())

    async def _bad_key_and_version(self) -> None:
        for request in (upgrade_request("/echo", sec_websocket_key="c2hvcnQ="),
                        upgrade_request("/echo", sec_websocket_key=None),
                        upgrade_request("/chat", sec_websocket_version="12")):
            response = await self.refused(request)
            self.assertTrue(response.startswith(b"HTTP/1.1 400 "), response)
            self.assertTrue(response.endswith(b"Expected a websocket request."))
            self.assertNotIn(b"Traceback", response)

    def test_bad_key_or_version_is_400(self) -> Deferred:
        return defer.ensureDeferred(self._bad_key_and_version())

    def test_websocket_connection_fails_with_not_a_websocket(self) -> None:
        from twisted.web.test.requesthelper import DummyRequest
        request = DummyRequest([b"echo"])
        request.requestHeaders.setRawHeaders(b"host", [b"localhost"])
        failure = self.failureResultOf(websocket_connection(request), NotAWebSocket)
        self.assertIn("Upgrade", str(failure.value))
        self.assertFalse(getattr(request, "aleph_upgraded", False))

    async def _too_big(self) -> None:
        harness = Harness(self, max_message_size=1024)
        bystander = await harness.client("/echo-limited")
        offender = await raw_connect(self, harness.server.port)
        offender.transport.write(upgrade_request("/echo-limited"))
        await offender.wait_for(lambda d: b"\r\n\r\n" in d)
        offender.transport.write(client_frame(2, b"x" * 2000))
        data = await offender.wait_for(lambda d: close_code_sent(d) is not None)
        self.assertEqual(close_code_sent(data), 1009)
        await bystander.put("x" * 1000)  # under the limit: unaffected
        self.assertEqual(await bounded(bystander.take()), "x" * 1000)

    def test_message_over_max_size_closes_that_connection_with_1009(self) -> Deferred:
        return defer.ensureDeferred(self._too_big())

    async def _too_big_ours(self) -> None:
        harness = Harness(self, max_message_size=1024)
        conn = await harness.client("/echo-limited", compression=False)
        await conn.put(os.urandom(1500))
        self.assertIsNone(await bounded(conn.take()))
        self.assertEqual(conn.info["close_code"], 1009)

    def test_our_client_sees_1009(self) -> Deferred:
        return defer.ensureDeferred(self._too_big_ours())

    async def _too_big_to_send(self) -> None:
        harness = Harness(self, max_message_size=1024, compression=False)
        conn = await harness.client("/keep")
        server_side = harness.server_conns[0]
        await server_side.put("small")
        await server_side.put("x" * 5000)
        self.assertEqual(await bounded(conn.take()), "small")
        self.assertIsNone(await bounded(conn.take()))
        self.assertEqual(conn.info["close_code"], 1009)

    def test_putting_a_message_over_max_size_closes_with_1009(self) -> Deferred:
        return defer.ensureDeferred(self._too_big_to_send())

    async def _invalid_utf8(self) -> None:
        harness = Harness(self)
        raw = await raw_connect(self, harness.server.port)
        raw.transport.write(upgrade_request("/keep"))
        server_side = await bounded(harness.accepted)
        raw.transport.write(client_frame(1, b"ok") + client_frame(1, b"bad \xff\xfe"))
        data = await raw.wait_for(lambda d: close_code_sent(d) is not None)
        self.assertEqual(close_code_sent(data), 1007)
        self.assertEqual(await bounded(server_side.take()), "ok")
        self.assertIsNone(await bounded(server_side.take()))

    def test_invalid_utf8_in_a_text_frame_closes_with_1007(self) -> Deferred:
        return defer.ensureDeferred(self._invalid_utf8())

    async def _vanish(self) -> None:
        harness = Harness(self)
        raw = await raw_connect(self, harness.server.port)
        raw.transport.write(upgrade_request("/keep"))
        server_side = await bounded(harness.accepted)
        raw.transport.write(client_frame(1, b"before vanishing"))
        self.assertEqual(await bounded(server_side.take()), "before vanishing")
        raw.transport.abortConnection()
        self.assertIsNone(await bounded(server_side.take()))
        self.assertEqual(server_side.info["close_code"], 1006)
        self.assertFalse(server_side.info["was_clean"])
        self.assertFalse(await server_side.put("anyone?"))

    def test_client_vanishing_without_close_frame_closes_the_stream(self) -> Deferred:
        return defer.ensureDeferred(self._vanish())

    async def _refused_client(self) -> None:
        harness = Harness(self)
        app_404 = harness.url("/no-such-page")
        with self.assertRaises(WebSocketHandshakeError):
            await bounded(websocket_client(app_404))

    def test_client_refused_by_server_fails_with_handshake_error(self) -> Deferred:
        return defer.ensureDeferred(self._refused_client())

    def test_client_rejects_a_non_websocket_url(self) -> None:
        self.failureResultOf(websocket_client("http://localhost/"), ValueError)


# -- backpressure and keep-alive --------------------------------------------------


class SharedFrameTests(unittest.TestCase):
    """A message put to many server connections (a broadcast) is framed once:
    every peer still gets exactly that message, and nothing else changes."""

    async def _broadcast(self) -> None:
        from autobahn.websocket.protocol import PreparedMessage

        from twisted_aleph.http import websocket as ws

        harness = Harness(self, compression=False)
        clients = [await harness.client("/keep", compression=False) for _ in range(3)]
        servers = list(harness.server_conns)
        line, blob = "caf\u00e9 " * 50, bytes(range(256)) * 4  # one object each
        for conn in servers:
            await conn.put(line)
        for conn in servers:
            await conn.put(blob)
        self.assertIs(ws._last_sent[0], blob)  # framed once, for the 2nd and 3rd
        self.assertIsInstance(ws._last_sent[2], PreparedMessage)
        for client in clients:
            self.assertEqual(await take_n(client, 2), [line, blob])

    def test_one_message_to_many_arrives_whole_on_each(self) -> Deferred:
        return defer.ensureDeferred(self._broadcast())

    async def _mutable(self) -> None:
        harness = Harness(self, compression=False)
        first = await harness.client("/keep", compression=False)
        second = await harness.client("/keep", compression=False)
        data = bytearray(b"first")
        await harness.server_conns[0].put(data)
        data[:] = b"later"  # same object, new bytes: never taken from a shared frame
        await harness.server_conns[1].put(data)
        self.assertEqual(await bounded(first.take()), b"first")
        self.assertEqual(await bounded(second.take()), b"later")

    def test_a_mutated_bytearray_is_framed_again(self) -> Deferred:
        return defer.ensureDeferred(self._mutable())

    async def _too_big(self) -> None:
        harness = Harness(self, max_message_size=1024, compression=False)
        clients = [await harness.client("/keep") for _ in range(2)]
        big = "x" * 5000
        for conn in harness.server_conns:  # the second one goes the shared way
            await conn.put(big)
        for client in clients:
            self.assertIsNone(await bounded(client.take()))
            self.assertEqual(client.info["close_code"], 1009)

    def test_a_shared_message_over_max_size_closes_each_with_1009(self) -> Deferred:
        return defer.ensureDeferred(self._too_big())

    async def _compressed(self) -> None:
        harness = Harness(self)
        clients = [await harness.client("/keep") for _ in range(2)]
        big = "aleph " * 10000
        for conn in harness.server_conns:
            self.assertEqual(conn.info["extensions"], ["permessage-deflate"])
            await conn.put(big)
        for client, conn in zip(clients, harness.server_conns):
            self.assertEqual(await bounded(client.take()), big)
            self.assertLess(conn.sink.protocol.trafficStats.outgoingOctetsWireLevel,
                            len(big) // 10)  # each connection compressed it

    def test_compressing_connections_still_compress(self) -> Deferred:
        return defer.ensureDeferred(self._compressed())

    async def _client_side(self) -> None:
        harness = Harness(self)
        conn = await harness.client("/echo", compression=False)
        line = "masked " * 20
        await conn.put(line)
        await conn.put(line)  # a client masks every frame anew: no sharing
        self.assertEqual(await take_n(conn, 2), [line, line])

    def test_a_client_sending_one_object_twice(self) -> Deferred:
        return defer.ensureDeferred(self._client_side())


class BackpressureTests(unittest.TestCase):
    async def _incoming(self) -> None:
        harness = Harness(self, buffer_size=4)
        conn = await harness.client("/keep", compression=False)
        server_side = harness.server_conns[0]
        protocol = server_side.sink.protocol
        chunk = b"z" * 60000
        n = 300  # ~18 MB: far more than socket buffers hold
        puts = [conn.put(chunk + struct.pack(">I", i)) for i in range(n)]
        # set by onMessage when a message finds the incoming stream full
        await bounded(after_call(protocol, "onMessage", lambda: protocol._reading_paused))
        self.assertFalse(all(d.called for d in puts))  # the sender is held back
        got = [await bounded(server_side.take()) for _ in range(n)]
        self.assertEqual([struct.unpack(">I", m[-4:])[0] for m in got], list(range(n)))
        self.assertTrue(all(d.called for d in puts))
        self.assertFalse(protocol._reading_paused)

    def test_slow_consumer_pauses_the_socket_and_loses_nothing(self) -> Deferred:
        return defer.ensureDeferred(self._incoming())

    async def _outgoing(self) -> None:
        harness = Harness(self)
        conn = await harness.client("/keep", compression=False, buffer_size=1)
        server_side = harness.server_conns[0]
        chunk = b"y" * 60000
        n = 300
        puts = [server_side.put(chunk + struct.pack(">I", i)) for i in range(n)]
        # The transport calls its producer's (the protocol's) pauseProducing,
        # which sets write_paused, once its write buffer is over its limit.
        bridge = server_side.sink.protocol
        await bounded(after_call(bridge, "pauseProducing", lambda: bridge.write_paused))
        self.assertFalse(puts[-1].called)  # held back while the socket is full
        got = [await bounded(conn.take()) for _ in range(n)]
        self.assertEqual([struct.unpack(">I", m[-4:])[0] for m in got], list(range(n)))
        self.assertTrue(all(d.called and d.result for d in puts))

    def test_full_socket_holds_back_puts_and_loses_nothing(self) -> Deferred:
        return defer.ensureDeferred(self._outgoing())


class KeepAliveTests(unittest.TestCase):
    async def _silent_peer(self) -> None:
        clock = task.Clock()
        harness = Harness(self, ping_interval=5, ping_timeout=2, clock=clock)
        raw = await raw_connect(self, harness.server.port)
        raw.transport.write(upgrade_request("/keep"))
        server_side = await bounded(harness.accepted)
        clock.advance(5.2)  # a ping goes out...
        await raw.wait_for(lambda d: b"\r\n\r\n\x89" in d)
        self.assertFalse(server_side.is_closed)
        clock.advance(2.2)  # ...and no pong comes back
        self.assertIsNone(await bounded(server_side.take()))
        self.assertEqual(server_side.info["close_code"], 1006)
        await raw.lost

    def test_peer_that_does_not_answer_pings_is_dropped(self) -> Deferred:
        return defer.ensureDeferred(self._silent_peer())

    async def _answering_peer(self) -> None:
        clock = task.Clock()
        harness = Harness(self, ping_interval=5, ping_timeout=2, clock=clock)
        conn = await harness.client("/keep", ping_interval=None)
        server_side = harness.server_conns[0]
        protocol = server_side.sink.protocol
        for _ in range(3):
            clock.advance(5.2)
            # Autobahn's processControlFrame clears autoPingPending on the
            # matching pong, then calls _onPong -> onPong.
            await bounded(after_call(protocol, "onPong",
                                     lambda: protocol.autoPingPending is None))
            clock.advance(2.2)
        self.assertFalse(server_side.is_closed)
        await conn.put("still here")
        self.assertEqual(await bounded(server_side.take()), "still here")

    def test_peer_that_answers_pings_stays(self) -> Deferred:
        return defer.ensureDeferred(self._answering_peer())


class DefaultAppTests(unittest.TestCase):
    """The default app (demo.http.make_app) carries the WebSocket routes and the page."""

    async def _default_app(self) -> None:
        from twisted_aleph import http
        from twisted_aleph.bytestreams import to_string
        from twisted_aleph.demo.http import make_app
        server = start_server(make_app(), 0, interface="127.0.0.1")
        self.addCleanup(server.close)
        base = f"127.0.0.1:{server.port}"
        pool = http.connection_pool(persistent=False)
        page = await bounded(http.get(f"http://{base}/", pool=pool))
        self.assertEqual(page["status"], 200)
        self.assertIn("text/html", page["headers"]["content-type"])
        html = to_string(page["body"])
        self.assertIn('<script src="/chat.js">', html)
        script = await bounded(http.get(f"http://{base}/chat.js", pool=pool))
        self.assertIn("new WebSocket", to_string(script["body"]))
        conn = await bounded(websocket_client(f"ws://{base}/echo"))
        await conn.put("through the default app")
        self.assertEqual(await bounded(conn.take()), "through the default app")
        await bounded(websocket_close(conn))
        await bounded(server.when_idle())

    def test_default_app_serves_page_script_and_echo(self) -> Deferred:
        return defer.ensureDeferred(self._default_app())
