"""The seed's ``aleph.examples.tcp``: an EDN protocol and echo handlers.

``protocol`` is the seed's Gloss frame (uint32 length + UTF-8 EDN).
``start_server``/``client`` speak it on the fast path (an
``Int32StringReceiver`` per connection); ``start_codec_server``/
``codec_client`` are the seed's own construction, ``wrap_duplex_stream`` of
``protocol`` over a raw TCP stream. Both put the same bytes on the wire.

The handlers: ``fast_echo_handler(f)`` answers ``f(msg)`` on the reactor
thread; ``slow_echo_handler(f)`` runs ``f`` in the thread pool
(``deferred.loop``/``recur`` + ``deferred.future``), and on an error sends
``"ERROR: <exception>"`` and closes that connection;
``slow_echo_handler_async`` is the seed's ``let-flow`` variant as ``async def``.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred

from twisted_aleph import codec, edn, tcp
from twisted_aleph import deferred as d
from twisted_aleph import stream as s
from twisted_aleph.server import Server, load_object

protocol = codec.compile_frame(
    codec.finite_frame("uint32", codec.string("utf-8")),
    edn.dumps,
    edn.loads,
)

Handler = Callable[[Any, dict], Any]


def start_server(handler: Handler, port: int, **options: Any) -> Server:
    """The seed's ``start-server``: ``handler(stream of values, info)``."""
    return tcp.start_framed_server(handler, port, **options)


def client(host: str, port: int, **options: Any) -> Deferred:
    """The seed's ``client``: Deferred of a duplex stream of values."""
    return tcp.framed_client(host, port, **options)


def start_codec_server(handler: Handler, port: int, **options: Any) -> Server:
    """``start-server`` exactly as the seed builds it: the codec over raw bytes."""
    def wrapped(raw: Any, info: dict) -> Any:
        return handler(tcp.wrap_duplex_stream(protocol, raw), info)
    return tcp.start_server(wrapped, port, **options)


def codec_client(host: str, port: int, **options: Any) -> Deferred:
    """``client`` exactly as the seed builds it: the codec over raw bytes."""
    return d.chain(tcp.client(host, port, **options),
                   lambda raw: tcp.wrap_duplex_stream(protocol, raw))


def inc(x: Any) -> Any:
    """Clojure's ``inc``."""
    return x + 1


def identity(x: Any) -> Any:
    """Clojure's ``identity``: the plain echo."""
    return x


def fast_echo_handler(f: Callable[[Any], Any]) -> Handler:
    """Answer every message with ``f(msg)``, on the reactor thread.

    The stream is connected to itself through ``map``: a duplex stream's
    takes come from the peer and its puts go back to it. An error in ``f``
    (a ``codec.DecodeError`` message included) ends the pipeline, which
    closes the connection.
    """
    def handler(stream: Any, info: dict) -> None:
        s.connect(s.map(f, stream), stream)
    return handler


_NONE = object()  # the seed's ::none: "the connection is closed"


def _raise_if_error(msg: Any) -> Any:
    """A bad frame from the far end arrives as an exception value: raise it."""
    if isinstance(msg, Exception):
        raise msg
    return msg


def _send_error(stream: Any, ex: BaseException) -> None:
    """The seed's catch: send the stringified exception back, then close."""
    stream.put(f"ERROR: {ex}")
    stream.close()


def slow_echo_handler(f: Callable[[Any], Any]) -> Handler:
    """Answer every message with ``f(msg)`` computed in the thread pool."""
    def handler(stream: Any, info: dict) -> Deferred:
        def transform(msg: Any) -> Any:
            # first, check if there even was a message, then transform it on
            # another thread
            if msg is _NONE:
                return _NONE
            return d.future(f, _raise_if_error(msg))

        def write_back(result: Any) -> Any:
            if result is not _NONE:
                return stream.put(result)
            return None

        def again(ok: Any) -> Any:
            # if we were successful in our response, recur and repeat
            return d.recur() if ok else None

        def one_round() -> Deferred:
            return d.catch(
                d.chain(stream.take(_NONE), transform, write_back, again),
                lambda ex: _send_error(stream, ex))

        return d.loop(one_round)
    return handler


def slow_echo_handler_async(f: Callable[[Any], Any]) -> Handler:
    """The seed's ``let-flow`` variant: the same loop as ``async def``."""
    def handler(stream: Any, info: dict) -> Deferred:
        async def one_round() -> Any:
            try:
                msg = await stream.take(_NONE)
                if msg is _NONE:
                    return None
                result = await d.future(f, _raise_if_error(msg))
                if await stream.put(result):
                    return d.recur()
            except Exception as ex:
                _send_error(stream, ex)
            return None

        return d.loop(one_round)
    return handler


def handler_named(spec: str) -> Handler:
    """The handler for ``twistd aleph-tcp --handler``: ``inc`` (the seed's
    incrementing echo), ``echo`` (identity), or ``module:callable``, a
    ``handler(stream, info)`` of your own (dotted attributes allowed)."""
    if spec == "inc":
        return fast_echo_handler(inc)
    if spec == "echo":
        return fast_echo_handler(identity)
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--handler takes inc, echo or module:callable, not {spec!r}")
    target = load_object(spec)
    if not callable(target):
        raise ValueError(f"{spec} is not callable")
    return target
