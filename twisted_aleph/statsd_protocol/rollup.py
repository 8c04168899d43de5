"""The statsd rollup: metrics accumulated between flushes, and what a flush sends.

:class:`StatsdRollup` folds parsed lines (or whole datagrams, through an
inlined fast path) into per-series state; :meth:`StatsdRollup.flush` turns an
interval into an immutable :class:`Rollup`, which renders itself in Graphite's
plaintext protocol (Etsy's names, with Etsy's ``prefix*``/``suffix`` options
in :class:`GraphiteNames`, tagged series as ``path;k=v``).

Lifetimes, as Etsy's ``deleteIdleStats``: after a flush, counters, timers
and sets of the types in ``delete_idle`` are forgotten (the default: they
reappear when they are next sent to), those of the other types stay and are
sent as zeros; a gauge is sent until it has not been updated for
``gauge_ttl`` flushes, then forgotten (``gauges`` in ``delete_idle`` is a TTL
of one flush; a TTL of 0 keeps gauges for good).

Bounded state: at most ``max_metrics`` series are held (a new one past that
is counted in ``statsd.dropped_new_metrics`` and never stored), and their
estimated size (names, timings, set members: :data:`SERIES_COST`,
:data:`TIMER_VALUE_COST`, :data:`SET_MEMBER_COST`) stays under
``max_state_bytes`` (a new series past it is dropped the same way; a timing or
set member past it is counted in ``statsd.dropped_values``).

Cost: parsing is O(len(datagram)); the hot path (:meth:`StatsdRollup.add_packet`)
handles the common lines inline, without a :class:`Metric` per line (about
0.7 us for ``name:1|c`` on CPython 3.11); a flush is O(series + timings).
"""

from __future__ import annotations

import math
import re
from typing import (
    Any, Callable, Dict, FrozenSet, Iterable, Iterator, List, NamedTuple, Optional, Sequence,
    Set, Tuple,
)

from twisted_aleph.statsd_protocol.lines import (
    COUNTER, DEFAULT_MAX_NAME_BYTES, GAUGE, TIMER, BadLine, Metric, format_number, parse_line,
    parse_tags, series_name, split_lines,
)

#: the counter that counts lines which failed to parse (Etsy: bad_lines_seen).
BAD_LINES = "statsd.bad_lines"
PACKETS_RECEIVED = "statsd.packets_received"
METRICS_RECEIVED = "statsd.metrics_received"
#: new series refused because ``max_metrics`` or ``max_state_bytes`` was reached.
DROPPED_NEW_METRICS = "statsd.dropped_new_metrics"
#: timings and set members refused because ``max_state_bytes`` was reached.
DROPPED_VALUES = "statsd.dropped_values"
#: the internal counters every rollup reports, by short name (``statsd.`` + it).
INTERNAL = ("packets_received", "metrics_received", "bad_lines", "dropped_new_metrics",
            "dropped_values")

#: series held at most (all types together); a new one past it is dropped, counted.
DEFAULT_MAX_METRICS = 100_000
#: estimated bytes of state held at most (names, timings, set members).
DEFAULT_MAX_STATE_BYTES = 128 * 1024 * 1024
#: flushes a gauge is still sent for without an update (0: for good, as Etsy).
DEFAULT_GAUGE_TTL = 3600
#: the metric types, as ``delete_idle`` names them (Etsy's deleteCounters...).
METRIC_TYPES = ("counters", "gauges", "timers", "sets")
#: types whose idle series are forgotten at each flush unless told otherwise.
DEFAULT_DELETE_IDLE: FrozenSet[str] = frozenset({"counters", "timers", "sets"})
#: deprecated: a separate cap on gauges (now ``max_metrics`` covers every type).
DEFAULT_MAX_GAUGES = 100_000

#: estimated bytes a series costs beyond its name (dict slots, value, bookkeeping).
SERIES_COST = 200
#: bytes a timing costs until the flush (a list slot and a float).
TIMER_VALUE_COST = 32
#: bytes a set member costs beyond its length.
SET_MEMBER_COST = 64

#: Timings are sorted in runs of this many as they arrive (a power of two), so
#: that the flush's sort, on the reactor thread, only merges runs: ~1.3 ms
#: instead of ~4.7 ms for 32k random timings on CPython.
TIMER_RUN = 2048
_RUN_MASK = TIMER_RUN - 1
#: distinct tag texts whose rendering the fast path remembers (then it starts afresh).
TAG_CACHE_SIZE = 4096


