"""twistd plugin: ``twistd -n aleph-http [--port 10000] [--app module:attr]
[--tls-cert PEM --tls-key PEM [--tls-ca PEM --require-client-cert]]
[--workers N] [--bus redis://host:port] [--shutdown-timeout S] [--gc-threshold N]``:
the seed's HTTP routes (/hello, /delayed_hello, /numbers, and the WebSocket ones)
by default, over HTTPS when given a certificate (mutual TLS with
``--require-client-cert``), served by N processes sharing the port, chat rooms
on Redis with ``--bus``; SIGTERM shuts down gracefully; CPython's garbage
collector is tuned for a server (``twisted_aleph.server.tune_gc``;
``--gc-threshold 0`` leaves it alone). The logic lives in
:mod:`twisted_aleph.http` (``HTTPServerService``), :mod:`twisted_aleph.workers`
and :mod:`twisted_aleph.demo.http`."""

from __future__ import annotations

from typing import Any, List, Optional

from twisted.application.service import IService, IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer

from twisted_aleph.server import GCOptions, check_gc_option
from twisted_aleph.tls import ServerTLSOptions, server_tls_from_options
from twisted_aleph.workers import BusOptions, ScalingOptions, app_factory, check_options


class Options(ServerTLSOptions, ScalingOptions, GCOptions, BusOptions, usage.Options):
    optParameters: List[List[Any]] = [
        ["port", "p", 10000, "TCP port to listen on.", int],
        ["interface", None, "0.0.0.0", "Interface to bind."],
        ["app", None, "twisted_aleph.demo.http:app",
         "module:attr of a Klein app (or a handler(request) callable) to serve; "
         "with --bus, of a factory taking bus= (default: the demo's make_app)."],
    ]
    optFlags: list = []

    def postOptions(self) -> None:
        check_options(self)
        check_gc_option(self)
        if self["bus"]:
            self["app_factory"] = app_factory(self["app"])
        else:
            from twisted_aleph.http import load_handler
            try:
                self["handler"] = load_handler(self["app"])
            except (ValueError, ImportError, AttributeError) as e:
                raise usage.UsageError(f"--app: {e}")
        self["tls"] = server_tls_from_options(self)


@implementer(IServiceMaker, IPlugin)
class AlephHTTPServiceMaker:
    tapname = "aleph-http"
    description = "The seed's HTTP server: Klein routes answering Ring-style maps."
    options = Options

    def makeService(self, options: Options) -> IService:
        from twisted_aleph.http import HTTPServerService
        from twisted_aleph.workers import scaled_service, worker_headers

        def server(fd: Optional[int], bus: Any) -> IService:
            handler = options["handler"] if bus is None else options["app_factory"](bus=bus)
            return HTTPServerService(handler, options["port"], interface=options["interface"],
                                     tls=options["tls"], fd=fd,
                                     shutdown_timeout=options["shutdown-timeout"],
                                     gc_threshold=options["gc-threshold"],
                                     response_headers=worker_headers(options))
        return scaled_service(options, server)


aleph_http = AlephHTTPServiceMaker()
