"""One request on the server: its body received by its route's rules, its form
parsed only when asked for, its response compressed when the server says so.

:class:`AlephRequest` is twisted.web's ``server.Request`` (so Klein,
resources, templates and sessions work as ever), changed on twisted.web's
own hooks:

* :meth:`~AlephRequest.prepare_body`, called by the channel once the
  request's head is in (HTTP/1.1: ``AlephChannel.allHeadersReceived``, where
  twisted.web calls ``gotLength``): finds the route's body options
  (:class:`~.options.BodyOptions`, through the site), refuses a declared
  ``Content-Length`` over the cap before any byte of the body is read, and
  makes the :class:`~.body.RequestBody` that receives it. A channel that
  does not call it (twisted.web's HTTP/2 stream, today) gets the same from
  ``gotLength``.
* ``handleContentChunk`` (twisted.web's per-chunk hook) feeds that body:
  into ``request.content`` (memory, then a temporary file; capped), or, for
  a ``raw_stream`` route, into ``request.body_stream``: a Stream of bytes
  chunks, and the route runs as soon as the head is in
  (:meth:`~AlephRequest.start_early`), reading the body while it arrives.
* ``requestReceived`` no longer parses form bodies (it is replaced whole;
  twisted.web's ``parsePOSTFormSubmission`` plays no part): ``request.args`` and
  ``request.params`` take a form's fields on first use, parsed then if the
  body is at most :data:`LAZY_FORM_LIMIT` bytes and :data:`LAZY_FORM_FIELDS`
  fields (a larger form on a route that did not ask is a 413). A route with ``body_options(form=True)`` has
  its form parsed before it runs, in the reactor's thread pool, so no form
  blocks the reactor. A route that is never run (a 405) never parses one.
* ``write``: before the first byte, a response given while the body is still
  arriving closes the connection after it (HTTP/1.1), and
  ``compression=True`` applies (:mod:`.compression`).

What a channel offers a request (HTTP/1.1: ``AlephChannel``; an HTTP/2 stream
can offer the same): ``pause_request_body()`` and ``resume_request_body()``
(stop reading this body; twisted.web's channels: ``pauseProducing`` and
``resumeProducing``), ``refuse_request(request, status, reason, kind)``
(answer and close; twisted.web's: ``_respondToBadRequestAndDisconnect``),
and ``answered_before_body_end(request)`` (called before the first byte of a
response given before the body's end).
"""

from __future__ import annotations

import io
from typing import Any, Dict, List, Optional

from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import parse_qs
from twisted.web.server import Request

from twisted_aleph.http import compression
from twisted_aleph.http.body import RequestBody, RequestBodyError, check_length
from twisted_aleph.http.forms import FormArgs, FormError, field_count, form_type, parse_form
from twisted_aleph.http.options import BodyOptions, ServerOptions
from twisted_aleph.http.ring import BadRequest, PayloadTooLarge, decode_args
from twisted_aleph.stream import Stream

log = Logger()

#: form bodies up to this size and :data:`LAZY_FORM_FIELDS` fields are parsed
#: when first used, on the reactor thread (measured at worst ~4 ms for 64 KiB
#: of ``%XX`` escapes, ~2 ms for 100 multipart parts, CPython); larger or
#: busier ones only for routes that ask (``body_options(form=True)``), in a
#: thread.
LAZY_FORM_LIMIT = 64 * 1024
#: fields (or multipart parts) of a form parsed on first use (see above).
LAZY_FORM_FIELDS = 100
#: methods whose form bodies are parsed (twisted.web parsed POST only).
FORM_METHODS = frozenset([b"POST", b"PUT", b"PATCH"])

_DEFAULT_SERVER_OPTIONS = ServerOptions()


