"""The HTTP server: Klein routes answering Ring-style response maps.

Aleph's handlers return ``{"status", "headers", "body"}``; Klein's route
functions return bytes, str or an ``IResource``. :class:`RingResource`
serves a Klein app and accepts both: it wraps the app (same routes, same
error handlers, nothing copied) so that whatever a route returns, or the
Deferred or coroutine it returns fires with, is adapted before Klein
renders it:

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

Before a route runs, ``request.params`` holds the decoded query and form
parameters (ring's ``wrap-params``): ``str -> str``, the *first* value of a
repeated key; every value is in ``request.param_lists`` (``str -> [str]``).
Parameters that are not UTF-8 are a 400.

Errors (after the app's own ``handle_errors`` handlers): unknown path, 404
"No such page."; :class:`BadRequest` (raise it with a one-line reason), 400
with that reason; any other werkzeug HTTP error, its status and name; any
other exception, a 500 "Internal server error." with the traceback in the
log only. A plain callable ``handler(request)`` is served the same way, as
one catch-all route (a None answer is a 404).

Shutdown: :meth:`HTTPServer.shutdown` (what ``HTTPServerService`` does when
twistd stops it, on SIGTERM) stops accepting, closes idle keep-alive
connections, lets requests in flight finish (their connections then close,
``Connection: close``), sends open WebSockets a close frame 1001, and cuts
whatever is still open after the timeout.

Cost: one adapter call per response map, no object of its own for a sized
body; the hot path (``/hello``) allocates no Deferred beyond Klein's.
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

from klein import Klein
from klein import Response as KleinResponse
from klein.interfaces import IKleinRequest
from klein.resource import KleinResource
from twisted.application import service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, gatherResults
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRenderable
from twisted.web.resource import IResource, Resource, getChildForRequest
from twisted.web.server import NOT_DONE_YET, Site
from twisted.web.template import renderElement
from werkzeug.exceptions import HTTPException, NotFound

from twisted_aleph import stream
from twisted_aleph.http.body import (
    StreamProducer, file_size, file_source, to_chunk,
)
from twisted_aleph.server import Server, restore_gc, tune_gc

log = Logger()

#: Ring-style response map.
ResponseMap = Dict[str, Any]
Handler = Union[Klein, Callable[[Any], Any]]

NOT_FOUND_BODY = b"No such page."
#: listen backlog (as Netty's default, the usual somaxconn).
DEFAULT_BACKLOG = 1024
INTERNAL_ERROR_BODY = b"Internal server error."


class BadRequest(Exception):
    """Raise from a handler to answer 400 with ``str(exc)`` as the body."""


# -- parameters (ring's wrap-params) ---------------------------------------

def decode_params(request: Any) -> Tuple[Dict[str, str], Dict[str, List[str]]]:
    """Query and form parameters as (first value by name, all values by name).

    twisted.web already parsed the query string and urlencoded/multipart
    bodies into ``request.args`` (bytes); this decodes them as UTF-8.
    """
    params: Dict[str, str] = {}
    lists: Dict[str, List[str]] = {}
    args = getattr(request, "args", None)
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
    """Set ``request.params`` and ``request.param_lists`` (once per request)."""
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


# -- errors --------------------------------------------------------------------

def _plain_error(request: Any, code: int, body: bytes) -> Any:
    if getattr(request, "aleph_upgraded", False):
        return NO_RESPONSE
    if request.startedWriting:
        # Too late for a status line: cut the connection so the client knows.
        request.loseConnection()
        return NO_RESPONSE
    kept = Headers()
    site_headers = getattr(getattr(request, "site", None), "response_headers", None) or ()
    # set by twisted.web (server, date) or the site (x-aleph-worker) before the handler ran
    for name in (b"server", b"date") + tuple(n for n, _ in site_headers):
        values = request.responseHeaders.getRawHeaders(name)
        if values:
            kept.setRawHeaders(name, values)
    request.responseHeaders = kept
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"content-length", b"%d" % len(body))
    return body


def _not_found(request: Any, failure: Failure) -> Any:
    return _plain_error(request, 404, NOT_FOUND_BODY)


def _bad_request(request: Any, failure: Failure) -> Any:
    reason = str(failure.value).splitlines()[0] if str(failure.value) else "Bad request."
    return _plain_error(request, 400, reason.encode("utf-8"))


def _http_error(request: Any, failure: Failure) -> Any:
    error = failure.value
    body = _plain_error(request, error.code or 500, (error.name or "Error").encode("utf-8"))
    if isinstance(body, bytes):
        for name, value in error.get_headers():  # e.g. Allow, for a 405
            if name.lower() not in ("content-type", "content-length"):
                request.setHeader(name, value)
    return body


def _internal_error(request: Any, failure: Failure) -> Any:
    log.failure("handler failed on {method} {uri}", failure,
                method=request.method.decode("ascii", "replace"),
                uri=request.uri.decode("ascii", "replace"))
    return _plain_error(request, 500, INTERNAL_ERROR_BODY)


_DEFAULT_ERROR_HANDLERS = [
    ([NotFound], _not_found),
    ([BadRequest], _bad_request),
    ([HTTPException], _http_error),
    ([Exception], _internal_error),
]
_DEFAULT_HANDLER_FUNCS = frozenset(f for _, f in _DEFAULT_ERROR_HANDLERS)


# -- the Klein adapter ------------------------------------------------------------

class _RingRoutes:
    """The view of a Klein app that KleinResource drives: the app's own routes
    and error handlers, with results adapted and default error pages last."""

    def __init__(self, app: Klein) -> None:
        self.app = app

    @property
    def url_map(self) -> Any:
        return self.app.url_map

    @property
    def endpoints(self) -> Any:
        return self.app.endpoints

    @property
    def _error_handlers(self) -> List[Any]:
        return list(self.app._error_handlers) + _DEFAULT_ERROR_HANDLERS

    def execute_endpoint(self, endpoint: str, request: Any, *args: Any, **kwargs: Any) -> Any:
        attach_params(request)
        return adapt_result(request, self.app.execute_endpoint(endpoint, request, *args, **kwargs))

    def execute_error_handler(self, handler: Any, request: Any, failure: Failure) -> Any:
        if handler in _DEFAULT_HANDLER_FUNCS:
            return handler(request, failure)
        return adapt_result(request, self.app.execute_error_handler(handler, request, failure))


class RingResource(KleinResource):
    """Serve a Klein app whose routes may answer Ring-style response maps.

    Routing is Klein's: the app's werkzeug map, ``branch`` routes fixing up
    ``prepath``/``postpath``, ``IKleinRequest(request).mapper`` for
    ``url_for``, its error handlers in order (then the defaults above);
    results may be Klein's too (bytes, str, a resource, a renderable, a
    ``klein.Response``). A route's pending Deferred is cancelled if the
    client goes away. The rendering is done here rather than by
    ``KleinResource.render``, whose per-request closures refer to
    themselves: that cycle kept each finished request's objects (some forty)
    alive until CPython's cyclic collector ran, its main load with thousands
    of requests in flight. Nothing here refers back to itself, so reference
    counting frees a finished request at once.
    """

    def __init__(self, app: Klein) -> None:
        routes = _RingRoutes(app)
        super().__init__(routes)  # type: ignore[arg-type]
        self.app = app
        self._routes = routes

    def render(self, request: Any) -> Any:
        try:
            scheme, host, script, path = _url_parts(request)
        except UnicodeDecodeError:
            return _plain_error(request, 400, b"Non-UTF-8 encoding in URL.")
        routes = self._routes
        mapper = routes.url_map.bind(host, script, path_info=path, url_scheme=scheme,
                                     default_method=request.method.decode("latin-1"))
        IKleinRequest(request).mapper = mapper
        try:
            rule, kwargs = mapper.match(return_rule=True)
            count = routes.endpoints[rule.endpoint].segment_count
            request.prepath.extend(request.postpath[:count])
            request.postpath = request.postpath[count:]
            result = routes.execute_endpoint(rule.endpoint, request, **kwargs)
        except Exception:
            _handle_failure(Failure(), request, routes, 0)
        else:
            if isinstance(result, Deferred) and not result.called:
                request.notifyFinish().addErrback(_cancel_pending, result)
            _deliver(result, request, routes, 0)
        return NOT_DONE_YET


def _url_parts(request: Any) -> Tuple[str, str, str, str]:
    """(scheme, host[:port], script name, path info) to bind the URL map
    (as WSGI would), decoded as UTF-8."""
    secure = request.isSecure()
    host = request.getRequestHostname()
    port = request.getHost().port
    if port != (443 if secure else 80):
        host = b"%s:%d" % (host, port)
    return ("https" if secure else "http", host.decode("utf-8"),
            _rooted(request.prepath), _rooted(request.postpath))


def _rooted(segments: List[bytes]) -> str:
    """Path segments as one path starting with "/" ("" when there are none)."""
    if not segments:
        return ""
    path = b"/".join(segments)
    return (path if path.startswith(b"/") else b"/" + path).decode("utf-8")


def _gone(request: Any) -> bool:
    """The response is complete, or the client went away."""
    return request.finished or getattr(request, "_disconnected", False)


def _cancel_pending(reason: Failure, d: Deferred) -> None:
    """The client went away: a route's Deferred still pending is cancelled."""
    if not d.called:
        d.cancel()


