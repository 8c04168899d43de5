"""The statsd client: statsd lines over a :mod:`twisted_aleph.udp` socket."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from twisted.internet.defer import Deferred

from twisted_aleph import udp
from twisted_aleph.statsd.server import DEFAULT_PORT
from twisted_aleph.statsd_protocol import COUNTER, GAUGE, SET, TIMER, format_metric

Tags = Optional[Mapping[str, str]]


class StatsdClient:
    """Sends statsd lines over a :mod:`twisted_aleph.udp` socket.

    Each method returns the put's Deferred (fires when the datagram is sent);
    ``tags`` are DogStatsD tags (``{"env": "prod"}`` -> ``|#env:prod``).
    """

    def __init__(self, socket: Any, host: str = "127.0.0.1",
                 port: int = DEFAULT_PORT) -> None:
        self.socket = socket
        self.host = host
        self.port = port

    def send(self, line: str) -> Deferred:
        return self.socket.put({"host": self.host, "port": self.port, "message": line})

    def increment(self, name: str, value: float = 1, rate: float = 1.0,
                  tags: Tags = None) -> Deferred:
        return self.send(format_metric(name, value, COUNTER, rate, tags))

    def gauge(self, name: str, value: Any, tags: Tags = None) -> Deferred:
        """Set a gauge; a string such as ``"+3"`` or ``"-1"`` is a delta."""
        return self.send(format_metric(name, value, GAUGE, tags=tags))

    def timing(self, name: str, millis: float, rate: float = 1.0,
               tags: Tags = None) -> Deferred:
        return self.send(format_metric(name, millis, TIMER, rate, tags))

    def unique(self, name: str, member: str, tags: Tags = None) -> Deferred:
        """Add ``member`` to the set ``name`` (counted once per flush)."""
        return self.send(format_metric(name, str(member), SET, tags=tags))

    def close(self) -> None:
        self.socket.close()


def client(host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> Deferred:
    """Deferred[:class:`StatsdClient`] sending to ``host:port``."""
    interface = "::" if ":" in host else "0.0.0.0"
    return udp.socket(0, interface=interface).addCallback(
        lambda sock: StatsdClient(sock, host, port))


__all__ = ["StatsdClient", "client"]