class AlephRequest(Request):
    """twisted.web's Request with route-aware bodies, lazy forms and
    compression (see the module doc). Extra attributes:

    ``body_stream``: the body as a Stream of bytes chunks, for a route (or
    server) with ``raw_stream``, or an ended stream when there is no body;
    else None (the body is ``content``).
    ``body_error``: a :class:`~.body.RequestBodyError` once the body was cut
    (too large, too slow, the client left), else None; a streamed body sets
    it before its stream closes. ``body_options``: the
    :class:`~.options.BodyOptions` this request's body was received with.
    ``params``/``param_lists``: ring's decoded query and form parameters.
    """

    body_options: BodyOptions = _DEFAULT_SERVER_OPTIONS.body()
    _body_stream: Optional[Stream] = None
    _bodiless = False
    lazy_params = True  # ring.attach_params: params are decoded on first use
    _body: Optional[RequestBody] = None
    _prepared = False
    _early = False
    _args: Any = None
    _form: Optional[FormArgs] = None
    _form_error: Optional[BaseException] = None
    _form_merged = False
    _params: Optional[Dict[str, str]] = None
    _param_lists: Optional[Dict[str, List[str]]] = None
    _response_prepared = False

    # -- the body: called by the channel -----------------------------------------

    def prepare_body(self, method: bytes, uri: bytes, length: Optional[int], *,
                     can_stream: bool = True) -> Optional[RequestBodyError]:
        """The head is in: choose how to receive the body (``length``: declared
        bytes, None for chunked). Returns the error to answer instead (a 413
        for a ``Content-Length`` over the cap), or None. ``can_stream``: the
        channel will run the route at the head (:meth:`start_early`) when
        :attr:`streams_body`; if not, a ``raw_stream`` route's body is
        buffered (its stream then holds it all, at the end)."""
        self._prepared = True
        if length == 0:  # no body: nothing to choose (and no route to look up)
            self.content = io.BytesIO()
            self._bodiless = True
            return None
        site = getattr(self.channel, "site", None)
        finder = getattr(site, "body_options_for", None)
        options = finder(self, method, uri) if finder is not None else self.body_options
        self.body_options = options
        streamed = options.raw_stream and can_stream
        error = check_length(length, options.max_request_body)
        if error is not None:
            return error
        body = RequestBody(length=length, limit=options.max_request_body,
                           streamed=streamed, timeout=options.body_timeout,
                           clock=getattr(site, "reactor", None) or _reactor(),
                           pause=self._pause_body, resume=self._resume_body,
                           refuse=self._refuse_body)
        self._body = body
        self.content = body.content
        self._body_stream = body.stream
        return None

    @property
    def body_stream(self) -> Optional[Stream]:
        """The body as a Stream of bytes chunks (see the class doc); for a
        request without a body, an ended stream."""
        if self._body_stream is None and self._bodiless:
            ended = Stream()
            ended.close()
            self._body_stream = ended
        return self._body_stream

    @body_stream.setter
    def body_stream(self, value: Optional[Stream]) -> None:
        self._body_stream = value

    @property
    def streams_body(self) -> bool:
        """The route reads the body while it arrives (run it at the head)."""
        body = self._body
        return body is not None and body.stream is not None

    @property
    def receiving_body(self) -> bool:
        """Body bytes are still expected."""
        body = self._body
        return body is not None and not body.done

    @property
    def body_error(self) -> Optional[RequestBodyError]:
        body = self._body
        return body.error if body is not None else None

    def gotLength(self, length: Optional[int]) -> None:
        """twisted.web's hook for the declared length, for channels that do not
        call :meth:`prepare_body` (it is the same, with the refusal sent
        through the channel)."""
        if self._prepared:
            return
        channel = self.channel
        method = getattr(channel, "command", None) or getattr(channel, "_command", b"")
        uri = getattr(channel, "path", None) or getattr(channel, "_path", b"/")
        error = self.prepare_body(method or b"", uri or b"/", length, can_stream=False)
        if error is not None:
            self._refuse_body(error)

    def handleContentChunk(self, data: bytes) -> None:
        body = self._body
        if body is not None:
            body.feed(data)
        elif self.content is not None and not self.finished:
            self.content.write(data)

    def start_early(self, command: bytes, path: bytes, version: bytes) -> None:
        """Run the route now, at the head, for a streamed body (the channel
        calls this once the head is in and :attr:`streams_body`)."""
        self._early = True
        self._begin(command, path, version)
        self.process()

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """The whole body is in: end the streamed body, or run the route (after
        parsing a form the route asked for)."""
        body = self._body
        if body is not None:
            body.finish()
        if self._early:
            return
        if self.body_options.raw_stream and self._body_stream is None and self._body is not None:
            self._body_stream = _stream_of(self.content)  # buffered by a channel that could not stream
        self._begin(command, path, version)
        if self.body_options.form and self._form_to_parse():
            self._parse_form_then_process()
        else:
            self.process()

    def _begin(self, command: bytes, path: bytes, version: bytes) -> None:
        """What twisted.web's ``requestReceived`` sets, without the form."""
        self.method, self.uri, self.clientproto = command, path, version
        self.path, sep, query = path.partition(b"?")
        self.args = parse_qs(query, 1) if sep else {}

    def _pause_body(self) -> None:
        channel = self.channel
        if channel is not None:
            getattr(channel, "pause_request_body", channel.pauseProducing)()

    def _resume_body(self) -> None:
        channel = self.channel
        if channel is not None:
            getattr(channel, "resume_request_body", channel.resumeProducing)()

    def _refuse_body(self, error: RequestBodyError) -> None:
        channel = self.channel
        if channel is None:
            return
        refuse = getattr(channel, "refuse_request", None)
        if refuse is not None:
            refuse(self, error.status, str(error), error.kind)
        else:
            channel._respondToBadRequestAndDisconnect()

    # -- forms and parameters ----------------------------------------------------

    @property  # type: ignore[override]
    def args(self) -> Any:
        """twisted.web's ``request.args``: the query's, and a form body's
        fields once used (see the module doc; may raise a 400 or 413)."""
        if not self._form_merged and self._args is not None:
            form = self.form_args()
            self._form_merged = True
            if form:
                merged = dict(self._args)
                merged.update(form)
                self._args = merged
        return self._args

    @args.setter
    def args(self, value: Any) -> None:
        self._args = value
        self._form_merged = False

    def form_args(self) -> FormArgs:
        """A form body's fields (``{bytes: [bytes]}``; {} when the body is not
        a form). Parsed on first use unless the route had it parsed already:
        :class:`~.ring.BadRequest` if it is malformed,
        :class:`~.ring.PayloadTooLarge` if it is over :data:`LAZY_FORM_LIMIT`
        bytes and the route did not ask for it."""
        if self._form_error is not None:
            raise self._form_error
        if self._form is not None:
            return self._form
        if not self._form_to_parse():
            self._form = {}
            return self._form
        if not self._small_form():
            raise PayloadTooLarge(
                f"A form body of {self._content_size()} bytes is only read by routes that "
                f"ask for it (body_options(form=True)); the limit here is "
                f"{LAZY_FORM_LIMIT} bytes and {LAZY_FORM_FIELDS} fields.")
        self._set_form(self._parse_form())
        return self.form_args()

    def _small_form(self) -> bool:
        """Cheap enough to parse on the reactor thread (see :data:`LAZY_FORM_LIMIT`)."""
        if self._content_size() > LAZY_FORM_LIMIT:
            return False
        fields = field_count(self.getHeader(b"content-type") or b"",
                             self.content)  # type: ignore[arg-type]
        return fields <= LAZY_FORM_FIELDS

    def _form_to_parse(self) -> bool:
        return (self._form is None and self._form_error is None
                and self.method in FORM_METHODS and self.content is not None
                and not self.receiving_body
                and form_type(self.getHeader(b"content-type")) is not None)

    def _content_size(self) -> int:
        body = self._body
        if body is not None:
            return body.received
        content = self.content
        position = content.tell()
        size = content.seek(0, 2)
        content.seek(position)
        return size  # type: ignore[no-any-return]

    def _parse_form(self) -> Any:
        """The form's fields, or the BadRequest to raise on their use."""
        try:
            return parse_form(self.getHeader(b"content-type") or b"",
                              self.content,  # type: ignore[arg-type]
                              self.body_options.max_form_fields)
        except FormError as e:
            return BadRequest(str(e))

    def _set_form(self, result: Any) -> None:
        if isinstance(result, BaseException):
            self._form_error = result
        else:
            self._form = result

    def _parse_form_then_process(self) -> None:
        """``body_options(form=True)``: parse the form in the reactor's thread
        pool (inline if small, or with no pool: a test's clock), then run."""
        reactor = getattr(getattr(self.channel, "site", None), "reactor", None) or _reactor()
        get_pool = getattr(reactor, "getThreadPool", None)
        if get_pool is None or self._small_form():
            self._set_form(self._parse_form())
            self.process()
            return
        d: Deferred = threads.deferToThreadPool(reactor, get_pool(), self._parse_form)
        d.addCallback(self._form_parsed)
        d.addErrback(self._form_failed)

    def _form_parsed(self, result: Any) -> None:
        if self._disconnected:
            return
        self._set_form(result)
        self.process()

    def _form_failed(self, failure: Failure) -> None:
        log.failure("parsing a form body failed", failure)
        if not self._disconnected:
            self._form_error = BadRequest("Malformed form body.")
            self.process()

    @property
    def params(self) -> Dict[str, str]:
        """Ring's ``:params``: query and form parameters, first value by name."""
        if self._params is None:
            self._decode_params()
        return self._params  # type: ignore[return-value]

    @params.setter
    def params(self, value: Dict[str, str]) -> None:
        self._params = value

    @property
    def param_lists(self) -> Dict[str, List[str]]:
        """Every value of each query and form parameter."""
        if self._param_lists is None:
            self._decode_params()
        return self._param_lists  # type: ignore[return-value]

    @param_lists.setter
    def param_lists(self, value: Dict[str, List[str]]) -> None:
        self._param_lists = value

    def check_query_params(self) -> None:
        """Raise :class:`~.ring.BadRequest` now if the query is not UTF-8
        (before the route runs, as when parameters were decoded eagerly)."""
        decode_args(self._args or {})

    def _decode_params(self) -> None:
        params, lists = decode_args(self.args or {})
        if self._params is None:
            self._params = params
        if self._param_lists is None:
            self._param_lists = lists

    # -- the response ------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self._response_prepared:
            self._response_prepared = True
            data = self._prepare_response(data)
        super().write(data)

    def _prepare_response(self, data: bytes) -> bytes:
        """Before the first byte: close after a response given mid-body;
        compress if the server does and the response suits."""
        body = self._body
        if body is not None and not body.done:
            early = getattr(self.channel, "answered_before_body_end", None)
            if early is not None:
                early(self)
        site = self.site if self.site is not None else getattr(self.channel, "site", None)
        options = getattr(site, "options", None)
        if options is None or not options.compression or self._encoder is not None:
            return data  # (an encoder is there already: twisted.web's EncodingResourceWrapper)
        return self._compress(data)

    def _compress(self, data: bytes) -> bytes:
        headers = self.responseHeaders
        code = self.code
        content_type = _first(headers, b"content-type")
        if content_type is None and code not in compression.NO_BODY_CODES:
            content_type = self.defaultContentType
        length_header = _first(headers, b"content-length")
        try:
            length: Optional[int] = int(length_header) if length_header is not None else None
        except ValueError:
            length = None
        accept = self.requestHeaders.getRawHeaders(b"accept-encoding")
        encoding, vary = compression.choose_encoding(
            method=self.method, code=code,
            accept_encoding=b",".join(accept) if accept else None,
            content_type=content_type, content_encoding=_first(headers, b"content-encoding"),
            content_length=length, content_range=headers.hasHeader(b"content-range"),
            cache_control=_first(headers, b"cache-control"))
        if vary:
            _add_vary(headers)
        if encoding is None:
            return data
        headers.setRawHeaders(b"content-encoding", [encoding])
        _weaken_etag(self)
        if length is not None and length == len(data):  # the whole body, at once
            data = compression.compress(data, encoding)
            headers.setRawHeaders(b"content-length", [b"%d" % len(data)])
        else:
            headers.removeHeader(b"content-length")
            self._encoder = compression.ChunkCompressor(encoding)  # type: ignore[assignment]
        return data

    def finish(self) -> None:
        body = self._body
        if body is None:
            return super().finish()
        if not body.done:
            body.abort(RequestBodyError("The response ended before the request body did.",
                                        0, "body unread"))
        super().finish()
        # the request is over: nothing of the body refers back to it any more
        # (reference counting frees it; a lost connection releases it too)
        body.release()

    def answer_plain(self, status: int, reason: str) -> None:
        """Answer ``status`` with ``reason`` as a text body, and close after
        (the channel's refusal of a request whose route already runs)."""
        from twisted_aleph.http.resource import plain_error
        if self.finished or self._disconnected:
            return
        body = plain_error(self, status, reason.encode("utf-8"))
        self.responseHeaders.setRawHeaders(b"connection", [b"close"])
        if isinstance(body, bytes):
            self.write(body)
        if not self.finished and not self._disconnected:
            self.finish()

    def connectionLost(self, reason: Failure) -> None:
        body = self._body
        if body is not None:
            if not body.done:
                body.abort(RequestBodyError("The client went away before the end of the body.",
                                            0, "body cut"))
            body.release()
        super().connectionLost(reason)



