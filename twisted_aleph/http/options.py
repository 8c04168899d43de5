"""What an HTTP server lets a peer do, in bytes and seconds, and per route.

:class:`ServerOptions` holds every limit and switch of
:func:`twisted_aleph.http.start_server` (Aleph's ``start-server`` options:
``:raw-stream?``, ``:idle-timeout``, ``:compression?``,
``:rejected-handler``, ``:max-request-body-size``, header limits), with the
defaults a production server would pick. A route can take its own request
body settings with :func:`body_options`::

    @app.route("/upload", methods=["POST"])
    @http.body_options(raw_stream=True, max_request_body=1 << 30)
    def upload(request):
        ...  # request.body_stream: a Stream of bytes chunks, with backpressure

The route is found when the request's headers have arrived, before any byte
of its body is read: its options decide whether the body is streamed or
buffered, how large it may be, and whether its form is parsed before the
route runs (:class:`BodyOptions`).

Nothing here runs I/O: the channel (:mod:`.channel`) and the request
(:mod:`.server_request`) read these values.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Optional, TypeVar

#: bytes a request body may have unless a route says otherwise (16 MiB).
DEFAULT_MAX_REQUEST_BODY = 16 * 1024 * 1024
#: seconds a connection may stay idle between requests (Aleph's ``:idle-timeout``).
DEFAULT_IDLE_TIMEOUT = 60.0
#: seconds a request line and all its headers have to arrive in (slowloris).
DEFAULT_HEADER_TIMEOUT = 10.0
#: seconds a request body may go without a byte arriving.
DEFAULT_BODY_TIMEOUT = 30.0
#: bytes of request line plus headers (twisted.web's ``HTTPChannel.totalHeadersSize``).
DEFAULT_MAX_HEADER_BYTES = 16384
#: header lines per request (twisted.web's ``HTTPChannel.maxHeaders``).
DEFAULT_MAX_HEADERS = 500
#: finished responses a connection may have waiting in a full send buffer
#: before it stops reading pipelined requests.
DEFAULT_MAX_PIPELINED = 16
#: fields (or multipart parts) in a form body, as werkzeug's ``max_form_parts``.
DEFAULT_MAX_FORM_FIELDS = 1000
#: the ``Retry-After`` (seconds) of the default answer past ``max_connections``.
REJECTED_RETRY_AFTER = 1


def busy_response(request: Any) -> Dict[str, Any]:
    """The default ``rejected_handler``: 503 with ``Retry-After``, as Aleph's."""
    return {"status": 503,
            "headers": {"content-type": "text/plain; charset=utf-8",
                        "retry-after": str(REJECTED_RETRY_AFTER)},
            "body": "Server busy: too many connections, retry later."}