class GraphiteNames(NamedTuple):
    """Where each figure goes in Graphite: Etsy's ``globalPrefix``,
    ``prefixCounter``, ``prefixTimer``, ``prefixGauge``, ``prefixSet`` and
    ``globalSuffix`` (an empty prefix leaves its segment out)."""

    prefix: str = "stats"
    counter: str = "counters"
    timer: str = "timers"
    gauge: str = "gauges"
    set: str = "sets"
    suffix: str = ""

    def namespace(self, kind: str) -> str:
        """``"stats.counters."`` for ``"counter"``: the path every series of that kind starts with."""
        parts = [p for p in (self.prefix, getattr(self, kind)) if p]
        return "".join(p + "." for p in parts)

    def check(self) -> "GraphiteNames":
        """Itself, or ValueError if a part would break a Graphite path."""
        for field, value in self._asdict().items():
            if value and not _PATH_OK(value):
                raise ValueError(f"graphite {field} {value!r}: use [A-Za-z0-9_.-], "
                                 "no leading or trailing '.'")
        return self


_PATH_OK = re.compile(r"[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*\Z").match


def _path(namespace: str, series: str, stat: str, suffix: str) -> str:
    """``namespace + name + stat + suffix``, the tags of a tagged series last."""
    if ";" in series:
        name, _, tags = series.partition(";")
        return f"{namespace}{name}{stat}{suffix};{tags}"
    return f"{namespace}{series}{stat}{suffix}"


class Rollup:
    """What one flush interval saw; immutable by convention.

    ``counters``: series -> total (already divided by sample rates), the
    internal ``statsd.*`` counters included; ``gauges``: series -> value;
    ``sets``: series -> number of distinct members; ``timers``: series ->
    dict of statistics (``count``, ``count_ps``, ``sum``, ``mean``,
    ``lower``, ``upper``, ``median``, ``upper_90``, ``mean_90``, ``sum_90``,
    ``count_90`` per configured percentile, ``histogram.bin_<limit>`` per
    bin); ``internal``: the internal counters (:data:`INTERNAL` under the
    rollup's ``stats_prefix``, and the glue's own), also in ``counters``.
    """

    __slots__ = ("timestamp", "interval", "counters", "gauges", "timers", "sets", "internal",
                 "stats_prefix")

    def __init__(self, timestamp: float, interval: float,
                 counters: Dict[str, float], gauges: Dict[str, float],
                 timers: Dict[str, Dict[str, float]], sets: Dict[str, int],
                 internal: Optional[Dict[str, float]] = None,
                 stats_prefix: str = "statsd") -> None:
        self.timestamp = timestamp
        self.interval = interval
        self.counters = counters
        self.gauges = gauges
        self.timers = timers
        self.sets = sets
        self.internal = internal or {}
        self.stats_prefix = stats_prefix

    def __repr__(self) -> str:
        return (f"<Rollup t={self.timestamp} counters={len(self.counters)}"
                f" gauges={len(self.gauges)} timers={len(self.timers)}"
                f" sets={len(self.sets)}>")

    @property
    def series(self) -> int:
        """Series in this rollup, the internal counters left out."""
        return (len(self.counters) - len(self.internal) + len(self.gauges) + len(self.timers)
                + len(self.sets))

    def items(self, names: Optional[GraphiteNames] = None,
              internal_first: bool = True) -> Iterator[Tuple[str, float]]:
        """Every figure as (Graphite path, value): the internal counters first
        (a capped payload never loses them; last with ``internal_first=False``),
        then counters, gauges, timers, sets."""
        if names is None:
            names = GraphiteNames()
        suffix = f".{names.suffix}" if names.suffix else ""
        interval = self.interval or 1.0
        ns = names.namespace("counter")
        internal = self.internal

        def counters(own: bool) -> Iterator[Tuple[str, float]]:
            for name, total in (internal.items() if own else self.counters.items()):
                if not own and name in internal:
                    continue
                yield _path(ns, name, ".count", suffix), total
                yield _path(ns, name, ".rate", suffix), total / interval

        if internal_first:
            yield from counters(True)
        yield from counters(False)
        gauges_ns = names.namespace("gauge")
        for name, value in self.gauges.items():
            yield _path(gauges_ns, name, "", suffix), value
        timers_ns = names.namespace("timer")
        for name, stats in self.timers.items():
            for stat, value in stats.items():
                yield _path(timers_ns, name, "." + stat, suffix), value
        sets_ns = names.namespace("set")
        for name, count in self.sets.items():
            yield _path(sets_ns, name, ".count", suffix), count
        if not internal_first:
            yield from counters(True)

    def flat(self, prefix: str = "stats",
             names: Optional[GraphiteNames] = None) -> Dict[str, float]:
        """Every figure under its Graphite name (Etsy's namespace):
        ``stats.counters.x.count``/``.rate``, ``stats.gauges.x``,
        ``stats.timers.x.<stat>``, ``stats.sets.x.count``."""
        return dict(self.items(names if names is not None else GraphiteNames(prefix)))

    def graphite_lines(self, prefix: str = "stats") -> bytes:
        """The rollup in Graphite's plaintext protocol: ``name value ts\\n``."""
        return self.graphite_payload(GraphiteNames(prefix))[0]

    def graphite_payload(self, names: Optional[GraphiteNames] = None,
                         max_bytes: Optional[int] = None) -> Tuple[bytes, int]:
        """(``name value ts\\n`` lines, number of lines left out): whole
        series are written, in :meth:`items`'s order, until the next would
        take the payload past ``max_bytes``; the rest are counted, not
        rendered, so a huge rollup costs little more than the cap."""
        if names is None:
            names = GraphiteNames()
        limit = max_bytes if max_bytes is not None else math.inf
        ts = f" {int(self.timestamp)}\n"
        sfx = f".{names.suffix}" if names.suffix else ""
        interval = self.interval or 1.0
        fmt = format_number
        internal = self.internal

        def counter(ns: str, name: str, total: float) -> str:
            base, sep, tags = name.partition(";")
            tags = sep + tags
            return (f"{ns}{base}.count{sfx}{tags} {fmt(total)}{ts}"
                    f"{ns}{base}.rate{sfx}{tags} {fmt(total / interval)}{ts}")

        def gauge(ns: str, name: str, value: float) -> str:
            base, sep, tags = name.partition(";")
            return f"{ns}{base}{sfx}{sep}{tags} {fmt(value)}{ts}"

        def timer(ns: str, name: str, stats: Dict[str, float]) -> str:
            base, sep, tags = name.partition(";")
            head, tail = f"{ns}{base}.", f"{sfx}{sep}{tags} "
            return "".join(f"{head}{stat}{tail}{fmt(value)}{ts}" for stat, value in stats.items())

        def one_set(ns: str, name: str, count: int) -> str:
            base, sep, tags = name.partition(";")
            return f"{ns}{base}.count{sfx}{sep}{tags} {count}{ts}"

        user_counters = [(k, v) for k, v in self.counters.items() if k not in internal]
        groups: List[Tuple[str, Any, Callable[..., str], Callable[[Any], int]]] = [
            (names.namespace("counter"), list(internal.items()), counter, lambda _: 2),
            (names.namespace("counter"), user_counters, counter, lambda _: 2),
            (names.namespace("gauge"), list(self.gauges.items()), gauge, lambda _: 1),
            (names.namespace("timer"), list(self.timers.items()), timer, len),
            (names.namespace("set"), list(self.sets.items()), one_set, lambda _: 1),
        ]
        out: List[str] = []
        size = 0
        for g, (ns, series, render, lines) in enumerate(groups):
            for i, (name, value) in enumerate(series):
                text = render(ns, name, value)
                size += len(text)
                if size > limit:
                    left_out = sum(lines(v) for _, v in series[i:])
                    left_out += sum(lines(v) for later in groups[g + 1:] for _, v in later[1])
                    return "".join(out).encode("ascii"), left_out
                out.append(text)
        return "".join(out).encode("ascii"), 0

    def console_text(self, names: Optional[GraphiteNames] = None) -> str:
        """Every figure as ``name value`` lines (the console backend's output),
        the server's own counters last."""
        return "\n".join(f"{name} {format_number(value)}"
                         for name, value in self.items(names, internal_first=False))

    def summary(self) -> str:
        """One line on the interval: series by type, datagrams, bad lines, drops."""
        p = self.stats_prefix

        def internal(short: str) -> float:
            return self.internal.get(f"{p}.{short}", 0.0)

        text = (f"{self.series} metrics ({len(self.counters) - len(self.internal)} counters,"
                f" {len(self.gauges)} gauges, {len(self.timers)} timers, {len(self.sets)} sets)"
                f" from {internal('packets_received'):.0f} datagrams,"
                f" {internal('bad_lines'):.0f} bad lines")
        new, values = internal("dropped_new_metrics"), internal("dropped_values")
        if new or values:
            text += f", {new:.0f} new metrics and {values:.0f} values dropped at the caps"
        return text


