"""The statsd line format: one line of text in, :class:`Metric` tuples out.

Etsy statsd's format, one metric per line, several lines per datagram, with
DogStatsD's tags::

    name:value|type[|@sample_rate][|#tag:value,tag2:value2]
                                        type: c, g, ms (h is an alias), s;
                                        @rate and #tags in either order
    name:value                          the seed's bare form: a counter
    name:v1|c:v2|ms                     several values for one name (Etsy;
                                        not on a line with tags)

A metric is kept per *series*: its sanitized name plus its tags, written as
Graphite writes a tagged series, ``name;k=v;k2=v2`` with the tags sorted by
name (Graphite's canonical form, which carbon accepts since 1.1). That string
is :attr:`Metric.name`; :func:`split_series` takes it apart.

What a peer may send is bounded: a series name (with its tags) longer than
``max_name_bytes`` (default 256) is a bad line, and so is a value written
with anything but ASCII digits (Python's ``float`` takes ``"٣"`` and
``"1_000"``; statsd does not). Parsing is O(len(line)).
"""

from __future__ import annotations

import math
import re
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple, Union

COUNTER = "c"
GAUGE = "g"
TIMER = "ms"
SET = "s"
#: accepted type codes and the kind each one means (``h``: DogStatsD histogram).
KINDS = {"c": COUNTER, "g": GAUGE, "ms": TIMER, "h": TIMER, "s": SET}

#: the longest series name accepted, in bytes, tags included (``name;k=v``).
DEFAULT_MAX_NAME_BYTES = 256

_NAME_OK = re.compile(r"[A-Za-z0-9_.\-]+\Z").match
_WHITESPACE = re.compile(r"\s+")
_NAME_DROP = re.compile(r"[^A-Za-z0-9_.\-]")
#: a number as statsd clients write it: ASCII digits only, no ``_``, no inf/nan.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z").match
#: a tag's name: printable ASCII but for Graphite's ``;!^=`` and statsd's ``:,|#``.
_TAG_NAME = re.compile(r"[\x21-\x7e]+\Z").match
_TAG_NAME_BAD = set(";!^=:,|#")
#: a tag's value: printable ASCII but for ``;,|#``, not starting with ``~`` (Graphite).
_TAG_VALUE = re.compile(r"[\x21-\x7e]+\Z").match
_TAG_VALUE_BAD = set(";,|#")
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
    """One parsed value. ``name`` is the series (``name;k=v`` when tagged);
    ``value`` is a float, or the member (str) for a set; ``delta`` marks a
    gauge given as ``+n``/``-n``."""

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


def parse_number(text: str, line: str = "") -> float:
    """``text`` as a finite float, written with ASCII digits; else :class:`BadLine`."""
    stripped = text.strip()
    if _NUMBER(stripped):
        value = float(stripped)
        if value - value == 0.0:
            return value
        raise BadLine("value is not finite", line or text)  # 1e999
    if stripped.lower().lstrip("+-") in ("nan", "inf", "infinity"):
        raise BadLine("value is not finite", line or text)
    raise BadLine(f"value {text[:_SNIPPET]!r} is not a number (ASCII digits)", line or text)


def _parse_rate(field: str, line: str) -> float:
    if not _NUMBER(field[1:]):
        raise BadLine("sample rate is not a number", line)
    rate = float(field[1:])
    if not 0.0 < rate <= 1.0:
        raise BadLine("sample rate must be in (0, 1]", line)
    return rate


def parse_tags(text: str, line: str = "") -> Dict[str, str]:
    """DogStatsD tags ``k:v,k2:v2`` as a dict; :class:`BadLine` for a tag
    without a value, a repeated or reserved (``name``) tag, or a character
    Graphite's tag syntax refuses (see the module's docstring)."""
    tags: Dict[str, str] = {}
    for tag in text.split(","):
        key, sep, value = tag.partition(":")
        if not sep or not key or not value:
            raise BadLine(f"tag {tag[:_SNIPPET]!r} is not name:value", line or text)
        if not _TAG_NAME(key) or not _TAG_NAME_BAD.isdisjoint(key):
            raise BadLine(f"tag name {key[:_SNIPPET]!r} has a character Graphite refuses",
                          line or text)
        if not _TAG_VALUE(value) or not _TAG_VALUE_BAD.isdisjoint(value) or value[0] == "~":
            raise BadLine(f"tag value {value[:_SNIPPET]!r} has a character Graphite refuses",
                          line or text)
        if key in tags or key == "name":
            raise BadLine(f"tag {key[:_SNIPPET]!r} repeated or reserved", line or text)
        tags[key] = value
    return tags


def series_name(name: str, tags: Optional[Mapping[str, str]] = None) -> str:
    """The series a metric is kept under: ``name``, or ``name;k=v;k2=v2``
    with the tags sorted (Graphite's tagged-series syntax)."""
    if not tags:
        return name
    return name + "".join(f";{k}={tags[k]}" for k in sorted(tags))


def split_series(series: str) -> Tuple[str, Dict[str, str]]:
    """``"name;k=v"`` -> ``("name", {"k": "v"})``: :func:`series_name`'s inverse."""
    name, *tags = series.split(";")
    return name, dict(tag.split("=", 1) for tag in tags)


