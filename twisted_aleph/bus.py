"""Manifold's event bus: publish/subscribe over streams.

``subscribe(topic)`` returns a fresh :class:`Stream`; ``publish(topic, msg)``
puts ``msg`` into every subscriber of that topic. Each subscriber has its own
buffer, so a slow one only holds back the publish Deferred, never delivery to
the others. A subscriber that is closed is dropped from its topic at once.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Hashable, List, Optional

from twisted.internet import defer
from twisted.internet.defer import Deferred

from twisted_aleph.stream import Stream


class EventBus:
    """Topic-keyed publish/subscribe; in-process (see RedisEventBus to scale out)."""

    def __init__(self, buffer_size: int = 0,
                 stream_factory: Optional[Callable[[], Stream]] = None) -> None:
        self.buffer_size = buffer_size
        self._new_stream = stream_factory or (lambda: Stream(self.buffer_size))
        self._topics: Dict[Hashable, List[Stream]] = {}

    def subscribe(self, topic: Hashable) -> Stream:
        """A new stream of every message later published to ``topic``."""
        s = self._new_stream()
        self._topics.setdefault(topic, []).append(s)
        s.on_closed(lambda: self._unsubscribe(topic, s))
        return s

    def _unsubscribe(self, topic: Hashable, s: Stream) -> None:
        subscribers = self._topics.get(topic)
        if subscribers is None:
            return
        try:
            subscribers.remove(s)
        except ValueError:
            pass
        if not subscribers:
            del self._topics[topic]

    def publish(self, topic: Hashable, msg: Any) -> Deferred:
        """Put ``msg`` to every subscriber of ``topic``.

        Deferred[bool]: True once every subscriber has accepted it, False if
        the topic had no subscribers.
        """
        subscribers = self._topics.get(topic)
        if not subscribers:
            return defer.succeed(False)
        waits = []
        for s in list(subscribers):
            r = s.offer(msg)
            if isinstance(r, Deferred):
                waits.append(_accepted_or_closed(s, r))
        if not waits:
            return defer.succeed(True)
        return defer.gatherResults(waits, consumeErrors=True).addCallback(lambda _: True)

    def is_active(self, topic: Hashable) -> bool:
        """Whether ``topic`` has any subscriber."""
        return bool(self._topics.get(topic))

    def downstream(self, topic: Hashable) -> List[Stream]:
        """The subscriber streams of ``topic``."""
        return list(self._topics.get(topic, ()))

    def topics(self) -> List[Hashable]:
        """The topics that have at least one subscriber."""
        return list(self._topics)


def _accepted_or_closed(subscriber: Stream, put: Deferred) -> Deferred:
    """Deferred firing when ``subscriber`` accepts the pending ``put``, or
    when it is closed first: a closed subscriber is dropped, so a peer that
    hangs up with messages still waiting for it (nobody will ever take them)
    must not hold up the publisher, and with it everyone else's messages."""
    out: Deferred = Deferred()

    def closed() -> None:
        if not out.called:
            out.callback(None)

    def accepted(result: Any) -> Any:
        forget = getattr(subscriber, "_forget_on_closed", None)
        if forget is not None:  # a long-lived subscriber keeps no stale callbacks
            forget(closed)
        if not out.called:
            out.callback(None)
        return result

    subscriber.on_closed(closed)
    put.addBoth(accepted)
    return out


__all__ = ["EventBus"]