def timer_stats(values: Sequence[float], count: float, interval: float,
                percentiles: Iterable[float] = (90,),
                bins: Sequence[float] = ()) -> Dict[str, float]:
    """Etsy statsd's timer statistics over one interval's ``values``.

    ``count`` is the sample-rate-weighted number of timings (``1/rate`` each).
    For a percentile ``p``, the lowest ``round(p% * n)`` values give
    ``upper_p``, ``mean_p``, ``sum_p`` and ``count_p`` (``99.9`` is named
    ``99_9``); a negative ``p`` takes the highest values (``top10``).
    ``bins``: Etsy's histogram, ascending upper limits (``inf`` allowed):
    ``histogram.bin_<limit>`` counts the values below that limit and not below
    the previous one; values at or above the last finite limit are not counted.

    Sums are running sums over the sorted values, as Etsy's ``cumulativeValues``;
    the values are summed once whatever the percentiles (this runs on the
    reactor thread at every flush, over every timing of the interval).
    """
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        return {"count": count, "count_ps": count / (interval or 1.0)}
    # k -> the percentiles taking the lowest k values (or, negative, the highest n - k)
    cuts: Dict[int, List[float]] = {}
    for pct in percentiles:
        k = int(math.floor(abs(pct) / 100.0 * n + 0.5)) if n > 1 else n
        if k:
            cuts.setdefault(k if pct > 0 else n - k, []).append(pct)
    prefix = {0: 0.0}  # k -> sum of the lowest k values
    done = 0
    running = 0.0
    for k in sorted(cuts):
        running += sum(ordered[done:k])
        prefix[k] = running
        done = k
    total = running + sum(ordered[done:]) if done < n else running
    mid = n // 2
    median = ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    stats: Dict[str, float] = {
        "count": count,
        "count_ps": count / (interval or 1.0),
        "sum": total,
        "mean": total / n,
        "lower": ordered[0],
        "upper": ordered[-1],
        "median": median,
    }
    for cut, pcts in cuts.items():
        for pct in pcts:
            label = _percentile_label(pct)
            if pct > 0:
                k, chosen_sum = cut, prefix[cut]
                stats[f"upper_{label}"] = ordered[k - 1]
            else:
                k, chosen_sum = n - cut, total - prefix[cut]
                stats[f"lower_{label}"] = ordered[cut]
            stats[f"count_{label}"] = k
            stats[f"mean_{label}"] = chosen_sum / k
            stats[f"sum_{label}"] = chosen_sum
    i = 0
    for limit in bins:
        start = i
        while i < n and ordered[i] < limit:
            i += 1
        stats[f"histogram.bin_{_bin_label(limit)}"] = i - start
    return stats


