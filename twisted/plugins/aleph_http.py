"""twistd plugin: ``twistd -n aleph-http [--port 10000] [--app module:attr]
[--tls-cert PEM --tls-key PEM [--tls-ca PEM --require-client-cert]]``: the
seed's HTTP routes (/hello, /delayed_hello, /numbers, and the WebSocket ones)
by default, over HTTPS when given a certificate (mutual TLS with
``--require-client-cert``). The logic lives in :mod:`twisted_aleph.http` (``HTTPServerService``)
and :mod:`twisted_aleph.demo.http`."""

from __future__ import annotations

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer

from twisted_aleph.tls import ServerTLSOptions, server_tls_from_options


class Options(ServerTLSOptions, usage.Options):
    optParameters = [
        ["port", "p", 10000, "TCP port to listen on.", int],
        ["interface", None, "0.0.0.0", "Interface to bind."],
        ["app", None, "twisted_aleph.demo.http:app",
         "module:attr of a Klein app (or a handler(request) callable) to serve."],
    ]
    optFlags: list = []

    def postOptions(self) -> None:
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

    def makeService(self, options: Options) -> object:
        from twisted_aleph.http import HTTPServerService
        return HTTPServerService(options["handler"], options["port"],
                                 interface=options["interface"], tls=options["tls"])


aleph_http = AlephHTTPServiceMaker()
