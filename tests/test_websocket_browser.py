"""The chat page in headless Chromium, driven over the DevTools protocol.

Chromium is started with ``--remote-debugging-port=0``; its DevTools endpoint
is itself a WebSocket, so our own ``websocket_client`` drives the browser.
The page (Alice) and a Python client (Bob) share a room: a line typed in the
page reaches Bob, and Bob's line shows up in the page's DOM. Waiting is on
Deferreds (DevTools replies, ``awaitPromise`` on a MutationObserver), each
bounded. Skipped only where Chromium is not installed.
"""

from __future__ import annotations

import json
import re
import shutil
from typing import Any, Dict, List, Optional
from urllib.parse import quote

from twisted.internet import defer, protocol, reactor
from twisted.internet.defer import Deferred
from twisted.trial import unittest

from tests.test_websocket import Harness, bounded, take_n
from twisted_aleph import stream as s
from twisted_aleph.http.websocket import closed, websocket_client

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0", "--remote-allow-origins=*"]
BROWSER_WAIT = 30.0
ROOM = "shoes and ships"


class ChromiumProcess(protocol.ProcessProtocol):
    """Headless Chromium; ``devtools_url`` fires with its DevTools WebSocket URL."""

    def __init__(self) -> None:
        self.devtools_url: Deferred = Deferred()
        self.ended: Deferred = Deferred()
        self._stderr = b""

    def errReceived(self, data: bytes) -> None:
        self._stderr += data
        match = re.search(rb"DevTools listening on (ws://\S+)", self._stderr)
        if match and not self.devtools_url.called:
            self.devtools_url.callback(match.group(1).decode())

    def processEnded(self, reason: Any) -> None:
        if not self.devtools_url.called:
            self.devtools_url.errback(RuntimeError(
                "chromium exited early: " + self._stderr[-2000:].decode(errors="replace")))
        self.ended.callback(None)