def _deliver(result: Any, request: Any, routes: _RingRoutes, handlers_tried: int) -> None:
    """Write what a route (or the error handler at ``handlers_tried - 1``)
    produced, a value or a Deferred of one; failures go to the next handlers."""
    if isinstance(result, Deferred):
        result.addCallbacks(_deliver, _handle_failure,
                            callbackArgs=(request, routes, handlers_tried),
                            errbackArgs=(request, routes, handlers_tried))
        result.addErrback(_log_unhandled, request)
        return
    try:
        body = _renderable(result, request)
    except Exception:
        _handle_failure(Failure(), request, routes, handlers_tried)
        return
    if body is _RENDERED:
        return
    if isinstance(body, str):
        body = body.encode("utf-8")
    if isinstance(body, bytes):
        request.write(body)
    if not _gone(request):
        request.finish()


_RENDERED = object()  # the result rendered itself (a resource or template)


def _renderable(result: Any, request: Any) -> Any:
    """Render a resource, a template element or a ``klein.Response`` (as Klein
    does) and answer :data:`_RENDERED`; anything else is the body."""
    if isinstance(result, KleinResponse):
        result = result._applyToRequest(request)  # how a klein.Response applies itself
    if IResource.providedBy(result):
        request.render(getChildForRequest(result, request))
        return _RENDERED
    if IRenderable.providedBy(result):
        renderElement(request, result)
        return _RENDERED
    return result


