"""HTTP: Aleph's ``aleph.http`` on Twisted (server on Klein, client on treq).

Server: ``start_server(handler, port)`` (:mod:`.server`) serves a Klein
app whose routes may return Ring-style response maps (:mod:`.ring`);
routing and error pages are :mod:`.resource`'s; ``BadRequest`` makes a
400. Its limits and switches are ``ServerOptions`` (:mod:`.options`), a
route's own body options ``body_options``; connections are
:mod:`.channel`'s, requests :mod:`.server_request`'s.
Client: ``get``/``post``/``put``/``delete``/``request`` and
``connection_pool`` (see :mod:`.client`; limits and timeouts in :mod:`.pool`,
proxies in :mod:`.proxy`, cookies in :mod:`.cookies`, bodies in
:mod:`.content`, what it raises in :mod:`.errors`). Streamed bodies both ways are in
:mod:`.body`; in-memory test helpers in :mod:`.testing`. WebSocket:
``websocket_connection`` and ``websocket_client`` (:mod:`.websocket`).
"""

from __future__ import annotations

import warnings
from typing import Any

from twisted_aleph.http.client import (
    ConnectionPool, connection_pool, delete, get, head, post, put, request,
)
from twisted_aleph.http.errors import (
    BadResponseBody, BodyTooLarge, ConnectTimeout, HTTPError, MultipartError, PoolTimeout,
    ProxyError, ReadTimeout, RequestTimeout, TimeoutError, TooManyRedirects,
)
from twisted_aleph.http.body import RequestBodyError
from twisted_aleph.http.options import ServerOptions, body_options
from twisted_aleph.http.resource import RingResource, handler_resource
from twisted_aleph.http.ring import BadRequest, PayloadTooLarge
from twisted_aleph.http.server import HTTPServerService, start_server
from twisted_aleph.http.websocket import (
    NotAWebSocket, closed, websocket_client, websocket_close, websocket_connection,
)

__all__ = [
    "start_server", "BadRequest", "PayloadTooLarge", "RingResource", "HTTPServerService",
    "handler_resource", "ServerOptions", "body_options", "RequestBodyError",
    "connection_pool", "ConnectionPool", "HTTPError", "BodyTooLarge", "request", "get",
    "post", "put", "delete", "head", "TimeoutError", "ConnectTimeout", "PoolTimeout", "ReadTimeout",
    "RequestTimeout", "ProxyError", "TooManyRedirects", "BadResponseBody", "MultipartError",
    "websocket_connection", "websocket_client",
    "websocket_close", "closed", "NotAWebSocket",
]


def __getattr__(name: str) -> Any:
    """``load_handler``, now :func:`twisted_aleph.server.load_object` (it is
    not HTTP's): still found here for one release, with a DeprecationWarning."""
    if name == "load_handler":
        from twisted_aleph.server import load_object
        warnings.warn("twisted_aleph.http.load_handler is deprecated: use "
                      "twisted_aleph.server.load_object", DeprecationWarning, stacklevel=2)
        return load_object
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
