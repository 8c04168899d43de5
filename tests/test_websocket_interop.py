"""WebSocket against an independent implementation: the ``websockets`` package.

Its asyncio client and server run in threads, each with its own asyncio
event loop (the client in a pool thread via deferToThread, the server in a
thread of its own), so our server is checked by a client we did not write
and our client by a server we did not write. (Its sync client, tried first,
intermittently tripped over PyPy 3.9's threading when closing.)
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, List

from twisted.internet import defer
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from tests.test_websocket import Harness, bounded, take_n
from twisted_aleph import stream as s
from twisted_aleph.http.websocket import closed, websocket_client

try:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed
except ImportError:  # pragma: no cover
    connect = None

TIMEOUT = 10


def in_thread(coroutine_function: Callable[[], Any]) -> Any:
    """Deferred of an asyncio coroutine run to completion (at most TIMEOUT
    seconds) on its own event loop in a pool thread."""
    def run() -> Any:
        return asyncio.run(asyncio.wait_for(coroutine_function(), TIMEOUT))
    return deferToThread(run)


class TheirClientOurServer(unittest.TestCase):
    if connect is None:
        skip = "the websockets package is not installed"

    def test_echo_ten_messages(self) -> Any:
        harness = Harness(self)

        async def talk() -> Any:
            async with connect(harness.url("/echo"), open_timeout=TIMEOUT) as ws:
                for i in range(10):
                    await ws.send(str(i))
                await ws.send(b"\x00binary")
                got = [await ws.recv() for _ in range(11)]
                return got, ws.response.headers.get("Sec-WebSocket-Extensions")

        def check(result: Any) -> None:
            got, extensions = result
            self.assertEqual(got, [str(i) for i in range(10)] + [b"\x00binary"])
            self.assertIn("permessage-deflate", extensions)
        return bounded(in_thread(talk)).addCallback(check)

    def test_chat_between_their_client_and_ours(self) -> Any:
        harness = Harness(self)

        async def bob() -> List[str]:
            async with connect(harness.url("/chat"), open_timeout=TIMEOUT) as ws:
                await ws.send("shoes and ships")
                await ws.send("Bob")
                await ws.send("hi!")
                return [await ws.recv(), await ws.recv()]

        async def run() -> None:
            alice = await harness.client("/chat")
            await s.put_all(alice, ["shoes and ships", "Alice"])
            await bounded(harness.bus.when(lambda: harness.bus.is_active("shoes and ships")))
            bob_done = in_thread(bob)
            # Bob's line is published after Bob subscribed, so he will hear Alice.
            self.assertEqual(await take_n(alice, 1), ["Bob: hi!"])
            await alice.put("hello")
            self.assertEqual(await bounded(bob_done), ["Bob: hi!", "Alice: hello"])
            self.assertEqual(await take_n(alice, 1), ["Alice: hello"])
        return defer.ensureDeferred(run())

    def test_their_client_gets_1009_for_a_message_over_the_limit(self) -> Any:
        harness = Harness(self, max_message_size=1000)

        async def offend() -> Any:
            async with connect(harness.url("/echo-limited"), open_timeout=TIMEOUT,
                               compression=None) as ws:
                await ws.send("a" * 5000)
                try:
                    await ws.recv()
                except ConnectionClosed as e:
                    return e.rcvd.code if e.rcvd else None
                return "not closed"
        return bounded(in_thread(offend)).addCallback(self.assertEqual, 1009)

    def test_their_client_closing_with_a_code_is_surfaced(self) -> Any:
        harness = Harness(self)

        async def close_with_code() -> None:
            async with connect(harness.url("/keep"), open_timeout=TIMEOUT) as ws:
                await ws.send("one")
                await ws.close(code=4003, reason="done here")

        async def run() -> None:
            await bounded(in_thread(close_with_code))
            server_side = harness.server_conns[0]
            self.assertEqual(await bounded(server_side.take()), "one")
            info = await bounded(closed(server_side))
            self.assertEqual((info["close_code"], info["close_reason"]), (4003, "done here"))
        return defer.ensureDeferred(run())


class OurClientTheirServer(unittest.TestCase):
    if connect is None:
        skip = "the websockets package is not installed"

    def setUp(self) -> Any:
        async def handler(ws: Any) -> None:
            async for message in ws:
                if message == "close please":
                    await ws.close(code=4002, reason="as asked")
                    return
                await ws.send(message)

        loop = asyncio.new_event_loop()
        ready = threading.Event()
        servers: List[Any] = []

        async def main() -> None:
            server = await serve(handler, "127.0.0.1", 0)
            servers.append(server)
            ready.set()
            await server.wait_closed()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(main())
            finally:
                loop.close()
        thread = threading.Thread(target=run, daemon=True)
        thread.start()

        def stop() -> Any:
            if servers:
                loop.call_soon_threadsafe(servers[0].close)
            return deferToThread(thread.join, TIMEOUT)
        self.addCleanup(stop)

        def started(is_ready: bool) -> None:
            self.assertTrue(is_ready, "the websockets server did not start")
            self.port = servers[0].sockets[0].getsockname()[1]
        return deferToThread(ready.wait, TIMEOUT).addCallback(started)

    async def _echo(self) -> None:
        conn = await bounded(websocket_client(f"ws://127.0.0.1:{self.port}/"))
        self.assertEqual(conn.info["extensions"], ["permessage-deflate"])
        await s.put_all(conn, [str(i) for i in range(10)] + [b"\x01\x02"])
        self.assertEqual(await take_n(conn, 11), [str(i) for i in range(10)] + [b"\x01\x02"])
        await conn.put("close please")
        self.assertIsNone(await bounded(conn.take()))
        self.assertEqual((conn.info["close_code"], conn.info["close_reason"]),
                         (4002, "as asked"))

    def test_echo_and_server_close_code(self) -> Any:
        return defer.ensureDeferred(self._echo())

    async def _close(self) -> None:
        conn = await bounded(websocket_client(f"ws://127.0.0.1:{self.port}/",
                                              compression=False))
        self.assertEqual(conn.info["extensions"], [])
        await conn.put("bye")
        self.assertEqual(await bounded(conn.take()), "bye")
        conn.close()
        info = await bounded(closed(conn))
        self.assertTrue(info["was_clean"])
        self.assertEqual(info["local_close_code"], 1000)

    def test_closing_our_stream_is_a_clean_close(self) -> Any:
        return defer.ensureDeferred(self._close())
