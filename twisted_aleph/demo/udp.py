"""The seed's ``aleph.examples.udp``: a pared-down statsd over UDP streams.

``send_metric(socket, metric, value)`` puts ``"metric:value"`` to the
server's port; ``parse_statsd_packet(msg)`` is its inverse;
``start_statsd_server()`` sums the values per metric and emits the
accumulated map every ``period`` seconds (``stream.periodically`` plus a swap
of the accumulator: the seed's ``get-and-set!``, which on the reactor thread
needs no compare-and-set loop). Closing the returned stream closes the UDP
socket.

One difference from the seed, on purpose: a packet that does not parse is
logged and skipped instead of ending the pipeline, so one bad sender cannot
stop the server. That log is throttled (``udp.LogThrottle``: one line per
``BAD_PACKET_LOG_INTERVAL`` seconds, saying how many were held back), so a
flood of garbage cannot flood the log too. The full protocol is
:mod:`twisted_aleph.statsd`.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from twisted_aleph import stream as s
from twisted_aleph import udp

log = Logger()

SERVER_PORT = 10002

#: seconds between two "bad statsd packet" log lines (the rest are counted).
BAD_PACKET_LOG_INTERVAL = 10.0


def send_metric(socket: Any, metric: str, value: int, port: int = SERVER_PORT,
                host: str = "localhost") -> Deferred:
    """Send ``metric:value``; the Deferred fails if the message is too long."""
    return socket.put({"host": host, "port": port, "message": f"{metric}:{value}"})


def parse_statsd_packet(msg: Dict[str, Any]) -> Tuple[str, int]:
    """``{"message": b"a:1"}`` -> ``("a", 1)``; ValueError if it is not that
    (the value in ASCII digits: ``int`` alone would take ``"٣"`` for 3)."""
    message = msg["message"]
    text = message.decode("utf-8") if isinstance(message, bytes) else str(message)
    metric, value = text.split(":")
    if not value.isascii():
        raise ValueError(f"value {value[:20]!r} is not written in ASCII digits")
    return metric, int(value)


def start_statsd_server(port: int = SERVER_PORT, *, period: float = 1.0,
                        clock: Any = None, socket: Any = None,
                        interface: str = "0.0.0.0") -> Deferred:
    """Deferred of a Stream of ``{metric: total}`` maps, one per ``period``.

    ``socket`` (a duplex stream of datagram dicts) replaces the UDP socket,
    for tests; ``clock`` drives ``periodically``.
    """
    if socket is not None:
        return succeed(_run(socket, period, clock))
    return udp.socket(port, interface=interface).addCallback(_run, period, clock)


def _run(socket: Any, period: float, clock: Optional[Any]) -> s.Stream:
    accumulator: Dict[str, int] = {}
    if clock is None:
        from twisted.internet import reactor
        clock = reactor
    throttle = udp.LogThrottle(BAD_PACKET_LOG_INTERVAL)

    def get_and_reset() -> Dict[str, int]:
        nonlocal accumulator
        old, accumulator = accumulator, {}
        return old

    def accumulate(msg: Dict[str, Any]) -> None:
        try:
            metric, value = parse_statsd_packet(msg)
        except (ValueError, UnicodeDecodeError) as e:
            may_log, suppressed = throttle.allow(clock.seconds())
            if may_log:
                held_back = (" ({suppressed} more bad packets not logged since the last line)"
                             if suppressed else "")
                log.warn("ignoring bad statsd packet from {host}: {error}" + held_back,
                         host=msg.get("host"), error=e, suppressed=suppressed)
            return
        accumulator[metric] = accumulator.get(metric, 0) + value

    metric_stream = s.periodically(period, get_and_reset, clock=clock)
    s.consume(accumulate, socket)
    metric_stream.on_closed(socket.close)
    return metric_stream


__all__ = ["SERVER_PORT", "BAD_PACKET_LOG_INTERVAL", "send_metric", "parse_statsd_packet",
           "start_statsd_server"]