def _percentile_label(pct: float) -> str:
    text = format_number(pct)
    return text.replace(".", "_").replace("-", "top")


def _bin_label(limit: float) -> str:
    return "inf" if limit == math.inf else format_number(limit).replace(".", "_", 1)


def parse_histogram(spec: str) -> Tuple[str, Tuple[float, ...]]:
    """``"name:10,100,inf"`` -> ``("name", (10.0, 100.0, inf))`` (Etsy's
    ``histogram`` entry: timers whose name contains ``name`` get these bins;
    an empty name matches every timer). ValueError unless the limits ascend."""
    name, sep, limits = spec.rpartition(":")
    if not sep:
        raise ValueError(f"histogram {spec!r}: want name:limit,limit,... (e.g. api:10,100,inf)")
    try:
        bins = tuple(math.inf if b.strip() == "inf" else float(b) for b in limits.split(","))
    except ValueError:
        raise ValueError(f"histogram {spec!r}: limits are numbers or 'inf'") from None
    if not bins or any(b != b for b in bins) or list(bins) != sorted(set(bins)):
        raise ValueError(f"histogram {spec!r}: limits must be distinct and ascending")
    return name, bins


def check_percentiles(percentiles: Iterable[float]) -> Tuple[float, ...]:
    """The timer percentiles as a tuple; ``ValueError`` unless each is finite
    with 0 < |p| <= 100 (150 or nan would make every flush fail)."""
    checked = tuple(float(p) for p in percentiles)
    for p in checked:
        if not (math.isfinite(p) and 0 < abs(p) <= 100):
            raise ValueError(f"a timer percentile is in (0, 100], or negative for the "
                             f"highest values; not {p}")
    return checked


def check_delete_idle(types: Iterable[str]) -> FrozenSet[str]:
    """``delete_idle`` as a frozenset; ValueError for a name not in :data:`METRIC_TYPES`."""
    chosen = frozenset(types)
    unknown = chosen - set(METRIC_TYPES)
    if unknown:
        raise ValueError(f"delete_idle: {', '.join(sorted(unknown))}: not one of "
                         f"{', '.join(METRIC_TYPES)}")
    return chosen


def _sort_last_run(values: List[float]) -> None:
    run = values[-TIMER_RUN:]
    run.sort()
    values[-TIMER_RUN:] = run


def _finite(total: float, name: str) -> float:
    """``total`` if finite; a value that overflows it is a bad line, not an inf
    sent to Graphite (and kept, for a gauge)."""
    if total - total != 0.0:
        raise BadLine("value overflows", name)
    return total


def _histogram_bins(histograms: Sequence[Tuple[str, Sequence[float]]],
                    series: str) -> Tuple[float, ...]:
    for name, bins in histograms:
        if name in series:
            return tuple(bins)
    return ()


