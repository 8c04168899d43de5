"""twistd plugin: ``twistd -n aleph-statsd [--port 10002] [--flush-interval 1]
[--graphite host:port] [--gc-threshold N]``. The logic lives in :mod:`twisted_aleph.statsd`."""

from __future__ import annotations

from twisted.application.service import ServiceMaker

aleph_statsd = ServiceMaker(
    "aleph-statsd",
    "twisted_aleph.statsd",
    "A statsd server (Etsy line protocol) with Graphite forwarding.",
    "aleph-statsd",
)
