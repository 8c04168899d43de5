"""The HTTP server module (``twisted_aleph.http.server``): what it still
exports, and the in-memory connection the HTTP tests share.

``RawConnection`` is one HTTP connection into a handler, with the test
standing in for the socket: straight into an ``HTTPChannel`` on a
``StringTransport`` (pausing it, hanging up). The Ring side is tested in
``test_http_ring``, dispatch and error pages in ``test_http_resource``,
shutdown in ``test_shutdown``.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

from klein import Klein
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted_aleph import http
from twisted_aleph.http.server import make_site


def body_of(resp: dict) -> bytes:
    return resp["body"].read()


class RawConnection:
    """One HTTP connection into a handler, the test standing in for the socket:
    the server's own site (``make_site``), with ``options`` and a ``task.Clock``
    (``clock``) or a site given as is (``site``)."""

    def __init__(self, handler: Any = None, *, site: Any = None, clock: Any = None,
                 options: Any = None, peer: str = "127.0.0.1",
                 transport: Any = None) -> None:
        self.clock = clock if clock is not None else task.Clock()
        if site is None:
            site = make_site(handler, options=options, reactor=self.clock)
        self.site = site
        address = IPv4Address("TCP", peer, 5555)
        self.channel = self.site.buildProtocol(address)
        self.transport = transport if transport is not None else StringTransport()
        self.transport.peerAddr = address
        self.channel.makeConnection(self.transport)
        self.http = self.channel._channel  # the HTTPChannel inside Twisted's H1/H2 switch

    def send(self, data: bytes) -> None:
        self.channel.dataReceived(data)

    def get(self, path: str) -> None:
        self.send(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: test\r\n\r\n")

    def received(self) -> bytes:
        return self.transport.value()

    def hang_up(self) -> None:
        self.channel.connectionLost(Failure(ConnectionDone()))


def get_body(make_body: Callable[[], Any]) -> RawConnection:
    """A connection that has asked GET / of a route answering ``{"body": make_body()}``."""
    app = Klein()

    @app.route("/")
    def root(request: Any) -> dict:
        return {"body": make_body()}
    conn = RawConnection(app)
    conn.get("/")
    return conn


class MovedNamesTests(unittest.TestCase):
    """Names that moved from http.server to http.ring and http.resource still
    import from http.server for one release, with a DeprecationWarning."""

    MOVED = {
        "BadRequest": "ring", "decode_params": "ring", "respond": "ring",
        "adapt_result": "ring", "RingResource": "resource", "handler_resource": "resource",
        "NOT_FOUND_BODY": "resource",
    }

    def test_old_names_warn_and_are_the_new_objects(self) -> None:
        from twisted_aleph.http import resource, ring, server
        homes = {"ring": ring, "resource": resource}
        for name, home in self.MOVED.items():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                value = getattr(server, name)
            self.assertIs(value, getattr(homes[home], name), name)
            self.assertEqual([w.category for w in caught], [DeprecationWarning], name)
            self.assertIn(f"twisted_aleph.http.{home}", str(caught[0].message))
            self.assertEqual(caught[0].filename, __file__)  # points at the caller

    def test_from_import_warns(self) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from twisted_aleph.http.server import BadRequest
        self.assertIs(BadRequest, http.BadRequest)
        self.assertEqual([w.category for w in caught], [DeprecationWarning])
        self.assertEqual(caught[0].filename, __file__)

    def test_other_names_are_still_missing(self) -> None:
        from twisted_aleph.http import server
        with self.assertRaises(AttributeError):
            server.no_such_name  # noqa: B018
        self.assertNotIn("respond", server.__all__)

    def test_the_facade_exports_what_it_did_without_warning(self) -> None:
        # (load_handler is not HTTP's: it became twisted_aleph.server.load_object, and the
        # facade's name warns; tests/test_tap.py checks every such alias)
        names = ["start_server", "BadRequest", "RingResource", "HTTPServerService",
                 "handler_resource"]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            values = [getattr(http, name) for name in names]
        self.assertEqual(caught, [])
        self.assertTrue(all(callable(v) for v in values))
        self.assertLessEqual(set(names), set(http.__all__))
