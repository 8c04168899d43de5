"""HTTP: Aleph's ``aleph.http`` on Twisted (server on Klein, client on treq).

Server: ``start_server(handler, port)`` (:mod:`.server`) serves a Klein
app whose routes may return Ring-style response maps (:mod:`.ring`);
routing and error pages are :mod:`.resource`'s; ``BadRequest`` makes a
400. Client: ``get``/``post``/``put``/``delete``/``request`` and
``connection_pool`` (see :mod:`.client`). Streamed bodies both ways are in
:mod:`.body`; in-memory test helpers in :mod:`.testing`. WebSocket:
``websocket_connection`` and ``websocket_client`` (:mod:`.websocket`).
"""

from __future__ import annotations

from twisted_aleph.http.client import (
    BodyTooLarge, ConnectionPool, HTTPError, connection_pool, delete, get, head, post, put, request,
)
from twisted_aleph.http.resource import RingResource, handler_resource
from twisted_aleph.http.ring import BadRequest
from twisted_aleph.http.server import HTTPServerService, load_handler, start_server
from twisted_aleph.http.websocket import (
    NotAWebSocket, closed, websocket_client, websocket_close, websocket_connection,
)

__all__ = [
    "start_server", "BadRequest", "RingResource", "HTTPServerService", "handler_resource",
    "load_handler", "connection_pool", "ConnectionPool", "HTTPError", "BodyTooLarge", "request", "get",
    "post", "put", "delete", "head", "websocket_connection", "websocket_client",
    "websocket_close", "closed", "NotAWebSocket",
]