class Interval:
    """One interval's raw figures, taken by :meth:`StatsdRollup.swap` and no
    longer touched by it: :meth:`rollup` (the timers' statistics, the costly
    part of a flush) may run in any thread."""

    __slots__ = ("timestamp", "interval", "counters", "gauges", "timers", "timer_counts",
                 "sets", "internal", "stats_prefix", "percentiles", "histograms")

    def __init__(self, timestamp: float, interval: float, counters: Dict[str, float],
                 gauges: Dict[str, float], timers: Dict[str, List[float]],
                 timer_counts: Dict[str, float], sets: Dict[str, int],
                 internal: Dict[str, float], stats_prefix: str,
                 percentiles: Sequence[float],
                 histograms: Sequence[Tuple[str, Sequence[float]]]) -> None:
        self.timestamp = timestamp
        self.interval = interval
        self.counters = counters
        self.gauges = gauges
        self.timers = timers
        self.timer_counts = timer_counts
        self.sets = sets
        self.internal = internal
        self.stats_prefix = stats_prefix
        self.percentiles = percentiles
        self.histograms = histograms

    @property
    def lines(self) -> int:
        """About how many Graphite lines the interval makes (a timer ~12)."""
        return 2 * len(self.counters) + len(self.gauges) + 12 * len(self.timers) + len(self.sets)

    def rollup(self) -> Rollup:
        """The interval's :class:`Rollup`, timer statistics computed."""
        histograms = self.histograms
        timers = {
            name: timer_stats(values, self.timer_counts[name], self.interval, self.percentiles,
                              _histogram_bins(histograms, name) if histograms else ())
            for name, values in self.timers.items()
        }
        return Rollup(self.timestamp, self.interval, self.counters, self.gauges, timers,
                      self.sets, self.internal, self.stats_prefix)


