"""Gloss-style byte frames: length-prefixed bodies, encoded and decoded.

The seed's protocol is ``compile_frame(finite_frame("uint32", string("utf-8")),
edn.dumps, edn.loads)``: each message is a big-endian length, then that many
bytes of UTF-8 EDN. ``encode(codec, value)`` makes the bytes of one frame;
:class:`Decoder` is the sans-IO incremental reader (bytes in, values out, no
reactor), and :func:`decode_stream` is the only piece that touches streams.

Cost: encoding is one ``struct.pack`` and one concatenation per frame. The
decoder is amortised O(n) in the bytes fed, whatever the chunking: each byte
is copied into the internal buffer at most once, a feed that cannot complete
the current frame returns in O(len(data)) without rescanning, and frames found
in a chunk when nothing is buffered are sliced straight out of that chunk.
"""

from __future__ import annotations

import codecs
import struct
from functools import partial
from typing import Any, Callable, List, Optional, Union

__all__ = [
    "CodecError", "FrameTooLong", "DecodeError", "EncodeError",
    "StringBody", "FiniteFrame", "CompiledFrame", "Decoder",
    "string", "finite_frame", "compile_frame", "encode", "decode",
    "decode_all", "decode_stream", "DEFAULT_MAX_LENGTH",
]

#: the default largest body a :class:`Decoder` accepts: 16 MiB.
DEFAULT_MAX_LENGTH = 16 * 1024 * 1024

BytesLike = Union[bytes, bytearray, memoryview]


class CodecError(ValueError):
    """Bytes or values that do not fit the codec.

    ``values``: what a :class:`Decoder` feed completed before the error
    (each error has its own list).
    """

    def __init__(self, *args: Any, values: Optional[List[Any]] = None) -> None:
        super().__init__(*args)
        self.values: List[Any] = values if values is not None else []


class FrameTooLong(CodecError):
    """A length prefix (or a body to encode) over the allowed maximum.

    Raised by :meth:`Decoder.feed` as soon as the prefix is read, before any
    of the body is buffered. The frame boundary is lost with it, so the
    decoder refuses further input: close that connection. ``values`` holds
    the values completed earlier in the same feed, so none is lost.
    """

    def __init__(self, length: int, max_length: int,
                 values: Optional[List[Any]] = None) -> None:
        super().__init__(f"frame of {length} bytes is over the maximum of"
                         f" {max_length} bytes")
        self.length = length
        self.max_length = max_length
        self.values: List[Any] = values if values is not None else []


class DecodeError(CodecError):
    """A whole frame arrived but its body did not decode (bad UTF-8, or the
    post-decoder raised, e.g. ``EDNError``).

    ``__cause__``/``cause`` is the original error, ``frame`` the raw body, and
    ``values`` the values completed earlier in the same feed. The frame
    boundary is still known, so the decoder stays usable: that frame is
    skipped, the rest of the chunk is kept, and ``feed(b"")`` (or the next
    feed) carries on with the following frame.
    """

    def __init__(self, cause: BaseException, frame: bytes,
                 values: Optional[List[Any]] = None) -> None:
        super().__init__(f"could not decode a {len(frame)}-byte frame: {cause!r}")
        self.cause = cause
        self.__cause__ = cause
        self.frame = frame
        self.values: List[Any] = values if values is not None else []


class EncodeError(CodecError):
    """A value the codec cannot turn into bytes (wrong type, pre-encoder
    failure, characters the encoding lacks). ``cause`` is the original error."""

    def __init__(self, cause: BaseException, value: Any) -> None:
        super().__init__(f"could not encode {value!r}: {cause!r}")
        self.cause = cause
        self.__cause__ = cause
        self.value = value


# -- frame descriptions (Gloss's frame language, the part the seed uses) ------


class StringBody:
    """Text in one encoding, filling the whole frame body (``gloss/string``)."""

    __slots__ = ("encoding",)

    def __init__(self, encoding: str) -> None:
        name = encoding.lstrip(":")
        try:
            self.encoding = codecs.lookup(name).name
        except LookupError:
            raise ValueError(f"unknown text encoding {encoding!r}") from None

    def __repr__(self) -> str:
        return f"string({self.encoding!r})"

    def encoder(self) -> Callable[[str], bytes]:
        return partial(str.encode, encoding=self.encoding)

    def decoder(self) -> Callable[[BytesLike], str]:
        # str(b, encoding) takes bytes, bytearray and memoryview alike.
        return partial(str, encoding=self.encoding)


def string(encoding: str = "utf-8") -> StringBody:
    """A text body codec; ``encoding`` may be spelled ``"utf-8"`` or ``":utf-8"``."""
    return StringBody(encoding)


