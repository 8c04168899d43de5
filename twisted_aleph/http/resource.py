"""Klein dispatch and error pages: the ``IResource`` that serves a handler.

:class:`RingResource` serves a Klein app whose routes may answer Ring-style
response maps: it wraps the app (same routes, same error handlers, nothing
copied) so that whatever a route returns is adapted by
:func:`.ring.adapt_result` before it is rendered. :func:`handler_resource`
serves a Klein app, a plain callable ``handler(request)`` (as one
catch-all route; a None answer is a 404) or a resource as is.

Errors (after the app's own ``handle_errors`` handlers): unknown path, 404
"No such page."; :class:`~.ring.BadRequest` (raise it with a one-line
reason), 400 with that reason (:class:`~.ring.PayloadTooLarge`, 413); any
other werkzeug HTTP error, its status and name; any other exception, a 500
"Internal server error." with the traceback in the log only.

Route options: :meth:`RingResource.route_options` finds, from a request's
head alone, the :func:`~.options.body_options` of the route it will reach,
so the server knows how to receive the body before reading it.

Cost: the hot path (``/hello``) allocates no Deferred beyond Klein's.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, List, Optional, Tuple
from urllib.parse import unquote_to_bytes

from klein import Klein
from klein import Response as KleinResponse
from klein.interfaces import IKleinRequest
from klein.resource import KleinResource
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRenderable
from twisted.web.resource import IResource, getChildForRequest
from twisted.web.server import NOT_DONE_YET
from twisted.web.template import renderElement
from werkzeug.exceptions import HTTPException, NotFound

from twisted_aleph.http.options import RouteOptions, route_options_of
from twisted_aleph.http.ring import BadRequest, NO_RESPONSE, adapt_result, attach_params

log = Logger()

NOT_FOUND_BODY = b"No such page."
INTERNAL_ERROR_BODY = b"Internal server error."


# -- errors --------------------------------------------------------------------

def plain_error(request: Any, code: int, body: bytes) -> Any:
    """Make ``request``'s response a ``code`` with ``body`` as plain text
    (the headers the server or site set are kept) and return the body for
    the caller to write; :data:`~.ring.NO_RESPONSE` if it is too late for a
    status line (the connection is then cut) or the connection is a
    WebSocket's."""
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
    return plain_error(request, 404, NOT_FOUND_BODY)


def _bad_request(request: Any, failure: Failure) -> Any:
    reason = str(failure.value).splitlines()[0] if str(failure.value) else "Bad request."
    status = getattr(failure.value, "status", 400)
    return plain_error(request, status, reason.encode("utf-8"))


def _http_error(request: Any, failure: Failure) -> Any:
    error = failure.value
    body = plain_error(request, error.code or 500, (error.name or "Error").encode("utf-8"))
    if isinstance(body, bytes):
        for name, value in error.get_headers():  # e.g. Allow, for a 405
            if name.lower() not in ("content-type", "content-length"):
                request.setHeader(name, value)
    return body


def _internal_error(request: Any, failure: Failure) -> Any:
    log.failure("handler failed on {method} {uri}", failure,
                method=request.method.decode("ascii", "replace"),
                uri=request.uri.decode("ascii", "replace"))
    return plain_error(request, 500, INTERNAL_ERROR_BODY)


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
        self._options_seen: Tuple[int, bool] = (-1, False)  # (endpoints, any body_options)

    def route_options(self, request: Any, method: bytes, uri: bytes) -> Optional[RouteOptions]:
        """The :func:`~.options.body_options` of the route ``method uri``
        would reach, or None (no such route, or none of its own): what the
        server reads when the request's head is in, before its body."""
        endpoints = self._routes.endpoints
        count, any_options = self._options_seen
        if count != len(endpoints):
            any_options = any(route_options_of(f) is not None for f in endpoints.values())
            self._options_seen = (len(endpoints), any_options)
        if not any_options:
            return None  # the common case: no werkzeug match twice per request
        path = uri.split(b"?", 1)[0]
        segments = [unquote_to_bytes(s) for s in path[1:].split(b"/")]
        try:
            scheme, host = _scheme_and_host(request)
            path_info = _rooted(segments)
        except UnicodeDecodeError:
            return None
        mapper = self._routes.url_map.bind(host, "", path_info=path_info, url_scheme=scheme,
                                           default_method=method.decode("latin-1"))
        try:
            rule, _ = mapper.match(return_rule=True)
        except Exception:  # no route, wrong method, a redirect: the server's options
            return None
        return route_options_of(endpoints.get(rule.endpoint))

    def render(self, request: Any) -> Any:
        try:
            scheme, host, script, path = _url_parts(request)
        except UnicodeDecodeError:
            return plain_error(request, 400, b"Non-UTF-8 encoding in URL.")
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
    scheme, host = _scheme_and_host(request)
    return scheme, host, _rooted(request.prepath), _rooted(request.postpath)


def _scheme_and_host(request: Any) -> Tuple[str, str]:
    secure = request.isSecure()
    host = request.getRequestHostname()
    port = request.getHost().port
    if port != (443 if secure else 80):
        host = b"%s:%d" % (host, port)
    return "https" if secure else "http", host.decode("utf-8")


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
    if _gone(request):
        return  # answered already (a refused body) or the client left
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


__all__ = ["RingResource", "handler_resource", "plain_error", "NOT_FOUND_BODY",
           "INTERNAL_ERROR_BODY"]
