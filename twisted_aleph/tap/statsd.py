"""``twistd -n aleph-statsd [--port 10002] [--flush-interval 1] [--graphite host:port]
[--console] [--admin-port 8126] [--http PORT] ...``.

A statsd server (Etsy's line protocol, DogStatsD's tags) forwarding its
flushes to Graphite: :class:`twisted_aleph.statsd.StatsdService`. Every
bound a peer can reach is an option here, with its default (see
``--help``). Stopping (SIGTERM) flushes once more and gives that flush up to
``--shutdown-timeout`` seconds to reach Graphite.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from twisted.python import usage

from twisted_aleph.statsd import (
    DEFAULT_ADMIN_PORT, DEFAULT_MAX_FLUSH_BYTES, DEFAULT_MAX_QUEUED, DEFAULT_MAX_QUEUED_BYTES,
    DEFAULT_PORT, StatsdService, parse_address,
)
from twisted_aleph.statsd.admin import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_LINE
from twisted_aleph.statsd.live import DEFAULT_MAX_SERIES, DEFAULT_WINDOW, MAX_SERIES_LIMIT
from twisted_aleph.statsd_protocol import (
    DEFAULT_DELETE_IDLE, DEFAULT_GAUGE_TTL, DEFAULT_MAX_METRICS, DEFAULT_MAX_NAME_BYTES,
    DEFAULT_MAX_STATE_BYTES, METRIC_TYPES, GraphiteNames, check_delete_idle,
    check_percentiles, parse_histogram,
)
from twisted_aleph.tap.options import GC_OPTION, check_gc_option


def _delete_idle_default() -> str:
    return ",".join(t for t in METRIC_TYPES if t in DEFAULT_DELETE_IDLE)


class Options(usage.Options):
    """``twistd aleph-statsd`` options."""

    optFlags: List[List[Any]] = [
        ["console", None, "Log every flushed value (Etsy's console backend)."],
        ["no-admin", None, "No admin TCP interface."],
    ]
    optParameters: List[List[Any]] = [
        ["port", "p", DEFAULT_PORT, "UDP port to listen on.", int],
        ["interface", "i", "0.0.0.0", "Interface to bind."],
        ["flush-interval", "f", 1.0, "Seconds between flushes.", float],
        ["graphite", "g", None, "Forward flushes to Graphite's plaintext port host:port."],
        ["percentiles", None, "90", "Timer percentiles, comma-separated."],
        ["prefix", None, "stats", "Graphite name prefix (Etsy's globalPrefix; '' for none)."],
        ["prefix-counter", None, "counters", "Graphite segment of counters (Etsy's prefixCounter)."],
        ["prefix-timer", None, "timers", "Graphite segment of timers (Etsy's prefixTimer)."],
        ["prefix-gauge", None, "gauges", "Graphite segment of gauges (Etsy's prefixGauge)."],
        ["prefix-set", None, "sets", "Graphite segment of sets (Etsy's prefixSet)."],
        ["prefix-stats", None, "statsd",
         "First part of the server's own counters' names (Etsy's prefixStats)."],
        ["suffix", None, "", "Graphite suffix of every name (Etsy's globalSuffix)."],
        ["delete-idle", None, _delete_idle_default(),
         "Metric types forgotten when idle at a flush, comma-separated, from "
         "counters,gauges,timers,sets, or 'all' or 'none' (Etsy's deleteIdleStats; "
         "kept ones are sent as zeros)."],
        ["gauge-ttl", None, DEFAULT_GAUGE_TTL,
         "Flushes a gauge is still sent for after its last update; 0: for good.", int],
        ["max-metrics", None, DEFAULT_MAX_METRICS,
         "Series held at most; a new one past it is dropped and counted.", int],
        ["max-state-bytes", None, DEFAULT_MAX_STATE_BYTES,
         "Estimated bytes of state held at most (names, timings, set members).", int],
        ["max-name-bytes", None, DEFAULT_MAX_NAME_BYTES,
         "Longest series name (tags included); a longer one is a bad line.", int],
        ["max-flush-bytes", None, DEFAULT_MAX_FLUSH_BYTES,
         "Bytes of Graphite lines one flush sends at most; the rest is counted.", int],
        ["max-queued", None, DEFAULT_MAX_QUEUED,
         "Flushes kept while Graphite is down.", int],
        ["max-queued-bytes", None, DEFAULT_MAX_QUEUED_BYTES,
         "Bytes of flushes kept while Graphite is down or slow (the oldest dropped).", int],
        ["admin-port", None, DEFAULT_ADMIN_PORT,
         "Admin TCP interface (Etsy's: help, stats, counters, delcounters, health...); "
         "0: any free port.", int],
        ["admin-interface", None, "127.0.0.1", "Interface the admin port binds."],
        ["admin-max-line", None, DEFAULT_MAX_LINE, "Bytes of one admin command at most.", int],
        ["admin-idle-timeout", None, DEFAULT_IDLE_TIMEOUT,
         "Seconds an admin connection may stay silent before it is closed.", float],
        ["http", None, None, "Serve the live page (a chart per metric) on this HTTP port.", int],
        ["http-interface", None, "127.0.0.1", "Interface the live page binds."],
        ["http-window", None, DEFAULT_WINDOW, "Seconds of history the live page charts.", float],
        ["http-max-series", None, DEFAULT_MAX_SERIES,
         "Series the live page charts at most.", int],
        ["shutdown-timeout", None, 10.0,
         "On SIGTERM, seconds the last flush gets to reach Graphite.", float],
        GC_OPTION,
    ]

    def __init__(self) -> None:
        super().__init__()
        self["histogram"] = []

    def opt_histogram(self, spec: str) -> None:
        # (the help text is the docstring, on one line)
        """Timer histogram name:limit,... e.g. api:10,100,inf: timers whose name contains 'name' get histogram.bin_<limit> counts (repeatable, first match wins, '' matches all)."""  # noqa: E501
        try:
            self["histogram"].append(parse_histogram(spec))
        except ValueError as e:
            raise usage.UsageError(f"--histogram: {e}")

    def postOptions(self) -> None:
        if self["flush-interval"] <= 0:
            raise usage.UsageError("--flush-interval must be > 0")
        if self["shutdown-timeout"] < 0:
            raise usage.UsageError("--shutdown-timeout must not be negative")
        check_gc_option(self)
        positive = ["max-metrics", "max-state-bytes", "max-name-bytes", "max-flush-bytes",
                    "max-queued", "admin-max-line", "http-window", "http-max-series"]
        for name in positive:
            if self[name] <= 0:
                raise usage.UsageError(f"--{name} must be > 0")
        if self["http-max-series"] > MAX_SERIES_LIMIT:
            raise usage.UsageError(f"--http-max-series is at most {MAX_SERIES_LIMIT}")
        for name in ("gauge-ttl", "admin-idle-timeout", "max-queued-bytes"):
            if self[name] < 0:
                raise usage.UsageError(f"--{name} must not be negative")
        for name in ("port", "admin-port", "http"):
            if self[name] is not None and not 0 <= self[name] < 65536:
                raise usage.UsageError(f"--{name} must be a port number")
        try:
            self["percentiles"] = check_percentiles(
                float(p) for p in str(self["percentiles"]).split(",") if p.strip())
            if self["graphite"]:
                parse_address(self["graphite"])
            self["delete-idle"] = parse_delete_idle(self["delete-idle"])
            self["names"] = GraphiteNames(
                self["prefix"], self["prefix-counter"], self["prefix-timer"],
                self["prefix-gauge"], self["prefix-set"], self["suffix"]).check()
            if not self["prefix-stats"]:
                raise ValueError("--prefix-stats must not be empty")
            GraphiteNames(self["prefix-stats"]).check()
        except ValueError as e:
            raise usage.UsageError(str(e))


def parse_delete_idle(text: str) -> Tuple[str, ...]:
    """``--delete-idle``: ``all``, ``none`` or types from counters,gauges,timers,sets."""
    text = text.strip()
    if text == "all":
        return METRIC_TYPES
    if text in ("none", ""):
        return ()
    chosen = check_delete_idle(t.strip() for t in text.split(","))
    return tuple(t for t in METRIC_TYPES if t in chosen)


def service_options(options: Options) -> Dict[str, Any]:
    """``start_server``'s keyword arguments from a parsed command line."""
    return {
        "interface": options["interface"], "flush_interval": options["flush-interval"],
        "graphite": options["graphite"], "percentiles": options["percentiles"],
        "prefix": options["prefix"], "names": options["names"],
        "max_queued": options["max-queued"], "max_queued_bytes": options["max-queued-bytes"],
        "max_flush_bytes": options["max-flush-bytes"], "console": bool(options["console"]),
        "max_metrics": options["max-metrics"], "max_state_bytes": options["max-state-bytes"],
        "max_name_bytes": options["max-name-bytes"], "delete_idle": options["delete-idle"],
        "gauge_ttl": options["gauge-ttl"], "histograms": tuple(options["histogram"]),
        "stats_prefix": options["prefix-stats"],
        "admin_port": None if options["no-admin"] else options["admin-port"],
        "admin_interface": options["admin-interface"],
        "admin_options": {"max_line": options["admin-max-line"],
                          "idle_timeout": options["admin-idle-timeout"]},
        "http_port": options["http"], "http_interface": options["http-interface"],
        "live_options": {"window": options["http-window"],
                         "max_series": options["http-max-series"]},
    }


def makeService(options: Options) -> StatsdService:
    """The ``aleph-statsd`` service (see ``twisted/plugins/aleph_statsd.py``)."""
    return StatsdService(options["port"], shutdown_timeout=options["shutdown-timeout"],
                         gc_threshold=options["gc-threshold"], **service_options(options))


__all__ = ["Options", "makeService", "parse_delete_idle", "service_options"]