# name -> (struct format, signed); "-le" suffix for little-endian.
_PREFIXES = {
    "uint8": "B", "uint16": "H", "uint32": "I", "uint64": "Q",
    "int8": "b", "int16": "h", "int32": "i", "int64": "q",
}


class FiniteFrame:
    """A body preceded by its length in bytes (``gloss/finite-frame``)."""

    __slots__ = ("prefix", "body", "header", "max_body")

    def __init__(self, prefix: str, body: StringBody) -> None:
        name = prefix.lstrip(":").lower()
        order = ">"
        for suffix, mark in (("-le", "<"), ("-be", ">")):
            if name.endswith(suffix):
                name, order = name[:-len(suffix)], mark
        fmt = _PREFIXES.get(name)
        if fmt is None:
            raise ValueError(f"unknown length prefix {prefix!r}; expected one of"
                             f" {', '.join(sorted(_PREFIXES))}")
        if not hasattr(body, "encoder") or not hasattr(body, "decoder"):
            raise TypeError(f"not a body codec: {body!r} (use string(...))")
        self.prefix = prefix
        self.body = body
        self.header = struct.Struct(order + fmt)
        bits = self.header.size * 8
        self.max_body = (1 << (bits - 1)) - 1 if fmt.islower() else (1 << bits) - 1

    def __repr__(self) -> str:
        return f"finite_frame({self.prefix!r}, {self.body!r})"


def finite_frame(prefix: str, body: StringBody) -> FiniteFrame:
    """A length-prefixed frame: ``prefix`` is ``"uint8"``, ``"uint16"``,
    ``"uint32"`` or ``"uint64"`` (big-endian, as Gloss's ``:uint32``; a
    leading colon is accepted, as are ``int*`` and ``-le`` variants)."""
    return FiniteFrame(prefix, body)


# -- the compiled codec ----------------------------------------------------------


class CompiledFrame:
    """A frame compiled once for fast encode/decode (``gloss/compile-frame``).

    ``pre_encoder`` turns a value into what the body encodes (``edn.dumps``);
    ``post_decoder`` turns a decoded body into the value (``edn.loads``).
    """

    __slots__ = ("frame", "pre_encoder", "post_decoder", "header", "max_body",
                 "_encode_body", "_decode_body")

    def __init__(self, frame: Union[FiniteFrame, StringBody],
                 pre_encoder: Optional[Callable[[Any], Any]] = None,
                 post_decoder: Optional[Callable[[Any], Any]] = None) -> None:
        self.frame = frame
        self.pre_encoder = pre_encoder
        self.post_decoder = post_decoder
        if isinstance(frame, FiniteFrame):
            self.header: Optional[struct.Struct] = frame.header
            self.max_body = frame.max_body
            body = frame.body
        elif hasattr(frame, "encoder") and hasattr(frame, "decoder"):
            self.header = None      # unframed: one body is the whole input
            self.max_body = -1
            body = frame
        else:
            raise TypeError(f"not a frame: {frame!r}")
        self._encode_body = body.encoder()
        self._decode_body = body.decoder()

    def __repr__(self) -> str:
        return f"compile_frame({self.frame!r})"

    def encode(self, value: Any) -> bytes:
        """The bytes of one frame holding ``value``."""
        try:
            if self.pre_encoder is not None:
                value = self.pre_encoder(value)
            body = self._encode_body(value)
        except Exception as e:
            raise EncodeError(e, value) from e
        header = self.header
        if header is None:
            return body
        n = len(body)
        if n > self.max_body:
            raise FrameTooLong(n, self.max_body)
        return header.pack(n) + body

    def decode_body(self, body: BytesLike) -> Any:
        """The value of one frame body; :class:`DecodeError` if it is bad."""
        try:
            value = self._decode_body(body)
            if self.post_decoder is not None:
                value = self.post_decoder(value)
        except Exception as e:
            raise DecodeError(e, bytes(body)) from e
        return value


def compile_frame(frame: Union[FiniteFrame, StringBody, CompiledFrame],
                  pre_encoder: Optional[Callable[[Any], Any]] = None,
                  post_decoder: Optional[Callable[[Any], Any]] = None) -> CompiledFrame:
    """Compile ``frame`` with optional value transforms on either side.

    Compiling an already compiled frame composes: the new ``pre_encoder``
    runs before the old one and the new ``post_decoder`` after the old one.
    """
    if isinstance(frame, CompiledFrame):
        inner_pre, inner_post = frame.pre_encoder, frame.post_decoder
        pre = _compose(pre_encoder, inner_pre)
        post = _compose(inner_post, post_decoder)
        return CompiledFrame(frame.frame, pre, post)
    return CompiledFrame(frame, pre_encoder, post_decoder)


