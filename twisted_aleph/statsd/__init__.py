"""A statsd server (Etsy's line protocol, DogStatsD's tags) on Twisted, with Graphite.

The Twisted glue around :mod:`twisted_aleph.statsd_protocol`, which does all
parsing, rolling up and answering admin commands. This package's facade:

* :mod:`.server`: :func:`start_server`, :class:`StatsdServer` (the UDP port,
  the flush timer, the ``rollups`` stream), :class:`StatsdService` (twistd);
* :mod:`.graphite`: :class:`GraphiteForwarder`, Graphite's plaintext protocol
  over a reconnecting TCP client, its queue bounded in flushes and bytes;
* :mod:`.admin`: Etsy's admin TCP interface (``--admin-port``);
* :mod:`.live`: the live page, a chart per metric updated at every flush
  over a WebSocket (``--http PORT``);
* :mod:`.client`: :func:`client`, :class:`StatsdClient`.

Graphite names (Etsy's, ``prefix``/``names`` to change them):
``stats.counters.<name>.count`` and ``.rate`` (per second),
``stats.gauges.<name>``, ``stats.timers.<name>.<stat>`` (count, count_ps,
sum, mean, lower, upper, median, upper_90, mean_90, sum_90, count_90,
``histogram.bin_<limit>``), ``stats.sets.<name>.count``; a tagged series ends
in ``;tag=value`` pairs. The server's own counters are
``statsd.packets_received``, ``statsd.metrics_received``,
``statsd.bad_lines``, ``statsd.dropped_new_metrics``,
``statsd.dropped_values``, ``statsd.rollups_dropped`` and, with Graphite,
``statsd.graphite_dropped_flushes`` and ``statsd.graphite_dropped_lines``
(under ``stats.counters.`` like any counter).

Bad lines are counted and logged at most once per peer per 10 s (with the
number held back), never with a traceback. Nothing a client sends can stop
the server, and what it sends can only fill the bounded state.
"""

from __future__ import annotations

import warnings
from typing import Any

from twisted_aleph.statsd.client import StatsdClient, client
from twisted_aleph.statsd.graphite import (
    DEFAULT_MAX_QUEUED, DEFAULT_MAX_QUEUED_BYTES, GraphiteForwarder,
)
from twisted_aleph.statsd.server import (
    DEFAULT_ADMIN_PORT, DEFAULT_MAX_FLUSH_BYTES, DEFAULT_PORT, DEFAULT_ROLLUP_BUFFER,
    GRAPHITE_DROPPED, GRAPHITE_LINES_DROPPED, ROLLUPS_DROPPED, StatsdProtocol, StatsdServer,
    StatsdService, parse_address, start_server,
)
from twisted_aleph.statsd_protocol import Rollup, StatsdRollup


def __getattr__(name: str) -> Any:
    """The twistd command's ``Options`` and ``makeService``, moved to
    :mod:`twisted_aleph.tap.statsd`: still found here for one release, with a
    DeprecationWarning."""
    if name in ("Options", "makeService"):
        from twisted_aleph.tap import statsd as tap_statsd
        warnings.warn(f"twisted_aleph.statsd.{name} moved to twisted_aleph.tap.statsd.{name}",
                      DeprecationWarning, stacklevel=2)
        return getattr(tap_statsd, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "StatsdProtocol", "StatsdServer", "GraphiteForwarder", "StatsdClient",
    "StatsdService", "start_server", "client", "parse_address", "Rollup", "StatsdRollup",
    "DEFAULT_PORT", "DEFAULT_ADMIN_PORT", "DEFAULT_MAX_QUEUED", "DEFAULT_MAX_QUEUED_BYTES",
    "DEFAULT_MAX_FLUSH_BYTES", "DEFAULT_ROLLUP_BUFFER", "GRAPHITE_DROPPED", "ROLLUPS_DROPPED",
    "GRAPHITE_LINES_DROPPED",
]
