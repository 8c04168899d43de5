"""twistd plugin: ``twistd -n aleph-statsd``, a statsd server forwarding to
Graphite (options and service: :mod:`twisted_aleph.tap.statsd`)."""

from twisted.application.service import ServiceMaker

aleph_statsd = ServiceMaker(
    "aleph-statsd",
    "twisted_aleph.tap.statsd",
    "A statsd server (Etsy line protocol) with Graphite forwarding.",
    "aleph-statsd",
)