def _handle_failure(failure: Failure, request: Any, routes: _RingRoutes,
                    handlers_tried: int) -> None:
    """The first error handler after ``handlers_tried`` whose types match
    answers; if it fails too, the ones after it are tried."""
    if _gone(request):
        if not failure.check(CancelledError):
            log.failure("error after the response was over", failure)
        return
    handlers = routes._error_handlers
    for index in range(handlers_tried, len(handlers)):
        types, handler = handlers[index]
        if failure.check(*types):
            try:
                result = routes.execute_error_handler(handler, request, failure)
            except Exception:
                failure = Failure()
                continue
            _deliver(result, request, routes, index + 1)
            return
    request.processingFailed(failure)  # nothing matched: twisted.web's 500 (logged)


def _log_unhandled(failure: Failure, request: Any) -> None:
    log.failure("error writing the response to {uri}", failure,
                uri=request.uri.decode("ascii", "replace"))


def _catch_all_app(handler: Callable[[Any], Any]) -> Klein:
    """A Klein app routing every path and method to ``handler(request)``."""
    app = Klein()

    @app.route("/", branch=True)
    def everything(request: Any) -> Any:
        return _none_is_not_found(handler(request))

    return app


def _none_is_not_found(result: Any) -> Any:
    if isinstance(result, Deferred):
        return result.addCallback(_none_is_not_found)
    if inspect.iscoroutine(result):
        return ensureDeferred(result).addCallback(_none_is_not_found)
    if result is None:
        raise NotFound()
    return result


def handler_resource(handler: Any) -> IResource:
    """The ``IResource`` serving ``handler``: a Klein app (response maps
    allowed), a plain ``handler(request)`` callable, or a resource as is."""
    if isinstance(handler, Klein):
        return RingResource(handler)
    if IResource.providedBy(handler):
        return handler
    if callable(handler):
        return RingResource(_catch_all_app(handler))
    raise TypeError(f"cannot serve {handler!r}: expected a Klein app or a callable")


# -- listening -------------------------------------------------------------------

#: seconds a graceful shutdown gives in-flight responses and WebSocket close
#: handshakes before cutting what is left (the plugins' ``--shutdown-timeout``).
DEFAULT_SHUTDOWN_TIMEOUT = 10.0


