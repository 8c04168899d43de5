"""twistd plugin: ``twistd -n aleph-tcp [--port 10000] [--handler inc|echo|module:callable]
[--max-frame N] [--tls-cert PEM --tls-key PEM [--tls-ca PEM --require-client-cert]]
[--workers N] [--shutdown-timeout S] [--gc-threshold N]``: the seed's framed EDN
server, over TLS when given a certificate, served by N processes sharing the port;
SIGTERM shuts down gracefully; CPython's garbage collector is tuned for a server
(``twisted_aleph.server.tune_gc``; ``--gc-threshold 0`` leaves it alone). The logic
lives in :mod:`twisted_aleph.tcp` (``TCPServerService``), :mod:`twisted_aleph.workers`
and :mod:`twisted_aleph.demo.tcp`."""

from __future__ import annotations

from typing import Any, List, Optional

from twisted.application.service import IService, IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer

from twisted_aleph.server import GCOptions, check_gc_option
from twisted_aleph.tls import ServerTLSOptions, server_tls_from_options
from twisted_aleph.workers import ScalingOptions, check_options


class Options(ServerTLSOptions, ScalingOptions, GCOptions, usage.Options):
    optParameters: List[List[Any]] = [
        ["port", "p", 10000, "TCP port to listen on.", int],
        ["interface", None, "0.0.0.0", "Interface to bind."],
        ["handler", None, "inc", "inc, echo, or module:callable taking (stream, info)."],
        ["max-frame", None, 16 * 1024 * 1024, "Largest frame accepted, in bytes.", int],
    ]

    def postOptions(self) -> None:
        check_options(self)
        check_gc_option(self)
        from twisted_aleph.demo.tcp import handler_named
        try:
            self["handler_fn"] = handler_named(self["handler"])
        except (ValueError, ImportError, AttributeError) as e:
            raise usage.UsageError(f"--handler: {e}")
        self["tls"] = server_tls_from_options(self)


@implementer(IServiceMaker, IPlugin)
class AlephTCPServiceMaker:
    tapname = "aleph-tcp"
    description = "The seed's framed EDN TCP server (uint32 length + UTF-8 EDN)."
    options = Options

    def makeService(self, options: Options) -> IService:
        from twisted_aleph.tcp import TCPServerService
        from twisted_aleph.workers import scaled_service

        def server(fd: Optional[int], bus: Any) -> IService:
            return TCPServerService(options["handler_fn"], options["port"],
                                    interface=options["interface"],
                                    max_length=options["max-frame"], tls=options["tls"],
                                    fd=fd, shutdown_timeout=options["shutdown-timeout"],
                                    gc_threshold=options["gc-threshold"])
        return scaled_service(options, server)


aleph_tcp = AlephTCPServiceMaker()
