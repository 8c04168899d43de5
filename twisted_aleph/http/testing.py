"""In-memory HTTP for tests: a handler served without sockets.

``stub_pool(handler)`` is a :class:`~twisted_aleph.http.client.ConnectionPool`
whose requests never leave the process: pass it as ``pool=`` to
``http.get(...)`` and the handler (a Klein app with Ring-style routes, a
plain callable, or a resource) answers through Twisted's real HTTP parser
and client, over ``iosim`` transports (treq's ``RequestTraversalAgent``).

Responses that are not ready at once (a delayed or streamed body) need
``pool.flush()`` after whatever makes progress (``clock.advance(...)``) to
move the bytes across. Example::

    clock = task.Clock()
    pool = stub_pool(make_app(clock=clock))
    d = http.get("http://test/delayed_hello", pool=pool)
    clock.advance(1); pool.flush()
    resp = self.successResultOf(d)
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer
from treq.testing import RequestTraversalAgent

from twisted_aleph.http.client import ConnectionPool
from twisted_aleph.http.resource import handler_resource


@implementer(IBodyProducer)
class _BytesProducer:
    """A request body written at once (the in-memory agent has no cooperator
    running: treq's default file producer would never start)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> Deferred:
        consumer.write(self.data)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


def _body_producer(data: Any) -> Any:
    if isinstance(data, bytes):
        return _BytesProducer(data)
    if hasattr(data, "read"):
        return _BytesProducer(data.read())
    return IBodyProducer(data)


class StubPool(ConnectionPool):
    """A connection pool served in memory by one handler; ``flush()`` pumps."""

    def __init__(self, handler: Any, *, raw_stream: bool = False) -> None:
        agent = RequestTraversalAgent(handler_resource(handler))
        super().__init__(agent, raw_stream=raw_stream, body_producer=_body_producer)

    def flush(self) -> None:
        """Move every pending byte between the in-memory clients and server."""
        self.agent.flush()


def stub_pool(handler: Any, *, raw_stream: bool = False) -> StubPool:
    """A pool whose requests ``handler`` answers in memory (see module doc)."""
    return StubPool(handler, raw_stream=raw_stream)


__all__ = ["StubPool", "stub_pool"]
