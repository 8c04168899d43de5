"""``twistd -n aleph-statsd [--port 10002] [--flush-interval 1]
[--graphite host:port] [--gc-threshold N]``.

A statsd server (Etsy's line protocol) forwarding its flushes to Graphite:
:class:`twisted_aleph.statsd.StatsdService`. Stopping (SIGTERM) flushes once
more and gives that flush up to ``--shutdown-timeout`` seconds to reach
Graphite.
"""

from __future__ import annotations

from typing import Any, List

from twisted.python import usage

from twisted_aleph.statsd import DEFAULT_MAX_QUEUED, DEFAULT_PORT, StatsdService, parse_address
from twisted_aleph.statsd_protocol import check_percentiles
from twisted_aleph.tap.options import GC_OPTION, check_gc_option


class Options(usage.Options):
    """``twistd aleph-statsd`` options."""

    optParameters: List[List[Any]] = [
        ["port", "p", DEFAULT_PORT, "UDP port to listen on.", int],
        ["interface", "i", "0.0.0.0", "Interface to bind."],
        ["flush-interval", "f", 1.0, "Seconds between flushes.", float],
        ["graphite", "g", None, "Forward flushes to Graphite's plaintext port host:port."],
        ["percentiles", None, "90", "Timer percentiles, comma-separated."],
        ["prefix", None, "stats", "Graphite name prefix."],
        ["max-queued", None, DEFAULT_MAX_QUEUED,
         "Flushes kept while Graphite is down.", int],
        ["shutdown-timeout", None, 10.0,
         "On SIGTERM, seconds the last flush gets to reach Graphite.", float],
        GC_OPTION,
    ]

    def postOptions(self) -> None:
        if self["flush-interval"] <= 0:
            raise usage.UsageError("--flush-interval must be > 0")
        if self["shutdown-timeout"] < 0:
            raise usage.UsageError("--shutdown-timeout must not be negative")
        check_gc_option(self)
        try:
            self["percentiles"] = check_percentiles(
                float(p) for p in str(self["percentiles"]).split(",") if p.strip())
            if self["graphite"]:
                parse_address(self["graphite"])
        except ValueError as e:
            raise usage.UsageError(str(e))


def makeService(options: Options) -> StatsdService:
    """The ``aleph-statsd`` service (see ``twisted/plugins/aleph_statsd.py``)."""
    return StatsdService(
        options["port"], interface=options["interface"],
        flush_interval=options["flush-interval"], graphite=options["graphite"],
        percentiles=options["percentiles"], prefix=options["prefix"],
        max_queued=options["max-queued"], shutdown_timeout=options["shutdown-timeout"],
        gc_threshold=options["gc-threshold"])


__all__ = ["Options", "makeService"]