def _compose(first: Optional[Callable[[Any], Any]],
             second: Optional[Callable[[Any], Any]]) -> Optional[Callable[[Any], Any]]:
    if first is None:
        return second
    if second is None:
        return first
    return lambda x: second(first(x))


def _compiled(codec: Any) -> CompiledFrame:
    return codec if isinstance(codec, CompiledFrame) else compile_frame(codec)


def encode(codec: Any, value: Any) -> bytes:
    """The bytes of one frame of ``value`` (Gloss's ``io/encode``)."""
    return _compiled(codec).encode(value)


def decode(codec: Any, data: BytesLike) -> Any:
    """The value of exactly one whole frame; :class:`CodecError` if ``data``
    is incomplete or has bytes after the frame."""
    codec = _compiled(codec)
    if codec.header is None:
        return codec.decode_body(data)
    values = decode_all(codec, data)
    if len(values) != 1:
        raise CodecError(f"expected one frame, found {len(values)}")
    return values[0]


def decode_all(codec: Any, data: BytesLike) -> List[Any]:
    """The values of every frame in ``data``, which must end on a frame
    boundary (else :class:`CodecError`). No maximum beyond the prefix's own."""
    codec = _compiled(codec)
    if codec.header is None:
        return [codec.decode_body(data)]
    decoder = Decoder(codec, max_length=None)
    values = decoder.feed(data)
    if decoder.buffered:
        raise CodecError(f"{decoder.buffered} bytes left over after the last"
                         f" whole frame")
    return values


# -- the incremental decoder -------------------------------------------------------


