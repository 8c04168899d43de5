"""One logging policy for bad input from peers.

A server that logs every malformed frame, datagram or request in full hands
each peer a lever on its disk and its reactor: one 16 MiB bad frame logged
whole is 16 MiB of log, a thousand tiny bad frames a thousand lines. So
every transport reports a peer's bad input through a :class:`PeerLog`:

* at most one line per peer per ``interval`` seconds, and at most
  ``max_lines`` lines per interval over all peers (a flood from many
  addresses stays a trickle); what was held back is counted and said in the
  next line;
* at warning level, never with a traceback (a peer's mistake is not the
  server's bug; tracebacks are for the server's own errors);
* with a short repr of the offending payload (:func:`excerpt`, at most
  ``max_excerpt`` bytes of it);
* counted per kind in :attr:`PeerLog.counts` whether logged or not, so an
  operator can watch the numbers instead of the log.

The peer table is bounded: at most ``max_peers`` addresses are remembered;
past that the expired ones are swept, and if none has expired the global
limit alone applies to the new address. The time comes from an injected
clock (any ``IReactorTime``), so tests use ``task.Clock``.
"""

from __future__ import annotations

import reprlib
from typing import Any, Dict, Optional, Tuple, Union

from twisted.logger import Logger

#: seconds between two lines about the same peer
DEFAULT_INTERVAL = 10.0
#: lines per interval over all peers
DEFAULT_MAX_LINES = 20
#: bytes of an offending payload shown in a log line
DEFAULT_MAX_EXCERPT = 200
#: peers remembered at once (bounds the table a flood of addresses could grow)
DEFAULT_MAX_PEERS = 4096


class LogThrottle:
    """Allow one log line per ``interval`` seconds; count what was held back.

    Pure bookkeeping (the caller passes the time): ``allow(now)`` answers
    ``(True, suppressed_since_last)`` when a line may be logged.
    """

    __slots__ = ("interval", "_next", "_suppressed")

    def __init__(self, interval: float = DEFAULT_INTERVAL) -> None:
        self.interval = interval
        self._next = float("-inf")
        self._suppressed = 0

    def allow(self, now: float) -> Tuple[bool, int]:
        """``(may_log, lines_suppressed_since_last)`` at time ``now``."""
        if now < self._next:
            self._suppressed += 1
            return False, 0
        self._next = now + self.interval
        suppressed, self._suppressed = self._suppressed, 0
        return True, suppressed


