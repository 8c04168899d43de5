"""``twistd -n aleph-tcp [--port 10000] [--handler inc|echo|module:callable]
[--max-frame N] [--tls-cert PEM --tls-key PEM [--tls-ca PEM --require-client-cert]]
[--workers N] [--shutdown-timeout S] [--gc-threshold N]``.

The seed's framed EDN server (uint32 length + UTF-8 EDN; the handlers are
:mod:`twisted_aleph.demo.tcp`'s), over TLS when given a certificate, served
by N processes sharing the port; SIGTERM shuts down gracefully; CPython's
garbage collector is tuned for a server (:func:`twisted_aleph.server.tune_gc`;
``--gc-threshold 0`` leaves it alone). The server is
:class:`twisted_aleph.tcp.TCPServerService`.
"""

from __future__ import annotations

from typing import Any, List, Optional

from twisted.application.service import IService
from twisted.python import usage

from twisted_aleph.demo.tcp import handler_named
from twisted_aleph.tap.options import (
    GCOptions, ScalingOptions, ServerTLSOptions, check_gc_option, check_options,
    server_tls_from_options,
)
from twisted_aleph.tap.scaling import scaled_service
from twisted_aleph.tcp import DEFAULT_MAX_FRAME, TCPServerService


class Options(ServerTLSOptions, ScalingOptions, GCOptions, usage.Options):
    """``twistd aleph-tcp`` options; ``postOptions`` adds ``handler_fn`` (the
    handler ``--handler`` names) and ``tls``."""

    optParameters: List[List[Any]] = [
        ["port", "p", 10000, "TCP port to listen on.", int],
        ["interface", None, "0.0.0.0", "Interface to bind."],
        ["handler", None, "inc", "inc, echo, or module:callable taking (stream, info)."],
        ["max-frame", None, DEFAULT_MAX_FRAME, "Largest frame accepted, in bytes.", int],
    ]

    def postOptions(self) -> None:
        check_options(self)
        check_gc_option(self)
        try:
            self["handler_fn"] = handler_named(self["handler"])
        except (ValueError, ImportError, AttributeError) as e:
            raise usage.UsageError(f"--handler: {e}")
        self["tls"] = server_tls_from_options(self)


def makeService(options: Options) -> IService:
    """The ``aleph-tcp`` service (see ``twisted/plugins/aleph_tcp.py``)."""

    def server(fd: Optional[int], bus: Any) -> IService:
        return TCPServerService(options["handler_fn"], options["port"],
                                interface=options["interface"],
                                max_length=options["max-frame"], tls=options["tls"],
                                fd=fd, shutdown_timeout=options["shutdown-timeout"],
                                gc_threshold=options["gc-threshold"])
    return scaled_service(options, server)


__all__ = ["Options", "makeService"]
