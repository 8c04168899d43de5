"""The statsd live page in headless Chromium, driven over the DevTools protocol.

Metrics go to a real statsd server over UDP; the test waits for them to
arrive (an event on the server's protocol), flushes (the flush timer is a
``task.Clock`` the test advances), then waits for the page to apply the
flush (``awaitPromise`` on a MutationObserver, each wait bounded), and checks
the DOM (the values shown, the charts' points) and a screenshot (a PNG of
the page, in which the charts' stroke colour is drawn). Skipped only where
Chromium is not installed. The browser helpers are those of the chat page's
test (``tests/test_websocket_browser.py``).
"""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path
from typing import Any, Dict, List, Tuple

from twisted.internet import defer, reactor, task
from twisted.internet.defer import Deferred
from twisted.trial import unittest

from tests.test_websocket import bounded
from tests import test_websocket_browser as browser
from tests.test_websocket_browser import BROWSER_WAIT, CHROMIUM, Page
from twisted_aleph import statsd

#: the charts' stroke colour in live.html (#2f6fdb)
STROKE = (0x2F, 0x6F, 0xDB)


def png_pixels(png: bytes) -> Tuple[int, int, List[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit, non-interlaced PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        data = png[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = data
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: List[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) \
                    & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, [bytes(r) for r in rows] if bpp == 3 else [
        b"".join(r[i:i + 3] for i in range(0, len(r), 4)) for r in rows]


class ArrivalWatch:
    """Fires ``arrived(n)`` once the server's protocol has seen ``n`` datagrams."""

    def __init__(self, protocol: Any) -> None:
        self.count = 0
        self.waiting: List[Tuple[int, Deferred]] = []
        received = protocol.datagramReceived

        def counting(data: bytes, addr: Any) -> None:
            received(data, addr)
            self.count += 1
            for n, d in list(self.waiting):
                if self.count >= n:
                    self.waiting.remove((n, d))
                    d.callback(None)
        protocol.datagramReceived = counting

    def arrived(self, n: int) -> Deferred:
        d: Deferred = Deferred()
        self.waiting.append((n, d))
        if self.count >= n:
            self.waiting.remove((n, d))
            d.callback(None)
        return bounded(d)


class LivePageInChromium(unittest.TestCase):
    if CHROMIUM is None:
        skip = "Chromium is not installed (Debian package 'chromium')"

    # (the module, not the class, is imported: trial would run its tests here too)
    start_browser = browser.ChatPageInChromium.start_browser
    open_page = browser.ChatPageInChromium.open_page

    async def _live(self) -> None:
        clock = task.Clock()
        server = statsd.start_server(0, interface="127.0.0.1", clock=clock, reactor=reactor,
                                     http_port=0)
        self.addCleanup(server.close)
        watch = ArrivalWatch(server.listening_port.protocol)
        page_port = server.attached[0].port
        client = await bounded(statsd.client("127.0.0.1", server.port))
        self.addCleanup(lambda: (client.close(), client.socket.when_closed())[1])

        devtools = await self.start_browser()
        page: Page = await self.open_page(devtools, f"http://127.0.0.1:{page_port}/")
        await devtools.send("Emulation.setDeviceMetricsOverride",
                            {"width": 1000, "height": 700, "deviceScaleFactor": 1,
                             "mobile": False}, page.session)
        # the snapshot (empty) has been applied: flushes counts the messages
        await bounded(page.when("document.body.dataset.flushes === '1'"), BROWSER_WAIT)
        self.assertEqual(await page.evaluate("document.getElementById('status').dataset.state"),
                         "connected")

        # first flush
        await client.increment("live.hits", 3)
        await client.increment("live.hits", 1, tags={"env": "prod"})
        await client.gauge("live.temp", 21.5)
        await client.timing("live.rt", 10)
        await client.timing("live.rt", 30)
        await client.unique("live.users", "ann")
        await watch.arrived(6)
        clock.advance(1.0)
        await bounded(page.when("document.body.dataset.flushes === '2'"), BROWSER_WAIT)
        cards = await self.cards(page)
        self.assertEqual({k: cards[k]["value"] for k in (
            "counters.live.hits", "counters.live.hits;env=prod", "gauges.live.temp",
            "timers.live.rt", "sets.live.users")},
            {"counters.live.hits": "3", "counters.live.hits;env=prod": "1",
             "gauges.live.temp": "21.5", "timers.live.rt": "20", "sets.live.users": "1"})
        self.assertEqual(cards["gauges.live.temp"]["last"], "21.5")
        self.assertEqual(cards["gauges.live.temp"]["npoints"], 1)
        self.assertEqual(cards["counters.statsd.packets_received"]["value"], "6")

        # second flush: the gauge rises, the counter is not sent again
        await client.gauge("live.temp", 25)
        await watch.arrived(7)
        clock.advance(1.0)
        await bounded(page.when("document.body.dataset.flushes === '3'"), BROWSER_WAIT)
        cards = await self.cards(page)
        temp = cards["gauges.live.temp"]
        self.assertEqual((temp["value"], temp["npoints"]), ("25", 2))
        (x1, y1), (x2, y2) = temp["points"]
        self.assertLess(x1, x2)  # later to the right
        self.assertLess(y2, y1)  # higher value drawn higher
        self.assertEqual(cards["counters.live.hits"]["npoints"], 1)
        self.assertIn("min 21.5", temp["range"])
        self.assertIn("max 25", temp["range"])

        # the DOM as served, and what the page looks like
        dom = await page.evaluate("document.documentElement.outerHTML")
        self.assertIn('data-series="gauges.live.temp"', dom)
        self.assertNotIn("cdn", dom.lower())
        shot = await devtools.send("Page.captureScreenshot", {"format": "png"}, page.session)
        png = base64.b64decode(shot["data"])
        Path(self.mktemp() + ".png").write_bytes(png)  # kept in _trial_temp for a look
        width, height, rows = png_pixels(png)
        self.assertEqual((width, height), (1000, 700))
        stroke = sum(1 for row in rows for i in range(0, len(row), 3)
                     if _near(row[i:i + 3], STROKE))
        self.assertGreater(stroke, 50)  # the charts' lines and dots are drawn

    async def cards(self, page: Page) -> Dict[str, Dict[str, Any]]:
        """Each chart card: its value, data-last, points (x, y) and range text."""
        found = await page.evaluate("""Array.from(document.querySelectorAll('.metric')).map(c => ({
            series: c.dataset.series, last: c.dataset.last,
            npoints: Number(c.dataset.points),
            value: c.querySelector('.value').textContent,
            range: c.querySelector('.range').textContent,
            points: c.querySelector('polyline').getAttribute('points')}))""")
        return {c["series"]: {**c, "points": [tuple(float(v) for v in p.split(","))
                                              for p in c["points"].split()]}
                for c in found}

    def test_metrics_reach_the_charts_at_each_flush(self) -> Any:
        return defer.ensureDeferred(self._live())


def _near(pixel: bytes, color: Tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(p - c) <= tolerance for p, c in zip(pixel, color))