def excerpt(payload: Union[bytes, bytearray, memoryview, str, Any],
            limit: int = DEFAULT_MAX_EXCERPT) -> str:
    """A short printable repr of ``payload``: its first ``limit`` bytes (or
    characters), and its size when cut. Costs O(limit), whatever its size."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        size = len(payload)
        head = repr(bytes(payload[:limit]))
        unit = "bytes"
    else:
        if not isinstance(payload, str):
            payload = _short_repr(payload, limit)
        size = len(payload)
        head = repr(payload[:limit])
        unit = "characters"
    if size > limit:
        return f"{head}... ({size:,} {unit})"
    return head


def _short_repr(value: Any, limit: int) -> str:
    """``repr(value)`` with containers and numbers cut short (``reprlib``),
    so a huge value is never written out whole."""
    if isinstance(value, int) and value.bit_length() > 4 * limit:
        return f"<int of {value.bit_length():,} bits>"
    shortener = reprlib.Repr()
    shortener.maxstring = shortener.maxother = shortener.maxlong = max(limit, 8)
    try:
        return shortener.repr(value)
    except Exception:
        return f"<{type(value).__name__}>"


class PeerLog:
    """Report peers' bad input: rate-limited per peer and overall, truncated,
    counted, never a traceback.

    ``name`` prefixes every line (e.g. ``"aleph-tcp"``); ``clock`` is the
    reactor (or a ``task.Clock``) whose ``seconds()`` times the intervals.
    """

    def __init__(self, name: str, *, clock: Any = None,
                 interval: float = DEFAULT_INTERVAL, max_lines: int = DEFAULT_MAX_LINES,
                 max_excerpt: int = DEFAULT_MAX_EXCERPT, max_peers: int = DEFAULT_MAX_PEERS,
                 logger: Optional[Logger] = None) -> None:
        if interval < 0 or max_lines < 1 or max_excerpt < 0 or max_peers < 1:
            raise ValueError("interval >= 0, max_lines >= 1, max_excerpt >= 0, max_peers >= 1")
        self.name = name
        self.interval = interval
        self.max_lines = max_lines
        self.max_excerpt = max_excerpt
        self.max_peers = max_peers
        #: bad inputs seen, by kind, logged or not
        self.counts: Dict[str, int] = {}
        #: lines held back by the limits since the process started
        self.suppressed = 0
        self._clock = clock
        self._log = logger if logger is not None else Logger(namespace=f"twisted_aleph.{name}")
        self._peers: Dict[str, float] = {}  # peer -> time its next line may be logged
        self._held: Dict[str, int] = {}  # peer -> lines held back since its last one
        self._window_start = float("-inf")
        self._window_lines = 0

    @property
    def total(self) -> int:
        """Bad inputs seen, all kinds together."""
        return sum(self.counts.values())

    def bad_input(self, peer: Any, kind: str, detail: Any = "",
                  payload: Any = None) -> bool:
        """Count one bad input of ``kind`` (a short fixed word such as
        ``"bad frame"``) from ``peer`` (an address; its host is the key), and
        log it unless a limit holds it back. ``detail`` is the error (its
        ``str`` is cut to ``max_excerpt`` too); ``payload`` the offending bytes,
        if any. Returns whether a line was logged."""
        self.counts[kind] = self.counts.get(kind, 0) + 1
        key = peer_key(peer)
        now = self._now()
        if not self._may_log(key, now):
            self.suppressed += 1
            self._held[key] = self._held.get(key, 0) + 1
            return False
        held = self._held.pop(key, 0)
        text = _cut(str(detail), self.max_excerpt)
        more = f" ({held} more from this peer held back)" if held else ""
        shown = f": {excerpt(payload, self.max_excerpt)}" if payload is not None else ""
        self._log.warn("{name}: {kind} from {peer}: {detail}{shown}{more}",
                       name=self.name, kind=kind, peer=key, detail=text, shown=shown,
                       more=more, held_back=held)
        return True

    def _may_log(self, key: str, now: float) -> bool:
        if now >= self._window_start + self.interval:
            self._window_start = now
            self._window_lines = 0
        if self._window_lines >= self.max_lines:
            return False
        peers = self._peers
        next_time = peers.get(key)
        if next_time is not None and now < next_time:
            return False
        if next_time is None and len(peers) >= self.max_peers:
            self._sweep(now)
        if len(peers) < self.max_peers or key in peers:
            peers[key] = now + self.interval
        self._window_lines += 1
        return True

    def _sweep(self, now: float) -> None:
        """Forget the peers whose interval is over (and what was held for them)."""
        for key in [k for k, t in self._peers.items() if t <= now]:
            del self._peers[key]
            self._held.pop(key, None)

    def _now(self) -> float:
        clock = self._clock
        if clock is None:
            from twisted.internet import reactor as clock
            self._clock = clock
        return float(clock.seconds())


def peer_key(peer: Any) -> str:
    """The part of a peer's address that identifies it for the limits: the
    host of an ``IAddress`` or ``(host, port)`` tuple, else ``str(peer)``."""
    host = getattr(peer, "host", None)
    if host is not None:
        return str(host)
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


__all__ = ["PeerLog", "LogThrottle", "excerpt", "peer_key", "DEFAULT_INTERVAL",
           "DEFAULT_MAX_LINES", "DEFAULT_MAX_EXCERPT", "DEFAULT_MAX_PEERS"]
