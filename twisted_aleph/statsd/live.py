"""The live page: a small chart per metric, updated at every flush over a WebSocket.

``aleph-statsd --http PORT`` serves it (:func:`serve_live`); any Klein app
can mount it (:func:`add_routes`, e.g. under ``/statsd`` in ``aleph-http``).

* :class:`LiveFeed` reads the server's ``rollups`` stream and keeps the
  last ``window`` seconds of one figure per series (a counter's count, a
  gauge's value, a timer's mean, a set's size), for at most ``max_series``
  series (the first seen; the others are counted as hidden);
* every browser connected to ``/ws`` gets a snapshot of that history, then
  one small JSON message per flush. Each browser has a
  :class:`LiveClient`: one message in flight, and at most one waiting (the
  newest, which replaces an older one not sent yet). A browser that reads
  slowly gets fewer updates; the server never queues more for it;
* the page (``static/live.html`` and ``live.js``, a few hundred lines of
  plain JavaScript drawing SVG) comes with the package: no CDN, no library.
"""

from __future__ import annotations

import json
import math
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Deque, Dict, Optional, Set, Tuple

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from twisted_aleph import stream as s
from twisted_aleph.http import NotAWebSocket, start_server, websocket_connection
from twisted_aleph.statsd_protocol import Rollup

if TYPE_CHECKING:
    from twisted_aleph.statsd.server import StatsdServer

log = Logger()

STATIC = Path(__file__).parent / "static"
#: seconds of history each chart shows.
DEFAULT_WINDOW = 600.0
#: series charted at most (memory: series x window / flush interval numbers).
DEFAULT_MAX_SERIES = 200
#: the most series ``max_series`` may ask for: a flush message (about 300
#: bytes per series at most: a 256-byte name and a number) stays under
#: :data:`MAX_MESSAGE`.
MAX_SERIES_LIMIT = 50_000
#: numbers in a snapshot at most: a longer history is thinned (every k-th flush,
#: the newest kept), so a snapshot stays a few MB whatever the window.
MAX_SNAPSHOT_VALUES = 500_000
#: the WebSocket's message size limit, both ways (the page sends nothing).
MAX_MESSAGE = 16 * 1024 * 1024


def chart_values(rollup: Rollup) -> Dict[str, float]:
    """The figure each series is charted by: ``counters.<name>`` (count),
    ``gauges.<name>``, ``timers.<name>`` (mean), ``sets.<name>`` (size)."""
    values: Dict[str, float] = {}
    for name, total in rollup.counters.items():
        values["counters." + name] = total
    for name, value in rollup.gauges.items():
        values["gauges." + name] = value
    for name, stats in rollup.timers.items():
        mean = stats.get("mean")
        if mean is not None:
            values["timers." + name] = mean
    for name, count in rollup.sets.items():
        values["sets." + name] = float(count)
    return values


class LiveClient:
    """One browser's WebSocket: one message in flight, at most one waiting.

    ``send`` while a message is in flight keeps only the newest (an older
    one waiting is dropped, counted in ``skipped``): a slow reader costs one
    message of memory, whatever the flush rate.
    """

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.in_flight = False
        self.waiting: Optional[str] = None
        self.sent = 0
        self.skipped = 0

    def send(self, message: str) -> None:
        if self.in_flight:
            if self.waiting is not None:
                self.skipped += 1
            self.waiting = message
            return
        put = self.conn.put(message)
        self.sent += 1
        if not put.called:
            self.in_flight = True
            put.addBoth(self._sent)

    def _sent(self, result: Any) -> None:
        self.in_flight = False
        message, self.waiting = self.waiting, None
        if message is not None and result is True:
            self.send(message)