def _parse_value(name: str, field: str, line: str, max_name_bytes: int) -> Metric:
    """One ``value|type[|@rate][|#tags]`` field of a line."""
    parts = field.split("|")
    raw = parts[0].strip()
    if not raw:
        raise BadLine("empty value", line)
    if len(parts) == 1:
        return Metric(_checked(name, None, line, max_name_bytes), COUNTER,
                      parse_number(raw, line))
    kind = KINDS.get(parts[1].strip())
    if kind is None:
        raise BadLine(f"unknown metric type {parts[1][:_SNIPPET]!r}", line)
    if len(parts) > 4:
        raise BadLine("too many '|' fields", line)
    rate = 1.0
    tags: Optional[Dict[str, str]] = None
    seen_rate = False
    for position, extra in enumerate(parts[2:]):
        extra = extra.strip()
        if extra[:1] == "@" and not seen_rate:
            rate = _parse_rate(extra, line)
            seen_rate = True
        elif extra[:1] == "#" and tags is None:
            tags = parse_tags(extra[1:], line)
        elif extra[:1] in ("@", "#"):
            raise BadLine(f"field {extra[:_SNIPPET]!r} given twice", line)
        else:
            too_many = "too many '|' fields: " if position else ""
            raise BadLine(f"{too_many}unexpected field {extra[:_SNIPPET]!r}, want '@rate' or "
                          "'#tags'", line)
    series = _checked(name, tags, line, max_name_bytes)
    if kind == SET:
        return Metric(series, SET, raw, rate)
    if kind == GAUGE:
        return Metric(series, GAUGE, parse_number(raw, line), rate, raw[0] in "+-")
    return Metric(series, kind, parse_number(raw, line), rate)


def _checked(name: str, tags: Optional[Dict[str, str]], line: str, max_name_bytes: int) -> str:
    series = series_name(name, tags)
    if len(series) > max_name_bytes:  # ASCII only: characters are bytes
        raise BadLine(f"name longer than {max_name_bytes} bytes", line)
    return series


def parse_line(line: str, max_name_bytes: int = DEFAULT_MAX_NAME_BYTES) -> List[Metric]:
    """The metrics of one line (usually one); raises :class:`BadLine`."""
    name, sep, rest = line.partition(":")
    if not sep:
        raise BadLine("no ':' between name and value", line)
    if len(name) > 4 * max_name_bytes:  # bound the cleaning work, not only the result
        raise BadLine(f"name longer than {max_name_bytes} bytes", line)
    name = sanitize_name(name)
    if not name:
        raise BadLine("empty metric name", line)
    if ":" not in rest or "|#" in rest:
        return [_parse_value(name, rest, line, max_name_bytes)]
    return [_parse_value(name, field, line, max_name_bytes) for field in rest.split(":")]


def parse_packet(data: bytes, max_name_bytes: int = DEFAULT_MAX_NAME_BYTES
                 ) -> Tuple[List[Metric], List[BadLine]]:
    """Every metric of a datagram, and a :class:`BadLine` for each bad line.

    Lines are split on ``\\n`` (a trailing ``\\r`` and blank lines are
    ignored); a bad line never spoils the good ones around it.
    """
    metrics: List[Metric] = []
    bad: List[BadLine] = []
    for line in split_lines(data, bad):
        try:
            metrics.extend(parse_line(line, max_name_bytes))
        except BadLine as e:
            bad.append(e)
    return metrics, bad


def split_lines(data: bytes, bad: List[BadLine]) -> List[str]:
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


def format_metric(name: str, value: Any, kind: str = COUNTER, rate: float = 1.0,
                  tags: Optional[Mapping[str, str]] = None) -> str:
    """One statsd line (the client side): ``name:value|kind[|@rate][|#k:v,...]``.

    A gauge ``value`` given as a string such as ``"+3"`` is sent verbatim, so
    deltas can be expressed; numbers are written exactly (``repr``).
    """
    text = value if isinstance(value, str) else format_number(value)
    line = f"{name}:{text}|{kind}"
    if rate != 1.0:
        line += f"|@{rate!r}"
    if tags:
        line += "|#" + ",".join(f"{k}:{v}" for k, v in tags.items())
    return line


def format_number(value: float) -> str:
    """A number as Graphite's plaintext protocol takes it: integers without
    ``.0``, the rest exactly (``repr``)."""
    if value.__class__ is float:  # the common case, first
        if value.is_integer() and -1e15 < value < 1e15:
            return "%d" % value
        return repr(value)
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return "%d" % value
    return repr(value)


def check_tags(tags: Iterable[Tuple[str, str]]) -> None:
    """ValueError unless each (name, value) is a tag :func:`parse_tags` accepts."""
    try:
        parse_tags(",".join(f"{k}:{v}" for k, v in tags))
    except BadLine as e:
        raise ValueError(e.reason) from None


__all__ = [
    "COUNTER", "GAUGE", "TIMER", "SET", "KINDS", "DEFAULT_MAX_NAME_BYTES", "BadLine", "Metric",
    "sanitize_name", "parse_number", "parse_tags", "series_name", "split_series", "parse_line",
    "parse_packet", "split_lines", "format_metric", "format_number", "check_tags",
]
