"""``twistd -n aleph-http [--port 10000] [--app module:attr]
[--tls-cert PEM --tls-key PEM [--tls-ca PEM --require-client-cert]]
[--workers N] [--bus redis://host:port] [--shutdown-timeout S] [--gc-threshold N]
[--max-request-body BYTES] [--header-timeout S] [--idle-timeout S]
[--body-timeout S] [--max-connections N] [--compression]``.

The seed's HTTP routes (/hello, /delayed_hello, /numbers, and the WebSocket
ones: :mod:`twisted_aleph.demo.http`) by default, over HTTPS when given a
certificate (mutual TLS with ``--require-client-cert``), served by N
processes sharing the port, chat rooms on Redis with ``--bus``; SIGTERM shuts
down gracefully; CPython's garbage collector is tuned for a server
(:func:`twisted_aleph.server.tune_gc`; ``--gc-threshold 0`` leaves it alone).
The server is :class:`twisted_aleph.http.HTTPServerService`; its limits
(:class:`twisted_aleph.http.ServerOptions`) come from the last six options, a
timeout of 0 (or ``--max-connections 0``) meaning none.
"""

from __future__ import annotations

import re
from typing import Any, Callable, List, Optional

from twisted.application.service import IService
from twisted.python import usage

from twisted_aleph.http.options import (
    DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
)
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


_SIZE = re.compile(r"([0-9]+)\s*([kmg]i?b?)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str) -> int:
    """Bytes from ``"1048576"``, ``"512k"``, ``"16M"``, ``"1GiB"`` (binary
    units); ValueError otherwise."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"expected a size in bytes such as 16M, got {text!r}")
    number, unit = match.groups()
    return int(number) * _UNITS[(unit or "")[:1].lower()]


def _seconds_or_none(options: Any, name: str) -> Optional[float]:
    value = options[name]
    if value < 0:
        raise usage.UsageError(f"--{name} must not be negative (0: no timeout)")
    return value or None


class Options(ServerTLSOptions, ScalingOptions, GCOptions, BusOptions, usage.Options):
    """``twistd aleph-http`` options; ``postOptions`` adds ``handler`` (the
    loaded ``--app``), or ``app_factory`` with ``--bus``, ``tls`` and
    ``server_options`` (a :class:`twisted_aleph.http.ServerOptions`)."""

    optParameters: List[List[Any]] = [
        ["port", "p", 10000, "TCP port to listen on.", int],
        ["interface", None, "0.0.0.0", "Interface to bind."],
        ["app", None, DEFAULT_APP,
         "module:attr of a Klein app (or a handler(request) callable) to serve; "
         "with --bus, of a factory taking bus= (default: the demo's make_app)."],
        ["max-request-body", None, "16M",
         "Largest request body accepted, in bytes (suffixes k, M, G); larger is a 413."],
        ["header-timeout", None, DEFAULT_HEADER_TIMEOUT,
         "Seconds a request line and its headers have to arrive in (0: no limit).", float],
        ["idle-timeout", None, DEFAULT_IDLE_TIMEOUT,
         "Seconds a keep-alive connection may stay idle between requests (0: forever).",
         float],
        ["body-timeout", None, DEFAULT_BODY_TIMEOUT,
         "Seconds a request body may go without a byte arriving (0: no limit).", float],
        ["max-connections", None, 0,
         "Connections served at once; past it requests get 503 with Retry-After "
         "(0: no limit).", int],
    ]
    optFlags: List[List[Any]] = [
        ["compression", None, "Compress responses with gzip or deflate when the client "
                              "accepts it and the type is compressible."],
    ]

    def postOptions(self) -> None:
        check_options(self)
        check_gc_option(self)
        self["server_options"] = self._server_options()
        if self["bus"]:
            self["app_factory"] = app_factory(self["app"])
        else:
            try:
                self["handler"] = load_object(self["app"])
            except (ValueError, ImportError, AttributeError) as e:
                raise usage.UsageError(f"--app: {e}")
        self["tls"] = server_tls_from_options(self)

    def _server_options(self) -> Any:
        from twisted_aleph.http.options import ServerOptions
        try:
            max_body = parse_size(self["max-request-body"])
        except ValueError as e:
            raise usage.UsageError(f"--max-request-body: {e}")
        if self["max-connections"] < 0:
            raise usage.UsageError("--max-connections must not be negative (0: no limit)")
        return ServerOptions(
            max_request_body=max_body,
            header_timeout=_seconds_or_none(self, "header-timeout"),
            idle_timeout=_seconds_or_none(self, "idle-timeout"),
            body_timeout=_seconds_or_none(self, "body-timeout"),
            max_connections=self["max-connections"] or None,
            compression=bool(self["compression"]))


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
                                 response_headers=worker_headers(options),
                                 options=options["server_options"])
    return scaled_service(options, server)


__all__ = ["Options", "makeService", "app_factory", "parse_size", "DEFAULT_APP",
           "DEFAULT_APP_FACTORY"]
