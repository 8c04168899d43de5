"""The statsd protocol, sans-IO: no sockets, no reactor.

The facade of three modules, each a pure function of its input:

* :mod:`.lines`: one line of text to :class:`Metric` tuples (Etsy's format,
  DogStatsD's ``|#tags``), or a :class:`BadLine` saying why not;
* :mod:`.rollup`: :class:`StatsdRollup` accumulates an interval's metrics
  within its bounds and lifetimes, and :meth:`StatsdRollup.flush` makes the
  :class:`Rollup` that renders itself for Graphite;
* :mod:`.admin`: Etsy's admin commands (``stats``, ``counters``,
  ``delcounters``, ``health``...) over a rollup.

The Twisted glue (UDP port, flush timer, Graphite connection, admin TCP port,
live page) is :mod:`twisted_aleph.statsd`.
"""

from twisted_aleph.statsd_protocol.admin import AdminSession, inspect
from twisted_aleph.statsd_protocol.lines import (
    COUNTER, DEFAULT_MAX_NAME_BYTES, GAUGE, KINDS, SET, TIMER, BadLine, Metric, check_tags,
    format_metric, format_number, parse_line, parse_number, parse_packet, parse_tags,
    sanitize_name, series_name, split_series,
)
from twisted_aleph.statsd_protocol.rollup import (
    BAD_LINES, DEFAULT_DELETE_IDLE, DEFAULT_GAUGE_TTL, DEFAULT_MAX_GAUGES, DEFAULT_MAX_METRICS,
    DEFAULT_MAX_STATE_BYTES, DROPPED_NEW_METRICS, DROPPED_VALUES, INTERNAL, METRIC_TYPES,
    METRICS_RECEIVED, PACKETS_RECEIVED, SERIES_COST, SET_MEMBER_COST, TIMER_RUN,
    TIMER_VALUE_COST, GraphiteNames, Rollup, StatsdRollup, check_delete_idle,
    check_percentiles, parse_histogram, timer_stats,
)
from twisted_aleph.statsd_protocol.rollup import _percentile_label  # noqa: F401 (tests)

__all__ = [
    "COUNTER", "GAUGE", "TIMER", "SET", "KINDS", "BAD_LINES", "PACKETS_RECEIVED",
    "METRICS_RECEIVED", "DROPPED_NEW_METRICS", "DROPPED_VALUES", "INTERNAL", "METRIC_TYPES",
    "DEFAULT_MAX_NAME_BYTES", "DEFAULT_MAX_METRICS", "DEFAULT_MAX_STATE_BYTES",
    "DEFAULT_GAUGE_TTL", "DEFAULT_DELETE_IDLE", "DEFAULT_MAX_GAUGES", "SERIES_COST",
    "TIMER_VALUE_COST", "SET_MEMBER_COST", "TIMER_RUN", "BadLine", "Metric", "Rollup",
    "StatsdRollup", "GraphiteNames", "AdminSession", "parse_line", "parse_packet",
    "parse_number", "parse_tags", "series_name", "split_series", "check_tags",
    "format_metric", "format_number", "sanitize_name", "timer_stats", "parse_histogram",
    "check_percentiles", "check_delete_idle", "inspect",
]