class AlephSite(Site):
    """A Site that records its connections on a :class:`Server`.

    It also knows its live HTTP channels (``channels``) and the WebSocket
    connections taken over from them (``websockets``), so that a graceful
    shutdown can finish the one and say goodbye to the other.
    ``response_headers`` (``[(name, value)]`` as bytes) are set on every
    response before the route runs (e.g. ``x-aleph-worker``).
    """

    def __init__(self, resource: IResource, server_ref: List[Any], *,
                 access_log: bool = False,
                 response_headers: Optional[List[Tuple[bytes, bytes]]] = None,
                 **kwargs: Any) -> None:
        super().__init__(resource, **kwargs)
        self._server_ref = server_ref
        self.access_log = access_log
        self.noisy = False
        self.channels: Set[Any] = set()
        self.websockets: Set[Any] = set()
        self.response_headers = response_headers or None

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        if protocol is not None and self._server_ref:
            _track_connection(protocol, self._server_ref[0], self.channels)
        return protocol

    def getResourceFor(self, request: Any) -> Any:
        headers = self.response_headers
        if headers is not None:
            set_header = request.responseHeaders.setRawHeaders
            for name, value in headers:
                set_header(name, [value])
        return super().getResourceFor(request)

    def log(self, request: Any) -> None:
        """Twisted's access log line, only when asked for (it is not free)."""
        if self.access_log:
            super().log(request)


def _track_connection(protocol: Any, server: Server, channels: Set[Any]) -> None:
    """Make ``server`` hold the connection's transport while it is open."""
    tracker = _ConnectionTracker(protocol, server, channels)
    protocol.makeConnection = tracker.make_connection
    protocol.connectionLost = tracker.connection_lost


class _ConnectionTracker:
    """Stands in for a protocol's ``makeConnection`` and ``connectionLost``
    (one small object per connection rather than a nest of closures: the
    garbage collector walks every live connection's objects)."""

    __slots__ = ("protocol", "server", "channels", "transport", "_make", "_lost")

    def __init__(self, protocol: Any, server: Server, channels: Set[Any]) -> None:
        self.protocol, self.server, self.channels = protocol, server, channels
        self.transport: Any = None
        self._make, self._lost = protocol.makeConnection, protocol.connectionLost

    def make_connection(self, transport: Any) -> None:
        self.transport = transport
        self.server.track(transport)
        self.channels.add(self.protocol)
        self._make(transport)

    def connection_lost(self, reason: Any) -> None:
        self.channels.discard(self.protocol)
        if self.transport is not None:
            self.server.untrack(self.transport)
        self._lost(reason)


def _no_keep_alive(request: Any, version: bytes) -> bool:
    """``HTTPChannel.checkPersistence`` once shutting down: this response is the last."""
    request.responseHeaders.setRawHeaders(b"connection", [b"close"])
    return False


def _finish_then_close(channel: Any) -> None:
    """Shutting down: an idle keep-alive connection closes now; one with a
    request in flight answers it, then closes (``Connection: close``)."""
    channel = getattr(channel, "_channel", channel)  # twisted.web's protocol-switching wrapper
    if channel.transport is None:
        return  # taken over by a WebSocket: see websocket.going_away
    if not channel.requests:
        channel.loseConnection()
        return
    channel.persistent = False
    channel.checkPersistence = _no_keep_alive  # a request still being read
    for request in channel.requests:
        if not request.startedWriting:
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])


class HTTPServer(Server):
    """The :class:`Server` ``start_server`` returns: it can also shut down
    gracefully (:meth:`shutdown`); ``site`` is its :class:`AlephSite`."""

    def __init__(self, listening_port: Any, site: AlephSite, reactor: Any = None) -> None:
        super().__init__(listening_port, reactor)
        self.site = site
        self._shutdown: Optional[Deferred] = None

    def shutdown(self, timeout: float = DEFAULT_SHUTDOWN_TIMEOUT) -> Deferred:
        """Stop accepting; let the requests in flight finish (each connection
        closes after its response), close idle keep-alive connections now, send
        open WebSockets a close frame 1001 (going away); cut whatever is still
        open after ``timeout`` seconds. Fires once every connection is gone."""
        if self._shutdown is None:
            from twisted_aleph.http.websocket import going_away
            reactor = self._reactor
            if reactor is None:
                from twisted.internet import reactor  # type: ignore[no-redef]
            stopped = self.stop_listening()
            for channel in list(self.site.channels):
                _finish_then_close(channel)
            for websocket in list(self.site.websockets):
                going_away(websocket)
            idle = self.when_idle()
            cutter = reactor.callLater(timeout, self._cut, timeout)
            done = gatherResults([stopped, idle], consumeErrors=True)

            def finished(result: Any) -> None:
                if cutter.active():
                    cutter.cancel()
                if isinstance(result, Failure):
                    log.failure("error while shutting down the HTTP server", result)
            self._shutdown = done.addBoth(finished)
        d: Deferred = Deferred()

        def tell(result: Any) -> Any:
            d.callback(None)
            return result
        self._shutdown.addBoth(tell)
        return d

    def _cut(self, timeout: float) -> None:
        log.warn("{n} connections still open {t} s after shutdown began; cutting them",
                 n=len(self.connections), t=timeout)
        self._abort_all()


