"""The service tree around a command's server: ``--workers N`` processes
sharing its port, and the chat rooms' bus on Redis (``--bus``).

:func:`scaled_service` builds it from the options of
:class:`~twisted_aleph.tap.options.ScalingOptions` and
:class:`~twisted_aleph.tap.options.BusOptions`; the processes themselves
(the shared socket, the pool of workers, a worker's watch on its parent) are
:mod:`twisted_aleph.workers`. Cost at run time: nothing per connection, the
kernel spreads them among the processes.
"""

from __future__ import annotations

import os
from typing import Any, Callable, List, Mapping, Optional, Sequence

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from twisted_aleph.workers import StopInOrder, WorkerGroup

log = Logger()

#: seconds the first process waits for its workers beyond their own shutdown timeout
STOP_MARGIN = 5.0


class RedisBusService(Service):
    """The chat rooms' bus as a service: a :class:`~twisted_aleph.redisbus.
    RedisEventBus` on ``url``, connected when the service starts and closed
    when it stops. It has the EventBus interface itself (handlers are built
    before the service starts, and keep this object)."""

    def __init__(self, url: str, reactor: Any = None) -> None:
        from twisted_aleph.resp import parse_pubsub_url
        parse_pubsub_url(url)  # ValueError now rather than at start
        self.url = url
        self._reactor = reactor
        self.bus: Any = None

    def startService(self) -> None:
        super().startService()
        from twisted_aleph.redisbus import RedisEventBus
        self.bus = RedisEventBus(self.url, reactor=self._reactor)
        self.bus.when_connected().addCallbacks(
            lambda _: log.info("chat rooms on Redis at {url}", url=self.url),
            lambda f: log.failure("cannot reach Redis at {url}", f, url=self.url))

    def stopService(self) -> Optional[Deferred]:
        super().stopService()
        bus, self.bus = self.bus, None
        return bus.close() if bus is not None else None

    def _started(self) -> Any:
        if self.bus is None:
            raise RuntimeError("the Redis bus service is not running")
        return self.bus

    def subscribe(self, topic: Any) -> Any:
        return self._started().subscribe(topic)

    def publish(self, topic: Any, msg: Any) -> Deferred:
        return self._started().publish(topic, msg)

    def when_subscribed(self, topic: Any) -> Deferred:
        return self._started().when_subscribed(topic)

    def is_active(self, topic: Any) -> bool:
        return self.bus is not None and self.bus.is_active(topic)

    def downstream(self, topic: Any) -> List[Any]:
        return self.bus.downstream(topic) if self.bus is not None else []


def worker_headers(options: Mapping[str, Any]) -> Optional[dict]:
    """``x-aleph-worker: <pid>`` on every HTTP response when several
    processes serve the port (so a client can tell who answered)."""
    if options["workers"] > 1 or options.get("inherit-fd") is not None:
        return {"x-aleph-worker": str(os.getpid())}
    return None


def scaled_service(options: Mapping[str, Any],
                   make_server: Callable[[Optional[int], Any], IService], *,
                   argv: Optional[Sequence[str]] = None, reactor: Any = None) -> IService:
    """A command's whole service: ``make_server(fd, bus)`` (see
    :class:`~twisted_aleph.workers.WorkerGroup`; ``bus`` is a
    :class:`RedisBusService` with ``--bus``, else None) run by
    ``options["workers"]`` processes; on stop, the server(s) finish first,
    then the bus closes. One process and no bus: just the server service."""
    if options["workers"] == 1 and options.get("inherit-fd") is None and not options.get("bus"):
        return make_server(None, None)
    top = StopInOrder()
    bus = RedisBusService(options["bus"], reactor) if options.get("bus") else None
    if bus is not None:
        bus.setServiceParent(top)
    WorkerGroup(lambda fd: make_server(fd, bus), workers=options["workers"],
                inherit_fd=options.get("inherit-fd"), port=options["port"],
                interface=options["interface"], argv=argv,
                stop_timeout=options["shutdown-timeout"] + STOP_MARGIN,
                reactor=reactor).setServiceParent(top)
    return top


__all__ = ["STOP_MARGIN", "RedisBusService", "worker_headers", "scaled_service"]
