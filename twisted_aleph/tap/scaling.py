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
import warnings
from typing import Any, Callable, Mapping, Optional, Sequence

from twisted.application.service import IService

from twisted_aleph.redisbus import RedisEventBus
from twisted_aleph.workers import StopInOrder, WorkerGroup


#: seconds the first process waits for its workers beyond their own shutdown timeout
STOP_MARGIN = 5.0


class RedisBusService(RedisEventBus):
    """Deprecated: a :class:`~twisted_aleph.redisbus.RedisEventBus` is a
    service itself; ``RedisEventBus(url, reactor=reactor, start=False)``."""

    def __init__(self, url: str, reactor: Any = None) -> None:
        warnings.warn("RedisBusService is deprecated: RedisEventBus(url, start=False) is a "
                      "service itself", DeprecationWarning, stacklevel=2)
        super().__init__(url, reactor=reactor, start=False)


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
    :class:`~twisted_aleph.redisbus.RedisEventBus` service with ``--bus``,
    else None) run by
    ``options["workers"]`` processes; on stop, the server(s) finish first,
    then the bus closes. One process and no bus: just the server service."""
    if options["workers"] == 1 and options.get("inherit-fd") is None and not options.get("bus"):
        return make_server(None, None)
    top = StopInOrder()
    bus = (RedisEventBus(options["bus"], reactor=reactor, start=False)
           if options.get("bus") else None)
    if bus is not None:
        bus.setServiceParent(top)
    WorkerGroup(lambda fd: make_server(fd, bus), workers=options["workers"],
                inherit_fd=options.get("inherit-fd"), port=options["port"],
                interface=options["interface"], argv=argv,
                stop_timeout=options["shutdown-timeout"] + STOP_MARGIN,
                reactor=reactor).setServiceParent(top)
    return top


__all__ = ["STOP_MARGIN", "RedisBusService", "worker_headers", "scaled_service"]