def _first(headers: Any, name: bytes) -> Optional[bytes]:
    values = headers.getRawHeaders(name)
    return values[0] if values else None


def _add_vary(headers: Any) -> None:
    values = headers.getRawHeaders(b"vary") or []
    tokens = {t.strip().lower() for v in values for t in v.split(b",")}
    if b"*" not in tokens and b"accept-encoding" not in tokens:
        headers.setRawHeaders(b"vary", values + [b"Accept-Encoding"])


def _weaken_etag(request: Any) -> None:
    """A compressed body is not byte-for-byte the tagged one: a strong ETag
    becomes weak."""
    etag = request.etag
    if etag is not None and not etag.startswith(b"W/"):
        request.etag = b"W/" + etag
    values = request.responseHeaders.getRawHeaders(b"etag")
    if values:
        request.responseHeaders.setRawHeaders(
            b"etag", [v if v.startswith(b"W/") else b"W/" + v for v in values])


def _stream_of(content: Any) -> Stream:
    """A closed stream holding a buffered body's bytes (one chunk)."""
    content.seek(0)
    data = content.read()
    content.seek(0)
    body = Stream(1)
    if data:
        body.offer(data)
    body.close()
    return body


def _reactor() -> Any:
    from twisted.internet import reactor
    return reactor


__all__ = ["AlephRequest", "LAZY_FORM_LIMIT", "LAZY_FORM_FIELDS", "FORM_METHODS"]