class LiveFeed:
    """Recent history per series, from ``rollups``, to every browser at its own pace."""

    def __init__(self, *, window: float = DEFAULT_WINDOW,
                 max_series: int = DEFAULT_MAX_SERIES) -> None:
        if window <= 0 or not 1 <= max_series <= MAX_SERIES_LIMIT:
            raise ValueError(f"window > 0 and 1 <= max_series <= {MAX_SERIES_LIMIT}")
        self.window = window
        self.max_series = max_series
        self.interval = 1.0
        self.history: Deque[Tuple[float, Dict[str, float]]] = deque()
        #: charted series -> the time of their last value
        self.series: Dict[str, float] = {}
        #: series left out of the last flush because max_series were charted
        self.hidden = 0
        self.clients: Set[LiveClient] = set()
        self.flushes = 0
        self._snapshot: Optional[str] = None

    def follow(self, rollups: Any) -> Deferred:
        """Read every rollup of the stream ``rollups`` (until it is drained)."""
        return s.consume(self.add_rollup, rollups)

    def add_rollup(self, rollup: Rollup) -> None:
        """Record one flush and send it to every browser."""
        try:
            message = self._record(rollup)
        except Exception:
            log.failure("statsd live page: could not record a flush")
            return
        for client in list(self.clients):
            client.send(message)

    def _record(self, rollup: Rollup) -> str:
        now = float(rollup.timestamp)
        self.flushes += 1
        self.interval = rollup.interval or self.interval
        points = max(2, int(math.ceil(self.window / self.interval)) + 1)
        if self.history.maxlen != points:
            self.history = deque(self.history, maxlen=points)
        shown: Dict[str, float] = {}
        hidden = 0
        series = self.series
        for name, value in chart_values(rollup).items():
            if name in series or len(series) < self.max_series:
                series[name] = now
                shown[name] = value
            else:
                hidden += 1
        horizon = now - self.window
        for name in [name for name, last in series.items() if last < horizon]:
            del series[name]
        self.hidden = hidden
        self.history.append((now, shown))
        self._snapshot = None
        return json.dumps({"type": "flush", "t": now, "interval": self.interval,
                           "window": self.window, "values": shown, "hidden": hidden},
                          separators=(",", ":"))

    def snapshot(self) -> str:
        """The whole window as one message (made once per flush, however many ask)."""
        if self._snapshot is None:
            history = list(self.history)
            stride = -(-len(history) * max(len(self.series), 1) // MAX_SNAPSHOT_VALUES)
            if stride > 1:
                history = history[::-stride][::-1]
            self._snapshot = json.dumps({
                "type": "snapshot", "t": [t for t, _ in history], "interval": self.interval,
                "window": self.window, "hidden": self.hidden,
                "series": {name: [values.get(name) for _, values in history]
                           for name in self.series}},
                separators=(",", ":"))
        return self._snapshot

    def connect(self, conn: Any) -> LiveClient:
        """Serve one browser's WebSocket: the snapshot, then every flush."""
        client = LiveClient(conn)
        self.clients.add(client)
        conn.on_closed(lambda: self.clients.discard(client))
        # The page says nothing; what it sends is read and dropped, so that
        # pings, pongs and the close frame keep flowing.
        s.consume(lambda _: None, conn)
        client.send(self.snapshot())
        return client


def _static(name: str, content_type: str) -> Dict[str, Any]:
    return {"status": 200,
            "headers": {"content-type": content_type, "cache-control": "no-cache"},
            "body": (STATIC / name).read_bytes()}


def add_routes(app: Klein, feed: LiveFeed, prefix: str = "") -> None:
    """Mount the page on ``app``: ``{prefix}/`` (the page), ``{prefix}/live.js``,
    ``{prefix}/ws`` (the WebSocket) and ``{prefix}/snapshot.json``."""
    tag = prefix.strip("/").replace("/", "_") or "root"

    def page(request: Any) -> Dict[str, Any]:
        return _static("live.html", "text/html; charset=utf-8")

    def script(request: Any) -> Dict[str, Any]:
        return _static("live.js", "application/javascript; charset=utf-8")

    def snapshot(request: Any) -> Dict[str, Any]:
        return {"status": 200, "headers": {"content-type": "application/json"},
                "body": feed.snapshot()}

    async def updates(request: Any) -> Optional[Dict[str, Any]]:
        try:
            conn = await websocket_connection(request, max_message_size=MAX_MESSAGE)
        except NotAWebSocket:
            return {"status": 400, "headers": {"content-type": "application/text"},
                    "body": "Expected a websocket request."}
        feed.connect(conn)
        return None

    for path, handler in (("/", page), ("/live.js", script), ("/snapshot.json", snapshot),
                          ("/ws", updates)):
        app.route(prefix + path, methods=["GET"],
                  endpoint=f"statsd_live_{tag}_{path.strip('/') or 'page'}")(handler)


class LivePage:
    """The live page served on its own port: ``feed`` and the HTTP ``server``."""

    def __init__(self, feed: LiveFeed, server: Any) -> None:
        self.feed = feed
        self.server = server

    @property
    def port(self) -> int:
        return int(self.server.port)

    def close(self) -> Deferred:
        """Stop serving: the port, open pages and their WebSockets."""
        return self.server.close()  # type: ignore[no-any-return]


def serve_live(server: "StatsdServer", port: int, *, interface: str = "127.0.0.1",
               reactor: Any = None, window: float = DEFAULT_WINDOW,
               max_series: int = DEFAULT_MAX_SERIES) -> LivePage:
    """Serve the live page of ``server`` (which it follows through
    ``server.rollups``) on HTTP ``port`` (0: any free one)."""
    feed = LiveFeed(window=window, max_series=max_series)
    feed.follow(server.rollups)
    app = Klein()
    add_routes(app, feed)
    return LivePage(feed, start_server(app, port, interface=interface, reactor=reactor))


__all__ = ["LiveFeed", "LiveClient", "LivePage", "chart_values", "add_routes", "serve_live",
           "DEFAULT_WINDOW", "DEFAULT_MAX_SERIES"]