def start_server(handler: Handler, port: int, *, interface: str = "0.0.0.0",
                 tls: Any = None, reactor: Any = None, access_log: bool = False,
                 backlog: int = DEFAULT_BACKLOG, fd: Optional[int] = None,
                 response_headers: Optional[Dict[str, str]] = None) -> HTTPServer:
    """Serve ``handler`` over HTTP on ``port`` (0 picks a free one).

    ``tls``: server TLS options (``twisted_aleph.tls.server_context(...)`` or
    any context factory) to serve HTTPS. ``backlog``: connections the kernel
    queues before accepting (Twisted's default of 50 drops bursts). ``fd``:
    serve an already listening socket (a worker's inherited one, see
    :mod:`twisted_aleph.workers`) instead of binding ``port``.
    ``response_headers``: set on every response. Returns an
    :class:`HTTPServer`; its ``close()`` stops listening and drops open
    connections, its ``shutdown(timeout)`` lets them finish first.
    """
    if reactor is None:
        from twisted.internet import reactor  # type: ignore[no-redef]
    server_ref: List[Server] = []
    headers = [(k.encode("latin-1"), v.encode("latin-1"))
               for k, v in (response_headers or {}).items()]
    site = AlephSite(handler_resource(handler), server_ref, access_log=access_log,
                     response_headers=headers, reactor=reactor)
    if fd is not None:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        from twisted_aleph.workers import adopt, family_of
        factory: Any = site if tls is None else TLSMemoryBIOFactory(tls, False, site)
        listening = adopt(fd, factory, reactor, family_of(interface))
    elif tls is None:
        listening = reactor.listenTCP(port, site, backlog=backlog, interface=interface)
    else:
        listening = reactor.listenSSL(port, site, tls, backlog=backlog, interface=interface)
    server = HTTPServer(listening, site, reactor)
    server_ref.append(server)
    return server


class HTTPServerService(service.Service):
    """``start_server`` as a twistd service (the ``aleph-http`` plugin).

    Stopping it (twistd on SIGTERM) is a graceful :meth:`HTTPServer.shutdown`
    bounded by ``shutdown_timeout``; ``fd`` serves an inherited listening
    socket (``--workers``); ``response_headers`` go on every response.
    """

    def __init__(self, handler: Handler, port: int, *, interface: str = "0.0.0.0",
                 tls: Any = None, fd: Optional[int] = None,
                 shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
                 response_headers: Optional[Dict[str, str]] = None,
                 gc_threshold: int = 0, reactor: Any = None) -> None:
        self.handler = handler
        self.port = port
        self.interface = interface
        self.tls = tls
        self.fd = fd
        self.shutdown_timeout = shutdown_timeout
        self.response_headers = response_headers
        self.gc_threshold = gc_threshold
        self._reactor = reactor
        self.server: Optional[HTTPServer] = None
        self._gc_before: Any = None

    def startService(self) -> None:
        super().startService()
        self.server = start_server(self.handler, self.port, interface=self.interface,
                                   tls=self.tls, fd=self.fd, reactor=self._reactor,
                                   response_headers=self.response_headers)
        log.info("aleph-http listening on {interface}:{port} (pid {pid})",
                 interface=self.interface, port=self.server.port, pid=os.getpid())
        self._gc_before = tune_gc(self.gc_threshold)

    def stopService(self) -> Any:
        super().stopService()
        restore_gc(self._gc_before)
        self._gc_before = None
        if self.server is not None:
            server, self.server = self.server, None
            log.info("aleph-http shutting down: {n} connections open, {t} s to finish",
                     n=len(server.connections), t=self.shutdown_timeout)
            return server.shutdown(self.shutdown_timeout)
        return None


def load_handler(spec: str) -> Any:
    """``"package.module:attr"`` -> that object (the ``--app`` option)."""
    from twisted.python.reflect import namedAny
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"expected module:attr, got {spec!r}")
    return namedAny(f"{module}.{attr}")


__all__ = [
    "BadRequest", "respond", "RingResource", "AlephSite", "HTTPServerService", "HTTPServer",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "start_server", "handler_resource", "adapt_result", "decode_params",
    "load_handler", "NOT_FOUND_BODY",
]
