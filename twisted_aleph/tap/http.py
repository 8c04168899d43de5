"""``twistd -n aleph-http [--port 10000] [--app module:attr]
[--tls-cert PEM --tls-key PEM [--tls-ca PEM --require-client-cert]]
[--workers N] [--bus redis://host:port] [--shutdown-timeout S] [--gc-threshold N]``.

The seed's HTTP routes (/hello, /delayed_hello, /numbers, and the WebSocket
ones: :mod:`twisted_aleph.demo.http`) by default, over HTTPS when given a
certificate (mutual TLS with ``--require-client-cert``), served by N
processes sharing the port, chat rooms on Redis with ``--bus``; SIGTERM shuts
down gracefully; CPython's garbage collector is tuned for a server
(:func:`twisted_aleph.server.tune_gc`; ``--gc-threshold 0`` leaves it alone).
The server is :class:`twisted_aleph.http.HTTPServerService`.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional

from twisted.application.service import IService
from twisted.python import usage

from twisted_aleph.server import load_object
from twisted_aleph.tap.options import (
    BusOptions, GCOptions, ScalingOptions, ServerTLSOptions, check_gc_option, check_options,
    server_tls_from_options,
)
from twisted_aleph.tap.scaling import scaled_service, worker_headers

#: ``--app``'s default: the seed's routes, built once at import. With
#: ``--bus`` it stands for the demo's factory, ``make_app(bus=...)``.
DEFAULT_APP = "twisted_aleph.demo.http:app"
#: what ``--app`` should name with ``--bus`` to get the demo's routes.
DEFAULT_APP_FACTORY = "twisted_aleph.demo.http:make_app"


class Options(ServerTLSOptions, ScalingOptions, GCOptions, BusOptions, usage.Options):
    """``twistd aleph-http`` options; ``postOptions`` adds ``handler`` (the
    loaded ``--app``), or ``app_factory`` with ``--bus``, and ``tls``."""

    optParameters: List[List[Any]] = [
        ["port", "p", 10000, "TCP port to listen on.", int],
        ["interface", None, "0.0.0.0", "Interface to bind."],
        ["app", None, DEFAULT_APP,
         "module:attr of a Klein app (or a handler(request) callable) to serve; "
         "with --bus, of a factory taking bus= (default: the demo's make_app)."],
    ]
    optFlags: List[List[Any]] = []

    def postOptions(self) -> None:
        check_options(self)
        check_gc_option(self)
        if self["bus"]:
            self["app_factory"] = app_factory(self["app"])
        else:
            try:
                self["handler"] = load_object(self["app"])
            except (ValueError, ImportError, AttributeError) as e:
                raise usage.UsageError(f"--app: {e}")
        self["tls"] = server_tls_from_options(self)


def app_factory(spec: str) -> Callable[..., Any]:
    """With ``--bus``, ``--app`` names a factory ``f(bus=...)`` returning the
    app (the default app, :data:`DEFAULT_APP`, becomes the demo's
    ``make_app``): the factory, or :class:`usage.UsageError`."""
    if spec == DEFAULT_APP:
        from twisted_aleph.demo.http import make_app
        return make_app
    try:
        factory = load_object(spec)
    except (ValueError, ImportError, AttributeError) as e:
        raise usage.UsageError(f"--app: {e}")
    from klein import Klein
    if isinstance(factory, Klein) or not callable(factory):
        raise usage.UsageError(
            f"--bus needs --app to name a factory taking bus=, such as {DEFAULT_APP_FACTORY}")
    return factory


def makeService(options: Options) -> IService:
    """The ``aleph-http`` service (see ``twisted/plugins/aleph_http.py``)."""
    from twisted_aleph.http.server import HTTPServerService

    def server(fd: Optional[int], bus: Any) -> IService:
        handler = options["handler"] if bus is None else options["app_factory"](bus=bus)
        return HTTPServerService(handler, options["port"], interface=options["interface"],
                                 tls=options["tls"], fd=fd,
                                 shutdown_timeout=options["shutdown-timeout"],
                                 gc_threshold=options["gc-threshold"],
                                 response_headers=worker_headers(options))
    return scaled_service(options, server)


__all__ = ["Options", "makeService", "app_factory", "DEFAULT_APP", "DEFAULT_APP_FACTORY"]