class _Inherit:
    """A route option left to the server's value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "INHERIT"


#: a :func:`body_options` value meaning "the server's".
INHERIT: Any = _Inherit()


@dataclasses.dataclass(frozen=True)
class BodyOptions:
    """How one request's body is received (the server's values, or a route's).

    ``raw_stream``: the body is ``request.body_stream``, a Stream of bytes
    chunks the route reads while it arrives (reading stops while the stream
    is full), instead of ``request.content``, a file holding it all.
    ``max_request_body``: bytes, or None for no cap. ``body_timeout``:
    seconds without a body byte, or None. ``form``: parse a form body
    (urlencoded or multipart) before the route runs, off the reactor thread,
    so ``request.params`` has its fields; without it they are parsed on first
    use, only up to :data:`twisted_aleph.http.server_request.LAZY_FORM_LIMIT` bytes.
    ``max_form_fields``: fields or parts a form may have.
    """

    raw_stream: bool = False
    max_request_body: Optional[int] = DEFAULT_MAX_REQUEST_BODY
    body_timeout: Optional[float] = DEFAULT_BODY_TIMEOUT
    form: bool = False
    max_form_fields: int = DEFAULT_MAX_FORM_FIELDS


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    """Every limit and switch of an HTTP server (see the module doc).

    Sizes are bytes, times seconds; None turns a limit off. ``rejected_handler``:
    ``handler(request) -> response map`` answering the requests of connections
    past ``max_connections`` (with ``Connection: close``); None refuses
    those connections outright instead.
    """

    max_request_body: Optional[int] = DEFAULT_MAX_REQUEST_BODY
    header_timeout: Optional[float] = DEFAULT_HEADER_TIMEOUT
    idle_timeout: Optional[float] = DEFAULT_IDLE_TIMEOUT
    body_timeout: Optional[float] = DEFAULT_BODY_TIMEOUT
    max_connections: Optional[int] = None
    compression: bool = False
    raw_stream: bool = False
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_headers: int = DEFAULT_MAX_HEADERS
    max_pipelined: int = DEFAULT_MAX_PIPELINED
    max_form_fields: int = DEFAULT_MAX_FORM_FIELDS
    rejected_handler: Optional[Callable[[Any], Dict[str, Any]]] = busy_response

    def __post_init__(self) -> None:
        if self.max_request_body is not None and self.max_request_body < 0:
            raise ValueError(f"max_request_body must be >= 0 or None, "
                             f"got {self.max_request_body!r}")
        if self.max_connections is not None and self.max_connections < 1:
            raise ValueError(f"max_connections must be >= 1 or None, "
                             f"got {self.max_connections!r}")
        for name in ("header_timeout", "idle_timeout", "body_timeout"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 or None, got {value!r}")
        for name in ("max_header_bytes", "max_headers", "max_pipelined", "max_form_fields"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")

    def body(self, route: Optional["RouteOptions"] = None) -> BodyOptions:
        """The body options of a request to ``route`` (None: no route options)."""
        options = BodyOptions(raw_stream=self.raw_stream,
                              max_request_body=self.max_request_body,
                              body_timeout=self.body_timeout,
                              max_form_fields=self.max_form_fields)
        if route is None:
            return options
        return dataclasses.replace(options, **route.overrides)


class RouteOptions:
    """A route's own :class:`BodyOptions` values (what :func:`body_options` set)."""

    __slots__ = ("overrides",)

    def __init__(self, overrides: Dict[str, Any]) -> None:
        self.overrides = overrides

    def __repr__(self) -> str:
        return f"RouteOptions({self.overrides!r})"


F = TypeVar("F", bound=Callable[..., Any])

#: the attribute :func:`body_options` sets on a route function.
ROUTE_OPTIONS_ATTRIBUTE = "aleph_body_options"


def body_options(*, raw_stream: Any = INHERIT, max_request_body: Any = INHERIT,
                 body_timeout: Any = INHERIT, form: Any = INHERIT,
                 max_form_fields: Any = INHERIT) -> Callable[[F], F]:
    """Decorate a Klein route function (above or below ``@app.route``) with
    its own request body options (see :class:`BodyOptions`; anything not
    given is the server's). ``max_request_body=None`` lifts the cap."""
    given = {"raw_stream": raw_stream, "max_request_body": max_request_body,
             "body_timeout": body_timeout, "form": form,
             "max_form_fields": max_form_fields}
    overrides = {k: v for k, v in given.items() if v is not INHERIT}
    size = overrides.get("max_request_body")
    if size is not None and size < 0:
        raise ValueError(f"max_request_body must be >= 0 or None, got {size!r}")
    timeout = overrides.get("body_timeout")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"body_timeout must be > 0 or None, got {timeout!r}")
    if overrides.get("max_form_fields", 1) < 1:
        raise ValueError("max_form_fields must be >= 1")
    route = RouteOptions(overrides)

    def decorate(f: F) -> F:
        setattr(f, ROUTE_OPTIONS_ATTRIBUTE, route)
        return f
    return decorate


def route_options_of(endpoint: Any) -> Optional[RouteOptions]:
    """The :func:`body_options` of a route function, looking through the
    wrappers Klein puts around it (``__original__``, ``__wrapped__``)."""
    seen = 0
    while endpoint is not None and seen < 16:
        found = getattr(endpoint, ROUTE_OPTIONS_ATTRIBUTE, None)
        if isinstance(found, RouteOptions):
            return found
        endpoint = getattr(endpoint, "__original__", None) or getattr(endpoint, "__wrapped__", None)
        seen += 1
    return None


__all__ = [
    "ServerOptions", "BodyOptions", "RouteOptions", "body_options", "route_options_of",
    "busy_response", "INHERIT", "DEFAULT_MAX_REQUEST_BODY", "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_HEADER_TIMEOUT", "DEFAULT_BODY_TIMEOUT", "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_MAX_HEADERS", "DEFAULT_MAX_PIPELINED", "DEFAULT_MAX_FORM_FIELDS",
    "REJECTED_RETRY_AFTER",
]
