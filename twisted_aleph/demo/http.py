"""The seed's ``aleph.examples.http`` handlers and routes, importable.

``make_app()`` builds the Klein app the seed builds with Compojure:
``/hello``, ``/delayed_hello`` (a response after 1 s, without holding a
thread), ``/numbers?count=N`` (newline-terminated numbers, one every
100 ms, streamed), the WebSocket demo's routes (/echo, /chat, / from
:mod:`twisted_aleph.demo.websocket`), anything else 404 "No such page.".

The seed shows several equivalent implementations; all are here, chosen
with ``delayed=`` and ``numbers=``:

* ``delayed="timeout"``: ``deferred.timeout`` on a Deferred nobody else
  touches, realized with the response after 1 s (``d/timeout!``);
  ``delayed="async"``: an ``async def`` awaiting a reactor delay (the
  core.async ``go`` block).
* ``numbers="periodically"``: ``stream.periodically`` + ``transform(take(n))``,
  emitting "1".."n" as the seed's ``(swap! sent inc)`` does;
  ``numbers="thread"``: a blocking iterator sleeping 100 ms per item, pulled
  in the thread pool (the lazy seq), emitting "0".."n-1";
  ``numbers="async"``: an async generator (the core.async ``go-loop``),
  "0".."n-1".

Unlike the seed (a 500 with a stack trace), a ``count`` that is not a whole
number in ASCII digits (``count=٣`` is refused, though Python's ``int``
reads it as 3), is negative or is above :data:`MAX_COUNT` is a 400 with a
one-line reason; a missing ``count`` is 0.
"""

from __future__ import annotations

import re
import time
from typing import Any, AsyncIterator, Callable, Iterator, Optional

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from twisted_aleph import deferred, stream
from twisted_aleph.demo import websocket as websocket_demo
from twisted_aleph.http.ring import BadRequest

#: the largest ``count`` /numbers accepts (a stream of ~17 minutes).
MAX_COUNT = 10000
TICK = 0.1
DELAY = 1.0


def _reactor(clock: Any) -> Any:
    if clock is None:
        from twisted.internet import reactor as clock  # type: ignore[no-redef]
    return clock


def hello_world_handler(request: Any) -> dict:
    """A basic handler which immediately returns 'hello world!'."""
    return {"status": 200,
            "headers": {"content-type": "text/plain"},
            "body": "hello world!"}


def delayed_hello_timeout(request: Any, clock: Any = None) -> Deferred:
    """'hello world!' after 1 s: ``timeout`` puts the response into a Deferred
    nothing else will ever realize (the seed's ``d/timeout!`` trick)."""
    return deferred.timeout(Deferred(), DELAY, value=hello_world_handler(request),
                            clock=_reactor(clock))


async def delayed_hello_async(request: Any, clock: Any = None) -> dict:
    """'hello world!' after 1 s, written as a coroutine (the core.async way)."""
    await deferLater(_reactor(clock), DELAY, lambda: None)
    return hello_world_handler(request)


def parse_count(request: Any) -> int:
    """``count`` from the query: missing is 0; anything else must be a whole
    number in 0..MAX_COUNT, or :class:`BadRequest` with a one-line reason."""
    raw = request.params.get("count", "0")
    shown = raw if len(raw) <= 20 else raw[:20] + "..."
    if not _WHOLE_NUMBER.fullmatch(raw):
        raise BadRequest(f"count must be a whole number, got {shown!r}")
    count = int(raw) if len(raw) <= 20 else None  # longer: not a count in range
    if count is None or not 0 <= count <= MAX_COUNT:
        raise BadRequest(f"count must be between 0 and {MAX_COUNT}, got {shown}")
    return count


# A whole number in ASCII digits: int() also takes other scripts' digits
# ("٣" is 3) and surrounding whitespace, which are not counts in a URL.
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")


def _numbers_response(body: Any) -> dict:
    return {"status": 200, "headers": {"content-type": "text/plain"}, "body": body}


def numbers_periodically(request: Any, clock: Any = None) -> dict:
    """Numbers from a periodic stream: no thread, no timer left once done or
    once the client hangs up (closing the body closes ``periodically``)."""
    count = parse_count(request)
    sent = [0]

    def next_number() -> str:
        sent[0] += 1
        return f"{sent[0]}\n"

    ticks = stream.periodically(TICK, next_number, clock=_reactor(clock))
    return _numbers_response(stream.transform(stream.take(count), ticks))


def numbers_thread(request: Any, sleep: Callable[[float], Any] = time.sleep) -> dict:
    """Numbers from a blocking iterator: it holds a pool thread while it runs."""
    count = parse_count(request)

    def numbers() -> Iterator[str]:
        for i in range(count):
            sleep(TICK)
            yield f"{i}\n"

    return _numbers_response(numbers())


def numbers_async(request: Any, clock: Any = None) -> dict:
    """Numbers from an async generator awaiting a reactor delay per item."""
    count = parse_count(request)
    reactor = _reactor(clock)

    async def numbers() -> AsyncIterator[str]:
        for i in range(count):
            await deferLater(reactor, TICK, lambda: None)
            yield f"{i}\n"

    return _numbers_response(numbers())


def make_app(clock: Any = None, *, delayed: str = "timeout", numbers: str = "periodically",
             sleep: Callable[[float], Any] = time.sleep, websocket: bool = True,
             bus: Optional[Any] = None) -> Klein:
    """The seed's routes as a Klein app. ``clock`` (default: the reactor)
    drives every delay; tests pass a ``task.Clock`` (and ``sleep`` for the
    thread variant). ``websocket=False`` leaves the WebSocket routes out.
    ``bus``: the chat rooms' EventBus (e.g. a Redis one, so chat spans
    processes: ``twistd aleph-http --bus redis://...``); default, one of its own."""
    if delayed not in ("timeout", "async"):
        raise ValueError(f"delayed must be 'timeout' or 'async', not {delayed!r}")
    if numbers not in ("periodically", "thread", "async"):
        raise ValueError(f"numbers must be 'periodically', 'thread' or 'async', "
                         f"not {numbers!r}")
    app = Klein()

    @app.route("/hello", methods=["GET", "HEAD"])
    def hello(request: Any) -> dict:
        return hello_world_handler(request)

    @app.route("/delayed_hello", methods=["GET", "HEAD"])
    def delayed_hello(request: Any) -> Any:
        if delayed == "timeout":
            return delayed_hello_timeout(request, clock)
        return delayed_hello_async(request, clock)

    @app.route("/numbers", methods=["GET", "HEAD"])
    def streaming_numbers(request: Any) -> dict:
        if numbers == "periodically":
            return numbers_periodically(request, clock)
        if numbers == "thread":
            return numbers_thread(request, sleep)
        return numbers_async(request, clock)

    if websocket:
        websocket_demo.add_routes(app, bus)
    return app


#: the default app served by ``twistd aleph-http`` (``--app twisted_aleph.demo.http:app``).
app = make_app()

__all__ = [
    "MAX_COUNT", "app", "make_app", "hello_world_handler", "delayed_hello_timeout",
    "delayed_hello_async", "numbers_periodically", "numbers_thread", "numbers_async",
    "parse_count",
]