class DevTools:
    """A minimal Chrome DevTools Protocol client over our websocket_client."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.next_id = 0
        self.replies: Dict[int, Deferred] = {}
        self.event_waiters: List[Any] = []
        s.consume(self._received, conn)

    def _received(self, text: str) -> None:
        msg = json.loads(text)
        if "id" in msg:
            d = self.replies.pop(msg["id"], None)
            if d is None:
                return
            if "error" in msg:
                d.errback(RuntimeError(f"DevTools error: {msg['error']}"))
            else:
                d.callback(msg.get("result", {}))
            return
        for waiter in list(self.event_waiters):
            method, session, d = waiter
            if msg.get("method") == method and msg.get("sessionId") == session:
                self.event_waiters.remove(waiter)
                d.callback(msg.get("params", {}))

    def send(self, method: str, params: Optional[dict] = None,
             session: Optional[str] = None) -> Deferred:
        self.next_id += 1
        message: Dict[str, Any] = {"id": self.next_id, "method": method,
                                   "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        d: Deferred = Deferred()
        self.replies[self.next_id] = d
        self.conn.put(json.dumps(message))
        return bounded(d, BROWSER_WAIT)

    def event(self, method: str, session: str) -> Deferred:
        d: Deferred = Deferred()
        self.event_waiters.append((method, session, d))
        return bounded(d, BROWSER_WAIT)


class Page:
    """One browser tab attached through a flat DevTools session."""

    def __init__(self, devtools: DevTools, session: str) -> None:
        self.devtools = devtools
        self.session = session

    async def navigate(self, url: str) -> None:
        await self.devtools.send("Page.enable", session=self.session)
        loaded = self.devtools.event("Page.loadEventFired", self.session)
        await self.devtools.send("Page.navigate", {"url": url}, self.session)
        await loaded

    async def evaluate(self, expression: str) -> Any:
        result = await self.devtools.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            self.session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def when(self, condition: str) -> Any:
        """Resolve once the JS ``condition`` holds, re-checked on every DOM change."""
        return self.evaluate(f"""new Promise(resolve => {{
            const ok = () => {{ try {{ return {condition}; }} catch (e) {{ return false; }} }};
            if (ok()) {{ resolve(true); return; }}
            const watcher = new MutationObserver(() => {{
                if (ok()) {{ watcher.disconnect(); resolve(true); }}
            }});
            watcher.observe(document.documentElement,
                            {{subtree: true, childList: true, attributes: true,
                              characterData: true}});
        }})""")

    def messages(self) -> Any:
        return self.evaluate(
            "Array.from(document.querySelectorAll('#messages li')).map(li => li.textContent)")

    def shows(self, text: str) -> Any:
        return self.when(
            "Array.from(document.querySelectorAll('#messages li'))"
            f".some(li => li.textContent === {json.dumps(text)})")


class ChatPageInChromium(unittest.TestCase):
    if CHROMIUM is None:
        skip = "Chromium is not installed (Debian package 'chromium')"

    async def start_browser(self) -> DevTools:
        browser = ChromiumProcess()
        profile = self.mktemp()
        transport = reactor.spawnProcess(
            browser, CHROMIUM, [CHROMIUM] + FLAGS + [f"--user-data-dir={profile}",
                                                    "about:blank"],
            env=None)

        async def stop() -> None:
            if not browser.ended.called:
                transport.signalProcess("KILL")
            await bounded(browser.ended, BROWSER_WAIT)
        self.addCleanup(stop)
        url = await bounded(browser.devtools_url, BROWSER_WAIT)
        conn = await bounded(websocket_client(url, max_message_size=64 * 1024 * 1024,
                                              ping_interval=None), BROWSER_WAIT)

        async def disconnect() -> None:
            conn.close()
            await bounded(closed(conn))
        self.addCleanup(disconnect)
        return DevTools(conn)

    async def open_page(self, devtools: DevTools, url: str) -> Page:
        target = await devtools.send("Target.createTarget", {"url": "about:blank"})
        attached = await devtools.send("Target.attachToTarget",
                                       {"targetId": target["targetId"], "flatten": True})
        page = Page(devtools, attached["sessionId"])
        await page.navigate(url)
        return page

    async def _chat(self) -> None:
        harness = Harness(self)
        devtools = await self.start_browser()

        bob = await harness.client("/chat")
        await s.put_all(bob, [ROOM, "Bob"])
        await bob.put("anyone here?")
        self.assertEqual(await take_n(bob, 1), ["Bob: anyone here?"])  # Bob is in

        page_url = (f"http://127.0.0.1:{harness.server.port}/"
                    f"?room={quote(ROOM)}&name=Alice")
        alice = await self.open_page(devtools, page_url)
        await bounded(alice.when("document.body.dataset.state === 'joined'"), BROWSER_WAIT)
        await bounded(harness.bus.when(lambda: len(harness.bus.downstream(ROOM)) == 2))

        # Alice types a line in the page and presses Send.
        await alice.evaluate("document.getElementById('message').focus()")
        await devtools.send("Input.insertText", {"text": "hello from the browser"},
                            alice.session)
        await alice.evaluate("document.getElementById('send-button').click()")
        self.assertEqual(await take_n(bob, 1), ["Alice: hello from the browser"])
        await bounded(alice.shows("Alice: hello from the browser"), BROWSER_WAIT)

        # Bob answers from Python; the page shows it.
        await bob.put("hi Alice")
        await bounded(alice.shows("Bob: hi Alice"), BROWSER_WAIT)
        self.assertEqual(await alice.messages(),
                         ["Alice: hello from the browser", "Bob: hi Alice"])
        self.assertEqual(await take_n(bob, 1), ["Bob: hi Alice"])

        # Closing the tab leaves the room; Bob is unaffected.
        await devtools.send("Target.closeTarget", {"targetId": await self._target_of(
            devtools, alice)})
        await bounded(harness.bus.when(lambda: len(harness.bus.downstream(ROOM)) == 1),
                      BROWSER_WAIT)
        await bob.put("still here")
        self.assertEqual(await take_n(bob, 1), ["Bob: still here"])

    async def _target_of(self, devtools: DevTools, page: Page) -> str:
        info = await devtools.send("Target.getTargetInfo", session=page.session)
        return str(info["targetInfo"]["targetId"])

    def test_line_typed_in_page_reaches_python_client_and_back(self) -> Any:
        return defer.ensureDeferred(self._chat())

    async def _page_served(self) -> None:
        harness = Harness(self)
        devtools = await self.start_browser()
        page = await self.open_page(devtools, f"http://127.0.0.1:{harness.server.port}/")
        self.assertEqual(await page.evaluate("document.title"), "twisted_aleph chat")
        self.assertEqual(await page.evaluate("document.body.dataset.state || 'idle'"), "idle")
        self.assertEqual(harness.bus.topics(), [])  # nobody joined without a room

    def test_page_without_parameters_waits_for_the_form(self) -> Any:
        return defer.ensureDeferred(self._page_served())
