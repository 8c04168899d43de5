"""The statsd line protocol and its rollup, sans-IO: no sockets, no reactor.

Etsy statsd's format, one metric per line, several lines per datagram::

    name:value|type[|@sample_rate]      type: c, g, ms (h is an alias), s
    name:value                          the seed's bare form: a counter
    name:v1|c:v2|ms                     several values for one name (Etsy)

:func:`parse_line` and :func:`parse_packet` turn text into :class:`Metric`
tuples or raise/collect :class:`BadLine`; :class:`StatsdRollup` accumulates
a flush interval's worth of metrics and :meth:`StatsdRollup.flush` swaps it
for an empty one, returning an immutable :class:`Rollup` that renders itself
in Graphite's plaintext protocol.

Cost: parsing is O(len(datagram)); the rollup holds, until the next flush,
one number per counter and gauge name, every timer value and every distinct
set member seen in the interval (gauges keep their last value for good, as in
Etsy statsd, since ``+``/``-`` deltas need it). The hot path
(:meth:`StatsdRollup.add_packet`) handles the common lines inline, without a
:class:`Metric` per line: about 0.7 us for ``name:1|c`` on CPython 3.11.
"""

from __future__ import annotations

import math
import re
from typing import (
    Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Set, Tuple, Union,
)

COUNTER = "c"
GAUGE = "g"
TIMER = "ms"
SET = "s"
#: accepted type codes and the kind each one means (``h``: DogStatsD histogram).
KINDS = {"c": COUNTER, "g": GAUGE, "ms": TIMER, "h": TIMER, "s": SET}

#: the counter that counts lines which failed to parse (Etsy: bad_lines_seen).
BAD_LINES = "statsd.bad_lines"
PACKETS_RECEIVED = "statsd.packets_received"
METRICS_RECEIVED = "statsd.metrics_received"

#: gauges live until the process ends (deltas need them): this caps their
#: number, so a sender inventing names cannot grow memory without bound.
DEFAULT_MAX_GAUGES = 100_000

_NAME_OK = re.compile(r"[A-Za-z0-9_.\-]+\Z").match
_WHITESPACE = re.compile(r"\s+")
_NAME_DROP = re.compile(r"[^A-Za-z0-9_.\-]")
_SNIPPET = 80


class BadLine(ValueError):
    """A statsd line that cannot be parsed; ``line`` is a short snippet of it."""

    def __init__(self, reason: str, line: Union[str, bytes]) -> None:
        if len(line) > _SNIPPET:
            if isinstance(line, str):
                line = line[:_SNIPPET] + "..."
            else:
                line = line[:_SNIPPET] + b"..."
        super().__init__(f"{reason}: {line!r}")
        self.reason = reason
        self.line = line


class Metric(NamedTuple):
    """One parsed value. ``value`` is a float, or the member (str) for a set;
    ``delta`` marks a gauge given as ``+n``/``-n``."""

    name: str
    kind: str
    value: Any
    rate: float = 1.0
    delta: bool = False


def sanitize_name(name: str) -> str:
    """Etsy's key cleaning: whitespace to ``_``, ``/`` to ``-``, drop the rest
    of what Graphite would choke on (anything outside ``[A-Za-z0-9_.-]``)."""
    if _NAME_OK(name):
        return name
    name = _WHITESPACE.sub("_", name.strip()).replace("/", "-")
    return _NAME_DROP.sub("", name)