class Decoder:
    """Sans-IO incremental decoder: ``feed(bytes) -> [values completed]``.

    Exact under any split or coalescing of the input. Cost: amortised O(n)
    in the bytes fed. A feed that does not complete the frame in progress
    appends to the buffer (amortised O(len(data))) and returns; a feed that
    completes frames slices each one once and keeps only the tail of that
    same chunk, so the worst case for many tiny feeds is still linear.

    Errors (both :class:`CodecError`, each carrying ``values`` decoded
    earlier in the same feed):

    * :class:`FrameTooLong`: a prefix over ``max_length``, raised when the
      prefix is read, before any body is buffered. The decoder is then
      finished (framing is lost) and every later feed raises it again.
    * :class:`DecodeError`: a whole body that does not decode. That frame is
      dropped; the rest of the chunk stays buffered and ``feed(b"")``
      continues with the next frame.
    """

    __slots__ = ("codec", "max_length", "_buffer", "_need", "_failed",
                 "_header", "_hsize")

    def __init__(self, codec: Any, max_length: Optional[int] = DEFAULT_MAX_LENGTH) -> None:
        codec = _compiled(codec)
        if codec.header is None:
            raise TypeError("an incremental Decoder needs a framed codec"
                            " (finite_frame(...)) to know where values end")
        self.codec = codec
        if max_length is None or max_length > codec.max_body:
            max_length = codec.max_body
        if max_length < 0:
            raise ValueError("max_length must be >= 0")
        self.max_length = max_length
        self._header = codec.header
        self._hsize = codec.header.size
        self._buffer = bytearray()
        # bytes the buffer must hold before parsing can make progress
        self._need = self._hsize
        self._failed: Optional[int] = None     # the bad prefix, once seen

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete."""
        return len(self._buffer)

    def feed(self, data: BytesLike) -> List[Any]:
        """Add ``data``; return the values of the frames it completed."""
        if self._failed is not None:
            raise self._error(self._failed, [])
        buf = self._buffer
        if buf:
            buf += data
            if len(buf) < self._need:
                return []
            src: BytesLike = buf
        else:
            if not isinstance(data, (bytes, bytearray)):
                if isinstance(data, str):
                    raise TypeError("Decoder.feed takes bytes, not str")
                data = bytes(data)
            src = data
        values: List[Any] = []
        unpack_from = self._header.unpack_from
        hsize = self._hsize
        max_length = self.max_length
        decode_body = self.codec.decode_body
        pos = 0
        end = len(src)
        while end - pos >= hsize:
            (n,) = unpack_from(src, pos)
            if n > max_length or n < 0:
                self._fail(n, values)
            start = pos + hsize
            stop = start + n
            if stop > end:
                self._keep(src, pos, stop - pos)
                return values
            body = src[start:stop]
            pos = stop
            try:
                values.append(decode_body(body))
            except DecodeError as e:
                self._keep(src, pos, hsize)
                e.values = values
                raise
        self._keep(src, pos, hsize)
        return values

    def _keep(self, src: BytesLike, pos: int, need: int) -> None:
        """Keep ``src[pos:]`` as the start of the next frame."""
        self._need = need
        if src is self._buffer:
            if pos:
                del self._buffer[:pos]
        elif pos < len(src):
            self._buffer = bytearray(memoryview(src)[pos:])

    def _fail(self, n: int, values: List[Any]) -> None:
        """Give up for good: the frame boundary is lost with a bad prefix."""
        self._buffer = bytearray()
        self._failed = n
        raise self._error(n, values)

    def _error(self, n: int, values: List[Any]) -> FrameTooLong:
        error = FrameTooLong(n, self.max_length, values)
        if n < 0:
            error.args = (f"negative frame length {n}",)
        return error


# -- streams ------------------------------------------------------------------------


def decode_stream(source: Any, codec: Any,
                  max_length: Optional[int] = DEFAULT_MAX_LENGTH,
                  deliver_decode_errors: bool = False) -> Any:
    """A Stream of the values decoded from ``source``'s bytes chunks
    (Gloss's ``io/decode-stream``).

    Backpressure is kept: a chunk is not taken from ``source`` until the
    values of the previous one were accepted downstream. On a codec error
    (a frame over ``max_length``, a body that does not decode) the error is
    logged, the values before it are still delivered, and both the output and
    ``source`` are closed: that connection ends, nothing else is touched.
    Closing the output closes ``source`` too.

    With ``deliver_decode_errors=True`` a body that does not decode is
    logged and delivered in the value's place as its :class:`DecodeError`,
    and decoding goes on (framing is intact); only :class:`FrameTooLong`
    still ends the stream.
    """
    from twisted_aleph.stream import Stream, to_source
    from twisted_aleph.stream.core import attach

    source = to_source(source)
    out = Stream(description="decode_stream")
    edge = _decode_edge_class()(Decoder(codec, max_length), out, source,
                                deliver_decode_errors)
    attach(source, edge)
    return out


_DECODE_EDGE: List[type] = []


def _decode_edge_class() -> type:
    """The push consumer class for :func:`decode_stream`, made on first use
    so that importing this module needs neither streams nor Twisted."""
    if _DECODE_EDGE:
        return _DECODE_EDGE[0]
    from twisted.logger import Logger

    from twisted_aleph.stream.core import Edge, offer_all

    log = Logger(namespace="twisted_aleph.codec")

    class DecodeEdge(Edge):
        """Feeds each chunk of ``source`` to ``decoder``, values into ``out``."""

        __slots__ = ("decoder", "byte_source", "deliver_errors")

        def __init__(self, decoder: Decoder, out: Any, byte_source: Any,
                     deliver_errors: bool) -> None:
            super().__init__(out, upstream=True, description="decode_stream")
            self.decoder = decoder
            self.byte_source = byte_source
            self.deliver_errors = deliver_errors

        def deliver(self, chunk: Any) -> Any:
            values: List[Any] = []
            while True:
                try:
                    values.extend(self.decoder.feed(chunk))
                    break
                except DecodeError as e:
                    values.extend(e.values)
                    if not self.deliver_errors:
                        return self._stop(e, values)
                    log.warn("{source}: {error}", source=self.byte_source, error=e)
                    values.append(e)
                    chunk = b""     # carry on with the rest of the chunk
                except CodecError as e:
                    return self._stop(e, values + e.values)
                except Exception:
                    log.failure("closing {source}: could not decode a {kind} chunk",
                                source=self.byte_source, kind=type(chunk).__name__)
                    return self._stop(None, values)
            if not values:
                return True
            return offer_all(self.sink, values)

        def _stop(self, error: Optional[CodecError], values: List[Any]) -> bool:
            if error is not None:
                log.warn("closing {source}: {error}", source=self.byte_source, error=error)
            # Stop reading now; the values decoded before the error go out
            # first, and only once they were accepted (a handler replying
            # synchronously has written its replies) are the output and the
            # source (for TCP: the connection, after its writes) closed.
            out, source = self.sink, self.byte_source
            self.detach()

            def finish(_: Any = None) -> None:
                out.close()
                source.close()
            r = offer_all(out, values)
            if r is True or r is False:
                finish()
            else:
                r.addBoth(finish)
            return False

        def source_drained(self) -> None:
            if self.decoder.buffered:
                log.warn("{source} ended inside a frame; {n} bytes dropped",
                         source=self.byte_source, n=self.decoder.buffered)
            self.sink.close()

    _DECODE_EDGE.append(DecodeEdge)
    return DecodeEdge
