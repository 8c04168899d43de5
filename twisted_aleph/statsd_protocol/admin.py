"""Etsy statsd's admin (management) interface, sans-IO: a command line in, the answer out.

Etsy's commands, answered as Etsy's ``stats.js`` and ``lib/mgmt_console.js``
answer them (``docs/admin_interface.md``)::

    help                      Commands: stats, counters, timers, gauges, ...
    stats                     uptime: 12 / messages.last_msg_seen: 0 / ... / END
    counters|timers|gauges    the series, as Node's util.inspect prints an object / END
    delcounters a.b c.*       deleted: a.b / deleted: c.x / metric d not found / END
    health [up|down]          health: up
    config                    the settings, one "name: value" line each
    quit                      (the connection is closed)

plus ``sets`` and ``delsets`` for the type Etsy's console leaves out. Names
given to the ``del*`` commands are exact series names, ``folder.*`` (every
series whose name starts with ``folder.``) or ``*`` (all). Anything else is
answered ``ERROR``. :class:`AdminSession` is the state the commands share
(health, start time); the glue (:mod:`twisted_aleph.statsd.admin`) moves
lines between it and a TCP connection and bounds what a peer can send.

:func:`inspect` writes a JSON-like value as Node's ``util.inspect`` does
(single-quoted keys when not identifiers, ``[ 1, 2 ]``, grouped columns for
long number arrays, at most 100 array items then ``... n more items``), so
tools that scrape Etsy's output read ours. Cost: O(size of the answer).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from twisted_aleph.statsd_protocol.rollup import METRIC_TYPES, StatsdRollup

HELP = ("Commands: stats, counters, timers, gauges, sets, delcounters, deltimers, delgauges,"
        " delsets, health, config, quit\n\n")
END = "END\n\n"
ERROR = "ERROR\n"

#: a backend's status lines for ``stats``: (group, name, value); a name
#: starting with ``last_`` is a Unix time, shown as seconds since (Etsy).
StatusLines = Callable[[], Iterable[Tuple[str, str, float]]]


class AdminSession:
    """What the admin commands read and change: the rollup's live series,
    the health flag, when the server started, and the backends' status.

    ``status``: callable giving the extra ``stats`` lines (the Graphite
    forwarder's ``graphite.last_flush``...); ``config``: the settings the
    ``config`` command lists. One session serves every admin connection.
    """

    def __init__(self, rollup: StatsdRollup, *, started: float, health: str = "up",
                 status: Optional[StatusLines] = None,
                 config: Optional[Dict[str, Any]] = None) -> None:
        self.rollup = rollup
        self.started = started
        self.health = health
        self.status = status
        self.config = dict(config or {})
        #: when the last flush that saw a datagram happened (Etsy's last_msg_seen)
        self.last_msg_seen = started

    def flushed(self, now: float, packets: int) -> None:
        """The glue's report of a flush: ``packets`` datagrams arrived in it."""
        if packets:
            self.last_msg_seen = now

    def handle(self, line: str, now: float) -> Tuple[str, bool]:
        """(answer, close the connection?) for one command line."""
        words = line.split()
        if not words:
            return ERROR, False
        cmd, args = words[0], words[1:]
        if cmd == "help":
            return HELP, False
        if cmd == "quit":
            return "", True
        if cmd == "health":
            if args and args[0].lower() in ("up", "down"):
                self.health = args[0].lower()
            return f"health: {self.health}\n", False
        if cmd == "stats":
            return self._stats(now), False
        if cmd == "config":
            return "\n" + "".join(f"{k}: {_config_value(v)}\n" for k, v in self.config.items()), \
                False
        if cmd in METRIC_TYPES:
            return inspect(self._dump(cmd)) + "\n" + END, False
        if cmd.startswith("del") and cmd[3:] in METRIC_TYPES:
            return self._delete(cmd[3:], args), False
        return ERROR, False

    def _stats(self, now: float) -> str:
        rollup = self.rollup
        seen = 0 if rollup.packets else now - self.last_msg_seen
        lines = [("messages", "last_msg_seen", seen),
                 ("messages", "bad_lines_seen", rollup.totals["bad_lines"] + rollup.bad_lines),
                 ("limits", "metrics", rollup.series),
                 ("limits", "max_metrics", rollup.max_metrics),
                 ("limits", "state_bytes", rollup.state_bytes),
                 ("limits", "max_state_bytes", rollup.max_state_bytes),
                 ("limits", "dropped_new_metrics",
                  rollup.totals["dropped_new_metrics"] + rollup.dropped_new_metrics),
                 ("limits", "dropped_values",
                  rollup.totals["dropped_values"] + rollup.dropped_values)]
        out = [f"uptime: {round(now - self.started)}\n"]
        for group, name, value in lines:
            out.append(f"{group}.{name}: {js_number(round(value))}\n")
        for group, name, value in (self.status() if self.status else ()):
            if name.startswith("last_"):
                value = round(now - value)
            out.append(f"{group}.{name}: {js_number(value)}\n")
        out.append(END)
        return "".join(out)

    def _dump(self, kind: str) -> Dict[str, Any]:
        rollup = self.rollup
        table = rollup.table(kind)
        if kind == "counters":
            dump = dict(table)
            dump[rollup.internal_names["packets_received"]] = rollup.packets
            dump[rollup.internal_names["metrics_received"]] = rollup.metrics
            dump[rollup.internal_names["bad_lines"]] = rollup.bad_lines
            return dump
        if kind == "sets":
            return {name: sorted(members) for name, members in table.items()}
        return dict(table)

    def _delete(self, kind: str, patterns: Sequence[str]) -> str:
        table = self.rollup.table(kind)
        out = []
        for pattern in patterns:
            found = matching(table, pattern)
            if not found:
                out.append(f"metric {pattern} not found\n")
            for name in self.rollup.delete(kind, found):
                out.append(f"deleted: {name}\n")
        out.append(END)
        return "".join(out)


def matching(table: Iterable[str], pattern: str) -> List[str]:
    """Etsy's ``existing_stats``: the exact series, or with ``folder.*`` every
    series under that folder, or with ``*`` every series."""
    names = list(table)
    found = [pattern] if pattern in names else []
    if pattern == "*":
        return names
    if pattern.endswith(".*"):
        folder = pattern[:-1]
        found.extend(name for name in names if name.startswith(folder) and name != pattern)
    return found


def _config_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(_config_value(v) for v in value)
    if isinstance(value, float):
        return js_number(value)
    return str(value)


# -- Node's util.inspect, for flat objects of numbers, strings and arrays --------

#: Node's defaults: line width, items shown per array, how compact.
BREAK_LENGTH = 80
MAX_ARRAY_LENGTH = 100
COMPACT = 3
_IDENTIFIER = re.compile(r"[a-zA-Z_][a-zA-Z_0-9]*\Z").match
_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", "\\": "\\\\"}


def js_number(value: float) -> str:
    """A number as JavaScript's ``String(n)`` writes it (``3``, ``0.1``, ``1e+21``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and abs(value) < 10**21:
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign = "-" if value < 0 else ""
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    exponent = int(exponent) + len("".join(map(str, digit_tuple))) - len(digits)
    k = len(digits)
    n = exponent + k  # value = 0.digits * 10**n
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{sign}{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


def js_string(text: str) -> str:
    """A string as util.inspect quotes it: ``'...'``, or ``"..."`` / backticks
    when that avoids escaping a single quote."""
    quote = "'"
    if "'" in text:
        if '"' not in text:
            quote = '"'
        elif "`" not in text and "${" not in text:
            quote = "`"
    out = []
    for ch in text:
        if ch == quote:
            out.append("\\" + ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return quote + "".join(out) + quote


def inspect(value: Any) -> str:
    """``value`` (dicts of str keys, lists, numbers, strings) as Node's
    ``util.inspect(value)`` prints it."""
    return _Inspector().format(value, 0)


class _Inspector:
    """util.inspect's formatValue/reduceToSingleString, for the types above."""

    def __init__(self) -> None:
        self.indentation = 0
        self.current_depth = 0

    def format(self, value: Any, depth: int) -> str:
        if isinstance(value, str):
            return js_string(value)
        if isinstance(value, (int, float)):
            return js_number(value)
        if value is None:
            return "null"
        if isinstance(value, dict):
            return self._container(value, depth, is_array=False)
        return self._container(list(value), depth, is_array=True)

    def _container(self, value: Any, depth: int, is_array: bool) -> str:
        braces = ("[", "]") if is_array else ("{", "}")
        if not value:
            return braces[0] + braces[1]
        self.current_depth = depth
        output: List[str] = []
        self.indentation += 2
        if is_array:
            for item in value[:MAX_ARRAY_LENGTH]:
                output.append(self.format(item, depth + 1))
            more = len(value) - MAX_ARRAY_LENGTH
            if more > 0:
                output.append(f"... {more} more item{'s' if more > 1 else ''}")
        else:
            for key, item in value.items():
                name = key if _IDENTIFIER(key) else js_string(key)
                output.append(f"{name}: {self.format(item, depth + 1)}")
        self.indentation -= 2
        entries = len(output)
        if is_array and entries > 6:
            output = self._group(output, value)
        if self.current_depth - depth < COMPACT and entries == len(output):
            start = len(output) + self.indentation + len(braces[0]) + 10
            if self._below_break_length(output, start):
                joined = ", ".join(output)
                if "\n" not in joined:
                    return f"{braces[0]} {joined} {braces[1]}"
        indent = "\n" + " " * self.indentation
        return f"{braces[0]}{indent}  " + f",{indent}  ".join(output) + f"{indent}{braces[1]}"

    @staticmethod
    def _below_break_length(output: List[str], start: int) -> bool:
        total = len(output) + start
        if total + len(output) > BREAK_LENGTH:
            return False
        for entry in output:
            total += len(entry)
            if total > BREAK_LENGTH:
                return False
        return True

    def _group(self, output: List[str], value: List[Any]) -> List[str]:
        """Node's groupArrayElements: short entries in aligned columns."""
        total_length = 0
        max_length = 0
        output_length = len(output)
        if MAX_ARRAY_LENGTH < len(output):
            output_length -= 1  # the "... more items" entry stays on its own
        separator_space = 2
        data_len = []
        for entry in output[:output_length]:
            data_len.append(len(entry))
            total_length += len(entry) + separator_space
            max_length = max(max_length, len(entry))
        actual_max = max_length + separator_space
        if not (actual_max * 3 + self.indentation < BREAK_LENGTH
                and (total_length / actual_max > 5 or max_length <= 6)):
            return output
        average_bias = math.sqrt(actual_max - total_length / len(output))
        biased_max = max(actual_max - 3 - average_bias, 1)
        columns = min(
            _js_round(math.sqrt(2.5 * biased_max * output_length) / biased_max),
            (BREAK_LENGTH - self.indentation) // actual_max,
            COMPACT * 4,
            15,
        )
        if columns <= 1:
            return output
        max_line_length = []
        for i in range(columns):
            line_length = 0
            for j in range(i, len(output), columns):
                if j < output_length and data_len[j] > line_length:
                    line_length = data_len[j]
            max_line_length.append(line_length + separator_space)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool)
                      for v in value[:output_length])
        grouped = []
        for i in range(0, output_length, columns):
            end = min(i + columns, output_length)
            parts = []
            for j in range(i, end - 1):
                cell = f"{output[j]}, "
                width = max_line_length[j - i]
                parts.append(cell.rjust(width) if numbers else cell.ljust(width))
            j = end - 1
            if numbers:
                parts.append(output[j].rjust(max_line_length[j - i] - separator_space))
            else:
                parts.append(output[j])
            grouped.append("".join(parts))
        if MAX_ARRAY_LENGTH < len(output):
            grouped.append(output[output_length])
        return grouped


def _js_round(x: float) -> int:
    """JavaScript's Math.round (halves go up)."""
    return int(math.floor(x + 0.5))


__all__ = ["AdminSession", "HELP", "END", "ERROR", "matching", "inspect", "js_number",
           "js_string"]