def _number(text: str, line: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadLine(f"value {text[:_SNIPPET]!r} is not a number", line) from None
    if value != value or value in (math.inf, -math.inf):
        raise BadLine("value is not finite", line)
    return value


def _parse_rate(field: str, line: str) -> float:
    if field[:1] != "@":
        raise BadLine(f"unexpected field {field[:_SNIPPET]!r}, want '@rate'", line)
    try:
        rate = float(field[1:])
    except ValueError:
        raise BadLine("sample rate is not a number", line) from None
    if not 0.0 < rate <= 1.0:
        raise BadLine("sample rate must be in (0, 1]", line)
    return rate


def _parse_value(name: str, field: str, line: str) -> Metric:
    """One ``value|type[|@rate]`` field of a line."""
    parts = field.split("|")
    raw = parts[0].strip()
    if not raw:
        raise BadLine("empty value", line)
    if len(parts) == 1:
        return Metric(name, COUNTER, _number(raw, line))
    kind = KINDS.get(parts[1].strip())
    if kind is None:
        raise BadLine(f"unknown metric type {parts[1][:_SNIPPET]!r}", line)
    if len(parts) > 3:
        raise BadLine("too many '|' fields", line)
    rate = _parse_rate(parts[2].strip(), line) if len(parts) == 3 else 1.0
    if kind == SET:
        return Metric(name, SET, raw, rate)
    if kind == GAUGE:
        return Metric(name, GAUGE, _number(raw, line), rate, raw[0] in "+-")
    return Metric(name, kind, _number(raw, line), rate)


def parse_line(line: str) -> List[Metric]:
    """The metrics of one line (usually one); raises :class:`BadLine`."""
    name, sep, rest = line.partition(":")
    if not sep:
        raise BadLine("no ':' between name and value", line)
    name = sanitize_name(name)
    if not name:
        raise BadLine("empty metric name", line)
    if ":" not in rest:
        return [_parse_value(name, rest, line)]
    return [_parse_value(name, field, line) for field in rest.split(":")]


def parse_packet(data: bytes) -> Tuple[List[Metric], List[BadLine]]:
    """Every metric of a datagram, and a :class:`BadLine` for each bad line.

    Lines are split on ``\\n`` (a trailing ``\\r`` and blank lines are
    ignored); a bad line never spoils the good ones around it.
    """
    metrics: List[Metric] = []
    bad: List[BadLine] = []
    for line in _lines(data, bad):
        try:
            metrics.extend(parse_line(line))
        except BadLine as e:
            bad.append(e)
    return metrics, bad


def _lines(data: bytes, bad: List[BadLine]) -> List[str]:
    """Decode a datagram to its non-blank lines; non-UTF-8 lines go to ``bad``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        lines = []
        for raw in data.split(b"\n"):
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                bad.append(BadLine("not UTF-8", raw))
        return [ln for ln in (x.strip() for x in lines) if ln]
    if "\n" not in text:
        text = text.strip()
        return [text] if text else []
    return [ln for ln in (x.strip() for x in text.split("\n")) if ln]


def format_metric(name: str, value: Any, kind: str = COUNTER,
                  rate: float = 1.0) -> str:
    """One statsd line (the client side): ``name:value|kind[|@rate]``.

    A gauge ``value`` given as a string such as ``"+3"`` is sent verbatim, so
    deltas can be expressed; numbers are written exactly (``repr``).
    """
    text = value if isinstance(value, str) else _format_number(value)
    line = f"{name}:{text}|{kind}"
    if rate != 1.0:
        line += f"|@{rate!r}"
    return line


def _format_number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class Rollup:
    """What one flush interval saw; immutable by convention.

    ``counters``: name -> total (already divided by sample rates);
    ``gauges``: name -> value; ``sets``: name -> number of distinct members;
    ``timers``: name -> dict of statistics (``count``, ``count_ps``, ``sum``,
    ``mean``, ``lower``, ``upper``, ``median``, and ``upper_90``,
    ``mean_90``, ``sum_90``, ``count_90`` per configured percentile).
    """

    __slots__ = ("timestamp", "interval", "counters", "gauges", "timers", "sets")

    def __init__(self, timestamp: float, interval: float,
                 counters: Dict[str, float], gauges: Dict[str, float],
                 timers: Dict[str, Dict[str, float]], sets: Dict[str, int]) -> None:
        self.timestamp = timestamp
        self.interval = interval
        self.counters = counters
        self.gauges = gauges
        self.timers = timers
        self.sets = sets

    def __repr__(self) -> str:
        return (f"<Rollup t={self.timestamp} counters={len(self.counters)}"
                f" gauges={len(self.gauges)} timers={len(self.timers)}"
                f" sets={len(self.sets)}>")

    def flat(self, prefix: str = "stats") -> Dict[str, float]:
        """Every figure under its Graphite name (Etsy's namespace):
        ``stats.counters.x.count``/``.rate``, ``stats.gauges.x``,
        ``stats.timers.x.<stat>``, ``stats.sets.x.count``."""
        p = f"{prefix}." if prefix else ""
        out: Dict[str, float] = {}
        interval = self.interval or 1.0
        for name, total in self.counters.items():
            out[f"{p}counters.{name}.count"] = total
            out[f"{p}counters.{name}.rate"] = total / interval
        for name, value in self.gauges.items():
            out[f"{p}gauges.{name}"] = value
        for name, stats in self.timers.items():
            for stat, value in stats.items():
                out[f"{p}timers.{name}.{stat}"] = value
        for name, count in self.sets.items():
            out[f"{p}sets.{name}.count"] = count
        return out

    def graphite_lines(self, prefix: str = "stats") -> bytes:
        """The rollup in Graphite's plaintext protocol: ``name value ts\\n``."""
        ts = int(self.timestamp)
        return "".join(
            f"{name} {_format_number(value)} {ts}\n"
            for name, value in self.flat(prefix).items()
        ).encode("ascii")


def timer_stats(values: Sequence[float], count: float, interval: float,
                percentiles: Iterable[float] = (90,)) -> Dict[str, float]:
    """Etsy statsd's timer statistics over one interval's ``values``.

    ``count`` is the sample-rate-weighted number of timings (``1/rate`` each).
    For a percentile ``p``, the lowest ``round(p% * n)`` values give
    ``upper_p``, ``mean_p``, ``sum_p`` and ``count_p`` (``99.9`` is named
    ``99_9``); a negative ``p`` takes the highest values (``top10``).

    Sums are running sums over the sorted values, as Etsy's ``cumulativeValues``;
    the values are summed once whatever the percentiles (this runs on the
    reactor thread at every flush, over every timing of the interval).
    """
    ordered = sorted(values)
    n = len(ordered)
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
    return stats


def _percentile_label(pct: float) -> str:
    text = _format_number(pct)
    return text.replace(".", "_").replace("-", "top")


#: Timings are sorted in runs of this many as they arrive (a power of two), so
#: that the flush's sort, on the reactor thread, only merges runs: ~1.3 ms
#: instead of ~4.7 ms for 32k random timings on CPython.
TIMER_RUN = 2048
_RUN_MASK = TIMER_RUN - 1


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


def check_percentiles(percentiles: Iterable[float]) -> Tuple[float, ...]:
    """The timer percentiles as a tuple; ``ValueError`` unless each is finite
    with 0 < |p| <= 100 (150 or nan would make every flush fail)."""
    checked = tuple(float(p) for p in percentiles)
    for p in checked:
        if not (math.isfinite(p) and 0 < abs(p) <= 100):
            raise ValueError(f"a timer percentile is in (0, 100], or negative for the "
                             f"highest values; not {p}")
    return checked


class StatsdRollup:
    """Accumulates metrics between flushes; ``flush()`` swaps in a fresh state.

    A new gauge name beyond ``max_gauges`` is a bad line ("more than N
    gauges"); the gauges already known keep working.

    Not thread-safe: meant to be fed and flushed from the reactor thread.
    ``last_bad`` holds the most recent :class:`BadLine` (for a log line).
    """

    def __init__(self, percentiles: Sequence[float] = (90,),
                 max_gauges: int = DEFAULT_MAX_GAUGES) -> None:
        self.percentiles = check_percentiles(percentiles)
        self.max_gauges = max_gauges
        self.gauges: Dict[str, float] = {}
        self.last_bad: Optional[BadLine] = None
        self._reset()

    def _reset(self) -> None:
        self.counters: Dict[str, float] = {}
        self.timers: Dict[str, List[float]] = {}
        self.timer_counts: Dict[str, float] = {}
        self.sets: Dict[str, Set[str]] = {}
        self.packets = 0
        self.metrics = 0
        self.bad_lines = 0

    def add(self, metric: Metric) -> None:
        """Fold one parsed metric into the current interval; raises
        :class:`BadLine` for a new gauge beyond ``max_gauges``."""
        name, kind, value, rate, delta = metric
        self.metrics += 1
        if kind == COUNTER:
            self.counters[name] = _finite(self.counters.get(name, 0.0) + value / rate, name)
        elif kind == TIMER:
            values = self.timers.get(name)
            if values is None:
                self.timers[name] = [value]
                self.timer_counts[name] = 1.0 / rate
            else:
                values.append(value)
                self.timer_counts[name] += 1.0 / rate
                if not len(values) & _RUN_MASK:
                    _sort_last_run(values)
        elif kind == GAUGE:
            if name not in self.gauges and len(self.gauges) >= self.max_gauges:
                raise BadLine(f"more than {self.max_gauges} gauges", name)
            if delta:
                self.gauges[name] = _finite(self.gauges.get(name, 0.0) + value, name)
            else:
                self.gauges[name] = value
        else:
            members = self.sets.get(name)
            if members is None:
                self.sets[name] = {value}
            else:
                members.add(value)

    def add_packet(self, data: bytes) -> int:
        """Parse and fold in one datagram; returns its number of bad lines.

        The common lines (``name:number|c``, ``|c|@rate``, ``|ms``, ``|g``,
        ``name:member|s``, with a clean name) take an inlined fast path; anything else
        goes through :func:`parse_line`, so both accept the same language.
        """
        self.packets += 1
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            undecodable: List[BadLine] = []
            bad = self._add_lines(_lines(data, undecodable))
            if undecodable:
                self.last_bad = undecodable[-1]
            return bad + self._count_bad(len(undecodable))
        lines = text.split("\n") if "\n" in text else (text,)
        slow: Optional[List[str]] = None
        counters = self.counters
        for line in lines:
            name, _, rest = line.partition(":")
            value, _, kind = rest.partition("|")
            if kind == "c":
                total = counters.get(name)
                if total is not None or _NAME_OK(name):
                    try:
                        v = float(value)
                    except ValueError:
                        v = math.nan
                    v += total or 0.0
                    if v - v == 0.0:  # finite (the line's value, and the new total)
                        counters[name] = v
                        self.metrics += 1
                        continue
            elif kind[:3] == "c|@":
                if _NAME_OK(name):
                    try:
                        v = float(value)
                        rate = float(kind[3:])
                    except ValueError:
                        v = rate = math.nan
                    if v - v == 0.0 and 0.0 < rate <= 1.0:
                        v = counters.get(name, 0.0) + v / rate
                        if v - v == 0.0:
                            counters[name] = v
                            self.metrics += 1
                            continue
            elif kind == "s":
                member = value.strip()
                if member and ":" not in member and _NAME_OK(name):
                    members = self.sets.get(name)
                    if members is None:
                        self.sets[name] = {member}
                    else:
                        members.add(member)
                    self.metrics += 1
                    continue
            elif kind == "ms" or kind == "g":
                if _NAME_OK(name) and (kind == "ms" or name in self.gauges
                                       or len(self.gauges) < self.max_gauges):
                    try:
                        v = float(value)
                    except ValueError:
                        v = math.nan
                    if v - v == 0.0:
                        if kind == "ms":
                            values = self.timers.get(name)
                            if values is None:
                                self.timers[name] = [v]
                                self.timer_counts[name] = 1.0
                            else:
                                values.append(v)
                                self.timer_counts[name] += 1.0
                                if not len(values) & _RUN_MASK:
                                    _sort_last_run(values)
                        elif value.lstrip()[:1] in ("+", "-"):
                            v += self.gauges.get(name, 0.0)
                            if v - v != 0.0:  # overflows: the general path says so
                                if slow is None:
                                    slow = []
                                slow.append(line)
                                continue
                            self.gauges[name] = v
                        else:
                            self.gauges[name] = v
                        self.metrics += 1
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
        for line in lines:
            try:
                for metric in parse_line(line):
                    add(metric)
            except BadLine as e:
                bad_lines += 1
                self.last_bad = e
        return self._count_bad(bad_lines)

    def _count_bad(self, n: int) -> int:
        self.bad_lines += n
        return n

    def flush(self, timestamp: float, interval: float,
              extra_counters: Optional[Dict[str, float]] = None) -> Rollup:
        """The interval's :class:`Rollup`; counters, timers and sets restart.

        The internal counters ``statsd.packets_received``,
        ``statsd.metrics_received`` and ``statsd.bad_lines`` are always
        reported; ``extra_counters`` (e.g. drops counted by the glue) are
        added to the rollup's counters.
        """
        counters = self.counters
        counters[PACKETS_RECEIVED] = float(self.packets)
        counters[METRICS_RECEIVED] = float(self.metrics)
        counters[BAD_LINES] = float(self.bad_lines)
        if extra_counters:
            counters.update(extra_counters)
        timers = {
            name: timer_stats(values, self.timer_counts[name], interval,
                              self.percentiles)
            for name, values in self.timers.items()
        }
        sets = {name: len(members) for name, members in self.sets.items()}
        rollup = Rollup(timestamp, interval, counters, dict(self.gauges),
                        timers, sets)
        self._reset()
        return rollup


__all__ = [
    "COUNTER", "GAUGE", "TIMER", "SET", "KINDS", "BAD_LINES", "BadLine",
    "Metric", "Rollup", "StatsdRollup", "parse_line", "parse_packet",
    "format_metric", "sanitize_name", "timer_stats", "check_percentiles",
]
