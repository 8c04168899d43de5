"""Ring's side of the HTTP server: a route's answer becomes bytes on the request.

Aleph's handlers return ``{"status", "headers", "body"}``; Klein's route
functions return bytes, str or an ``IResource``. :func:`adapt_result` takes
whatever a route returns, or the Deferred or coroutine it returns fires
with, before Klein renders it:

* a response map is applied by :func:`respond`: sized bodies (str, bytes,
  lists of chunks, in-memory files) go out with a Content-Length;
  streamed ones (a Stream, an async iterator, a Deferred, a file, any other
  iterable, which is pulled in the thread pool as the seed's lazy seq holds
  a thread) go out chunked through a :class:`~.body.StreamProducer`
  registered on the request: a slow reader pauses the source, a reader who
  hangs up closes it;
* bytes, str and resources are Klein's, untouched;
* once ``websocket_connection`` took the connection over
  (``request.aleph_upgraded``), nothing is written, whatever was returned.

``request.params`` holds the decoded query and form parameters (ring's
``wrap-params``): ``str -> str``, the *first* value of a repeated key; every
value is in ``request.param_lists`` (``str -> [str]``). Parameters that are
not UTF-8 are a :class:`BadRequest` (a 400). On the server's own requests
(:class:`~.server_request.AlephRequest`) the query is checked before the route runs
and the form is decoded on first use (:func:`attach_params`); on any other
twisted.web request both are decoded before the route runs.

Cost: one adapter call per response map, no object of its own for a sized
body.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from twisted_aleph import stream
from twisted_aleph.http.body import (
    StreamProducer, file_size, file_source, to_chunk,
)

log = Logger()

#: Ring-style response map.
ResponseMap = Dict[str, Any]


class BadRequest(Exception):
    """Raise from a handler to answer 400 with ``str(exc)`` as the body."""

    #: the response's status code
    status = 400


class PayloadTooLarge(BadRequest):
    """Raise from a handler to answer 413 with ``str(exc)`` as the body."""

    status = 413


# -- parameters (ring's wrap-params) ---------------------------------------

def decode_params(request: Any) -> Tuple[Dict[str, str], Dict[str, List[str]]]:
    """Query and form parameters as (first value by name, all values by name):
    ``request.args`` (bytes, as twisted.web parsed them) decoded as UTF-8."""
    return decode_args(getattr(request, "args", None) or {})


def decode_args(args: Dict[Any, List[Any]]) -> Tuple[Dict[str, str], Dict[str, List[str]]]:
    """``{bytes: [bytes]}`` as (first value by name, all values by name),
    decoded as UTF-8; :class:`BadRequest` if they are not."""
    params: Dict[str, str] = {}
    lists: Dict[str, List[str]] = {}
    if not args:
        return params, lists
    try:
        for key, values in args.items():
            name = key.decode("utf-8") if isinstance(key, bytes) else key
            decoded = [v.decode("utf-8") if isinstance(v, bytes) else v for v in values]
            lists[name] = decoded
            if decoded:
                params[name] = decoded[0]
    except UnicodeDecodeError:
        raise BadRequest("Parameters must be UTF-8.") from None
    return params, lists


def attach_params(request: Any) -> None:
    """Before a route runs: set ``request.params`` and ``request.param_lists``
    (once per request); on a request that decodes them when first used
    (``lazy_params``), only check the query."""
    if getattr(request, "lazy_params", False):
        request.check_query_params()
        return
    if getattr(request, "param_lists", None) is None:
        if getattr(request, "args", None):
            request.params, request.param_lists = decode_params(request)
        else:  # fresh dicts: a handler may add to its request's params
            request.params, request.param_lists = {}, {}


# -- response maps -----------------------------------------------------------

def _sized_body(body: Any) -> Optional[bytes]:
    """The body as bytes if it is already in memory, else None (streamed)."""
    if type(body) is str:
        return body.encode("utf-8")
    if body is None:
        return b""
    if isinstance(body, (bytes, str, bytearray, memoryview)):
        return to_chunk(body)
    if isinstance(body, (list, tuple)):
        return b"".join(to_chunk(x) for x in body)
    if hasattr(body, "getvalue") and hasattr(body, "tell"):  # io.BytesIO
        data = body.getvalue()[body.tell():]
        return to_chunk(data)
    return None


class _BodyFailure:
    """Set once a streamed body's iterator or Deferred failed (the stream
    layer logs the error and closes the source as if the body had ended)."""

    __slots__ = ("failed",)

    def __init__(self) -> None:
        self.failed = False

    def record(self, failure: Failure) -> Failure:
        """Errback: note the failure and pass it on (to be logged)."""
        self.failed = True
        return failure


class _WatchedIterator:
    """An iterator that records in ``watch`` that it raised."""

    __slots__ = ("it", "watch")

    def __init__(self, it: Any, watch: _BodyFailure) -> None:
        self.it = it
        self.watch = watch

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        try:
            return next(self.it)
        except StopIteration:
            raise
        except BaseException:
            self.watch.failed = True
            raise


class _WatchedAsyncIterator:
    """An async iterator that records in ``watch`` that it raised."""

    __slots__ = ("ait", "watch")

    def __init__(self, ait: Any, watch: _BodyFailure) -> None:
        self.ait = ait
        self.watch = watch

    def __aiter__(self) -> Any:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.ait.__anext__()
        except StopAsyncIteration:
            raise
        except BaseException:
            self.watch.failed = True
            raise


def _body_source(body: Any) -> Tuple[Any, Optional[_BodyFailure]]:
    """A source stream for a body that is not in memory, and what records
    that the body failed partway (iterators and Deferreds; else None)."""
    if hasattr(body, "read"):
        return file_source(body), None
    if hasattr(body, "_add_edge"):
        return stream.to_source(body), None
    watch = _BodyFailure()
    if isinstance(body, Deferred):
        return stream.to_source(body.addErrback(watch.record)), watch
    if hasattr(body, "__aiter__") or hasattr(body, "__anext__"):
        ait = body.__aiter__() if hasattr(body, "__aiter__") else body
        return stream.to_source(_WatchedAsyncIterator(ait, watch)), watch
    if hasattr(body, "__iter__"):
        return stream.to_source(_WatchedIterator(iter(body), watch), blocking=True), watch
    raise TypeError(f"unsupported response body type {type(body).__name__}")


def _close_body(body: Any, source: Any) -> None:
    """An invalid response map: close its body's source, or the body itself."""
    try:
        if source is not None:
            source.close()
        elif callable(getattr(body, "close", None)) and not isinstance(body, Deferred):
            body.close()
    except Exception:
        log.failure("error closing the body of an invalid response map")