class StatsdRollup:
    """Accumulates metrics between flushes; ``flush()`` sends and restarts them.

    See the module docstring for lifetimes (``delete_idle``, ``gauge_ttl``)
    and bounds (``max_metrics``, ``max_state_bytes``, ``max_name_bytes``).
    ``histograms``: ``(name, bins)`` pairs (:func:`parse_histogram`), the
    first whose name a timer's contains gives its bins. ``stats_prefix``:
    Etsy's ``prefixStats``, the first part of the internal counters' names.
    ``max_gauges`` (deprecated) additionally caps gauges, a new one past it
    being a bad line, as before ``max_metrics`` existed.

    Not thread-safe: meant to be fed and flushed from the reactor thread.
    ``last_bad`` holds the most recent :class:`BadLine` and ``last_dropped``
    the most recent series refused at a cap (for a log line).
    """

    def __init__(self, percentiles: Sequence[float] = (90,),
                 max_gauges: Optional[int] = None, *,
                 max_metrics: int = DEFAULT_MAX_METRICS,
                 max_state_bytes: int = DEFAULT_MAX_STATE_BYTES,
                 max_name_bytes: int = DEFAULT_MAX_NAME_BYTES,
                 delete_idle: Iterable[str] = DEFAULT_DELETE_IDLE,
                 gauge_ttl: int = DEFAULT_GAUGE_TTL,
                 histograms: Sequence[Tuple[str, Sequence[float]]] = (),
                 stats_prefix: str = "statsd") -> None:
        if max_metrics < 0 or max_state_bytes < 0 or max_name_bytes < 1 or gauge_ttl < 0:
            raise ValueError("max_metrics, max_state_bytes, gauge_ttl >= 0; max_name_bytes >= 1")
        self.percentiles = check_percentiles(percentiles)
        self.max_gauges = max_gauges
        self.max_metrics = max_metrics
        self.max_state_bytes = max_state_bytes
        self.max_name_bytes = max_name_bytes
        self.delete_idle = check_delete_idle(delete_idle)
        self.gauge_ttl = 1 if "gauges" in self.delete_idle else gauge_ttl
        self.histograms = tuple((name, tuple(bins)) for name, bins in histograms)
        self.stats_prefix = stats_prefix
        self.internal_names = {short: f"{stats_prefix}.{short}" for short in INTERNAL}
        self._name_ok: Callable[[str], Any] = re.compile(
            r"[A-Za-z0-9_.\-]{1,%d}\Z" % max_name_bytes).match
        self.gauges: Dict[str, float] = {}
        #: series -> the flush count when the gauge was last updated
        self.gauge_updated: Dict[str, int] = {}
        self.counters: Dict[str, float] = {}
        self.timers: Dict[str, List[float]] = {}
        self.timer_counts: Dict[str, float] = {}
        self.sets: Dict[str, Set[str]] = {}
        #: estimated bytes of state held (see the module docstring)
        self.state_bytes = 0
        #: flushes done so far
        self.flushes = 0
        #: lifetime totals of the internal counters, by short name
        self.totals: Dict[str, float] = dict.fromkeys(INTERNAL, 0.0)
        self.last_bad: Optional[BadLine] = None
        self.last_dropped: Optional[str] = None
        self._tag_cache: Dict[str, str] = {}
        self._reset_interval()

    def _reset_interval(self) -> None:
        self.packets = 0
        self.metrics = 0
        self.bad_lines = 0
        self.dropped_new_metrics = 0
        self.dropped_values = 0

    @property
    def series(self) -> int:
        """Series held now, all types together."""
        return len(self.counters) + len(self.timers) + len(self.gauges) + len(self.sets)

    def _admit(self, series: str) -> bool:
        """May the new ``series`` be stored? If not, it is counted as dropped."""
        cost = len(series) + SERIES_COST
        if (len(self.counters) + len(self.timers) + len(self.gauges) + len(self.sets)
                < self.max_metrics and self.state_bytes + cost <= self.max_state_bytes):
            self.state_bytes += cost
            return True
        self.dropped_new_metrics += 1
        self.last_dropped = series
        return False

    def _admit_value(self, cost: int) -> bool:
        if self.state_bytes + cost <= self.max_state_bytes:
            self.state_bytes += cost
            return True
        self.dropped_values += 1
        return False

    def add(self, metric: Metric) -> None:
        """Fold one parsed metric into the current interval. A new series
        past the caps is counted and dropped; :class:`BadLine` for a total
        that overflows, or a new gauge past the deprecated ``max_gauges``."""
        name, kind, value, rate, delta = metric
        if kind == COUNTER:
            total = self.counters.get(name)
            new = _finite((total or 0.0) + value / rate, name)
            if total is None and not self._admit(name):
                return
            self.counters[name] = new
        elif kind == TIMER:
            values = self.timers.get(name)
            if values is None:
                if not self._admit(name):
                    return
                values = self.timers[name] = []
                self.timer_counts[name] = 0.0
            if not self._admit_value(TIMER_VALUE_COST):
                return
            values.append(value)
            self.timer_counts[name] += 1.0 / rate
            if not len(values) & _RUN_MASK:
                _sort_last_run(values)
        elif kind == GAUGE:
            old = self.gauges.get(name)
            new = _finite((old or 0.0) + value, name) if delta else value
            if old is None:
                if self.max_gauges is not None and len(self.gauges) >= self.max_gauges:
                    raise BadLine(f"more than {self.max_gauges} gauges", name)
                if not self._admit(name):
                    return
            self.gauges[name] = new
            self.gauge_updated[name] = self.flushes
        else:
            members = self.sets.get(name)
            if members is None:
                if not self._admit(name):
                    return
                members = self.sets[name] = set()
            if value not in members:
                if not self._admit_value(len(value) + SET_MEMBER_COST):
                    return
                members.add(value)
        self.metrics += 1

    def _tag_suffix(self, tag_text: str) -> Optional[str]:
        """``";k=v;k2=v2"`` for a valid DogStatsD tag text (``k2:v2,k:v``), or
        None; remembered for up to :data:`TAG_CACHE_SIZE` texts (each at most
        ``max_name_bytes`` long), since a client sends the same tags again and again."""
        suffix = self._tag_cache.get(tag_text)
        if suffix is not None or len(tag_text) > self.max_name_bytes:
            return suffix
        try:
            suffix = series_name("", parse_tags(tag_text))
        except BadLine:
            return None
        if len(self._tag_cache) >= TAG_CACHE_SIZE:
            self._tag_cache.clear()
        self._tag_cache[tag_text] = suffix
        return suffix

    def _add_tagged(self, name: str, value: str, kind: str) -> bool:
        """The fast path of a tagged line (``type[|@rate]|#tags`` in ``kind``):
        True once folded in (or dropped at a cap); False sends the line to the
        general parser, which says what is wrong with it (or takes the rarer
        forms: a gauge or set with a sample rate)."""
        kind, _, tag_text = kind.partition("|#")
        suffix = self._tag_suffix(tag_text)
        if suffix is None or not self._name_ok(name):
            return False
        series = name + suffix
        if len(series) > self.max_name_bytes:
            return False
        kind, _, rate_text = kind.partition("|@")
        if kind == "s":
            member = value.strip()
            if rate_text or not member or ":" in member:
                return False
            members = self.sets.get(series)
            if members is None:
                if not self._admit(series):
                    return True
                members = self.sets[series] = set()
            if member not in members:
                if not self._admit_value(len(member) + SET_MEMBER_COST):
                    return True
                members.add(member)
            self.metrics += 1
            return True
        try:
            v = float(value)
            rate = float(rate_text) if rate_text else 1.0
        except ValueError:
            return False
        if v - v != 0.0 or not 0.0 < rate <= 1.0 or "_" in value or "_" in rate_text:
            return False
        if kind == "c":
            total = self.counters.get(series)
            new = (total or 0.0) + v / rate
            if new - new != 0.0:
                return False
            if total is not None or self._admit(series):
                self.counters[series] = new
                self.metrics += 1
            return True
        if kind == "ms" or kind == "h":
            values = self.timers.get(series)
            if values is None:
                if not self._admit(series):
                    return True
                values = self.timers[series] = []
                self.timer_counts[series] = 0.0
            if self._admit_value(TIMER_VALUE_COST):
                values.append(v)
                self.timer_counts[series] += 1.0 / rate
                if not len(values) & _RUN_MASK:
                    _sort_last_run(values)
                self.metrics += 1
            return True
        if kind == "g" and not rate_text and self.max_gauges is None:
            old = self.gauges.get(series)
            if value.lstrip()[:1] in ("+", "-"):
                v += old or 0.0
                if v - v != 0.0:
                    return False
            if old is not None or self._admit(series):
                self.gauges[series] = v
                self.gauge_updated[series] = self.flushes
                self.metrics += 1
            return True
        return False

    def add_packet(self, data: bytes) -> int:
        """Parse and fold in one datagram; returns its number of bad lines.

        The common lines (``name:number|c``, ``|c|@rate``, ``|ms``, ``|g``,
        ``name:member|s``, with a clean name, with or without ``|#tags`` last,
        in an ASCII datagram) take an inlined fast path; anything else goes
        through :func:`parse_line`, so both accept the same language.
        """
        self.packets += 1
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            undecodable: List[BadLine] = []
            bad = self._add_lines(split_lines(data, undecodable))
            if undecodable:
                self.last_bad = undecodable[-1]
            return bad + self._count_bad(len(undecodable))
        if not text.isascii():  # no fast path: Unicode digits must not pass for numbers
            return self._add_lines(split_lines(data, []))
        lines = text.split("\n") if "\n" in text else (text,)
        slow: Optional[List[str]] = None
        counters = self.counters
        name_ok = self._name_ok
        for line in lines:
            name, _, rest = line.partition(":")
            value, _, kind = rest.partition("|")
            if kind == "c":
                total = counters.get(name)
                if total is not None or name_ok(name):
                    try:
                        v = float(value)
                    except ValueError:
                        v = math.nan
                    v += total or 0.0
                    # finite (the line's value, and the new total), ASCII digits only
                    if v - v == 0.0 and "_" not in value:
                        if total is not None or self._admit(name):
                            counters[name] = v
                            self.metrics += 1
                        continue
            elif kind[:3] == "c|@" and "|#" not in kind:
                if name_ok(name):
                    try:
                        v = float(value)
                        rate = float(kind[3:])
                    except ValueError:
                        v = rate = math.nan
                    if v - v == 0.0 and 0.0 < rate <= 1.0 and "_" not in rest:
                        total = counters.get(name)
                        v = (total or 0.0) + v / rate
                        if v - v == 0.0:
                            if total is not None or self._admit(name):
                                counters[name] = v
                                self.metrics += 1
                            continue
            elif kind == "s":
                member = value.strip()
                if member and ":" not in member and name_ok(name):
                    members = self.sets.get(name)
                    if members is None:
                        if not self._admit(name):
                            continue
                        members = self.sets[name] = set()
                    if member not in members:
                        if not self._admit_value(len(member) + SET_MEMBER_COST):
                            continue
                        members.add(member)
                    self.metrics += 1
                    continue
            elif kind == "ms":
                if name_ok(name):
                    try:
                        v = float(value)
                    except ValueError:
                        v = math.nan
                    if v - v == 0.0 and "_" not in value:
                        values = self.timers.get(name)
                        if values is None:
                            if not self._admit(name):
                                continue
                            values = self.timers[name] = []
                            self.timer_counts[name] = 0.0
                        if self.state_bytes + TIMER_VALUE_COST > self.max_state_bytes:
                            self.dropped_values += 1
                            continue
                        self.state_bytes += TIMER_VALUE_COST
                        values.append(v)
                        self.timer_counts[name] += 1.0
                        if not len(values) & _RUN_MASK:
                            _sort_last_run(values)
                        self.metrics += 1
                        continue
            elif kind == "g":
                if name_ok(name) and (self.max_gauges is None or name in self.gauges):
                    try:
                        v = float(value)
                    except ValueError:
                        v = math.nan
                    if v - v == 0.0 and "_" not in value:
                        old = self.gauges.get(name)
                        if value.lstrip()[:1] in ("+", "-"):
                            v += old or 0.0
                            if v - v != 0.0:  # overflows: the general path says so
                                if slow is None:
                                    slow = []
                                slow.append(line)
                                continue
                        if old is None and not self._admit(name):
                            continue
                        self.gauges[name] = v
                        self.gauge_updated[name] = self.flushes
                        self.metrics += 1
                        continue
            elif "|#" in kind and self._add_tagged(name, value, kind):
                continue
            if slow is None:
                slow = []
            slow.append(line)
        if slow is None:
            return 0
        return self._add_lines([ln for ln in (x.strip() for x in slow) if ln])

    def _add_lines(self, lines: List[str]) -> int:
        """The general path: parse each line with :func:`parse_line`."""
        bad_lines = 0
        add = self.add
        max_name = self.max_name_bytes
        for line in lines:
            try:
                for metric in parse_line(line, max_name):
                    add(metric)
            except BadLine as e:
                bad_lines += 1
                self.last_bad = e
        return self._count_bad(bad_lines)

    def _count_bad(self, n: int) -> int:
        self.bad_lines += n
        return n

    def histogram_bins(self, series: str) -> Tuple[float, ...]:
        """The bins of the first ``histograms`` entry whose name ``series`` contains."""
        return _histogram_bins(self.histograms, series)

    def flush(self, timestamp: float, interval: float,
              extra_counters: Optional[Dict[str, float]] = None) -> Rollup:
        """The interval's :class:`Rollup`; then idle series are forgotten or
        zeroed (``delete_idle``, ``gauge_ttl``) and the interval restarts.

        The internal counters (:data:`INTERNAL`, under ``stats_prefix``) are
        always reported; ``extra_counters`` (e.g. drops counted by the glue)
        are added to the rollup's counters. ``swap(...).rollup()``.
        """
        return self.swap(timestamp, interval, extra_counters).rollup()

    def swap(self, timestamp: float, interval: float,
             extra_counters: Optional[Dict[str, float]] = None) -> "Interval":
        """Take the interval's raw figures and restart (what :meth:`flush`
        does, but for the timers' statistics, which :meth:`Interval.rollup`
        computes): O(series) and cheap; the rest may run in another thread."""
        internal = {"packets_received": float(self.packets),
                    "metrics_received": float(self.metrics),
                    "bad_lines": float(self.bad_lines),
                    "dropped_new_metrics": float(self.dropped_new_metrics),
                    "dropped_values": float(self.dropped_values)}
        for short, value in internal.items():
            self.totals[short] += value
        counters = self.counters
        kept_counters = list(counters) if "counters" not in self.delete_idle else []
        reported = {self.internal_names[short]: value for short, value in internal.items()}
        if extra_counters:
            reported.update(extra_counters)
        counters.update(reported)
        sets = {name: len(members) for name, members in self.sets.items()}
        if self.gauge_ttl:
            self._expire_gauges()
        taken = Interval(timestamp, interval, counters, dict(self.gauges), self.timers,
                         self.timer_counts, sets, reported, self.stats_prefix,
                         self.percentiles, self.histograms)
        self.flushes += 1
        self.counters = dict.fromkeys(kept_counters, 0.0)
        if "timers" in self.delete_idle:
            self.timers, self.timer_counts = {}, {}
        else:
            self.timers = {name: [] for name in self.timers}
            self.timer_counts = dict.fromkeys(self.timers, 0.0)
        self.sets = {} if "sets" in self.delete_idle else {name: set() for name in self.sets}
        self.recount_state_bytes()
        self._reset_interval()
        return taken

    def _expire_gauges(self) -> None:
        now, ttl = self.flushes, self.gauge_ttl
        updated = self.gauge_updated
        for name in [name for name, when in updated.items() if now - when >= ttl]:
            del updated[name]
            self.gauges.pop(name, None)

    def recount_state_bytes(self) -> int:
        """Re-estimate :attr:`state_bytes` from what is held (after a flush or
        a deletion); returns it. O(series + set members)."""
        size = 0
        for table in (self.counters, self.gauges, self.timers):
            size += sum(len(name) for name in table) + SERIES_COST * len(table)
        size += TIMER_VALUE_COST * sum(len(values) for values in self.timers.values())
        for name, members in self.sets.items():
            size += len(name) + SERIES_COST + sum(len(m) + SET_MEMBER_COST for m in members)
        self.state_bytes = size
        return size

    def table(self, kind: str) -> Dict[str, Any]:
        """The live series of one type (``"counters"``, ``"gauges"``,
        ``"timers"``, ``"sets"``), as the admin interface shows and deletes them."""
        if kind not in METRIC_TYPES:
            raise ValueError(f"no metric type {kind!r}")
        return getattr(self, kind)  # type: ignore[no-any-return]

    def delete(self, kind: str, series: Iterable[str]) -> List[str]:
        """Forget the given series of one type; returns those that existed."""
        table = self.table(kind)
        gone = []
        for name in series:
            if table.pop(name, None) is not None:
                gone.append(name)
                if kind == "timers":
                    self.timer_counts.pop(name, None)
                elif kind == "gauges":
                    self.gauge_updated.pop(name, None)
        if gone:
            self.recount_state_bytes()
        return gone


__all__ = [
    "BAD_LINES", "PACKETS_RECEIVED", "METRICS_RECEIVED", "DROPPED_NEW_METRICS",
    "DROPPED_VALUES", "INTERNAL", "DEFAULT_MAX_METRICS", "DEFAULT_MAX_STATE_BYTES",
    "DEFAULT_GAUGE_TTL", "DEFAULT_DELETE_IDLE", "DEFAULT_MAX_GAUGES", "METRIC_TYPES",
    "SERIES_COST", "TIMER_VALUE_COST", "SET_MEMBER_COST", "TIMER_RUN", "GraphiteNames",
    "Rollup", "StatsdRollup", "Interval", "timer_stats", "parse_histogram", "check_percentiles",
    "check_delete_idle",
]
