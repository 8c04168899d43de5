"""twistd plugin: ``twistd -n aleph-tcp``, the seed's framed EDN server (options
and service: :mod:`twisted_aleph.tap.tcp`)."""

from twisted.application.service import ServiceMaker

aleph_tcp = ServiceMaker(
    "aleph-tcp",
    "twisted_aleph.tap.tcp",
    "The seed's framed EDN TCP server (uint32 length + UTF-8 EDN).",
    "aleph-tcp",
)