def _set_headers(request: Any, headers: Any) -> None:
    raw = request.responseHeaders
    for name, value in headers.items():
        if type(value) is str or type(value) is bytes:
            raw.setRawHeaders(name, [value])
        elif isinstance(value, (list, tuple)):
            raw.setRawHeaders(name, [str(v) if isinstance(v, int) else v for v in value])
        else:
            raw.setRawHeaders(name, [str(value) if isinstance(value, int) else value])


class _NoResponse(Resource):
    """Rendered when the response is already taken care of (a streamed body
    under way, or a connection a WebSocket took over): Klein writes nothing."""

    isLeaf = True

    def render(self, request: Any) -> Any:
        return NOT_DONE_YET


NO_RESPONSE = _NoResponse()


def respond(request: Any, response: ResponseMap) -> Any:
    """Apply a Ring-style response map to ``request``.

    Returns the body bytes for Klein to write (sized bodies, Content-Length
    set), or :data:`NO_RESPONSE` once a streamed body is under way. A map
    that is not valid raises before any byte is written, so it becomes a
    500; its body (a Stream, a file...) is closed first.
    """
    status = response.get("status", 200)
    headers = response.get("headers")
    body = response.get("body")
    source = watch = None
    if request.finished or getattr(request, "_disconnected", False):
        # already answered (the server refused the request's body) or gone
        _close_body(body, None)
        return NO_RESPONSE
    try:
        if not isinstance(status, int) or not 100 <= status <= 999:
            raise ValueError(f"response status must be an int, got {status!r}")
        sized = _sized_body(body)
        size = file_size(body) if sized is None and hasattr(body, "read") else None
        if status != 200:
            request.setResponseCode(status)
        has_length = False
        if headers:
            _set_headers(request, headers)
            has_length = request.responseHeaders.hasHeader(b"content-length")
        if sized is None:  # last: a file source starts reading at once
            source, watch = _body_source(body)
    except BaseException:
        _close_body(body, source)  # a feeder must not block, a file not leak
        raise
    if sized is not None:
        if not has_length:
            request.setHeader(b"content-length", b"%d" % len(sized))
        return sized  # Klein writes it (Twisted drops it for HEAD) and finishes
    if request.method == b"HEAD":
        source.close()
        request.write(b"")
        request.finish()
        return NO_RESPONSE
    if size is not None and not has_length:
        request.setHeader(b"content-length", b"%d" % size)
    _send_streamed(request, source, watch)
    return NO_RESPONSE


def _send_streamed(request: Any, source: Any, watch: Optional[_BodyFailure] = None) -> None:
    """Write ``source`` as the body (chunked), then finish the request; cut
    the connection instead if the body failed partway (``watch``)."""
    request.write(b"")  # the status line and headers go out now, not at the first chunk
    producer = StreamProducer(request)
    request.registerProducer(producer, True)
    request.notifyFinish().addErrback(lambda _: producer.stopProducing())

    def done(drained: bool) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return
        request.unregisterProducer()
        if drained and not (watch is not None and watch.failed):
            request.finish()
        else:
            # Headers are out: the only honest signal left is a cut connection.
            request.loseConnection()

    producer.start(source).addCallback(done)


def adapt_result(request: Any, result: Any) -> Any:
    """Turn a route's result into something Klein renders (see module doc)."""
    if type(result) is dict and not getattr(request, "aleph_upgraded", False):
        return respond(request, result)  # the common case first
    if isinstance(result, Deferred):
        return result.addCallback(_adapt_later, request)
    if inspect.iscoroutine(result):
        return ensureDeferred(result).addCallback(_adapt_later, request)
    if getattr(request, "aleph_upgraded", False):
        return NO_RESPONSE
    if isinstance(result, dict):
        return respond(request, result)
    return result


def _adapt_later(result: Any, request: Any) -> Any:
    """``adapt_result`` as a Deferred callback (an argument, not a closure)."""
    return adapt_result(request, result)


__all__ = [
    "BadRequest", "PayloadTooLarge", "ResponseMap", "decode_params", "decode_args",
    "attach_params", "respond",
    "adapt_result", "NO_RESPONSE",
]
