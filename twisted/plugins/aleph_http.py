"""twistd plugin: ``twistd -n aleph-http``, the seed's HTTP routes (options and
service: :mod:`twisted_aleph.tap.http`)."""

from twisted.application.service import ServiceMaker

aleph_http = ServiceMaker(
    "aleph-http",
    "twisted_aleph.tap.http",
    "The seed's HTTP server: Klein routes answering Ring-style maps.",
    "aleph-http",
)
