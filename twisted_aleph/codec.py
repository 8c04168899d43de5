"""Gloss-style byte frames: length-prefixed bodies, encoded and decoded.

The seed's protocol is ``compile_frame(finite_frame("uint32", string("utf-8")),
edn.dumps, edn.loads)``: each message is a big-endian length, then that many
bytes of UTF-8 EDN. ``encode(codec, value)`` makes the bytes of one frame;
:class:`Decoder` is the sans-IO incremental reader (bytes in, values out, no
reactor). It is the one frame parser of the library: the framed TCP protocol
and :func:`twisted_aleph.stream.decode_stream` (Gloss's ``decode-stream``,
which lives with the streams, a floor up) both run it.

Cost: encoding is one ``struct.pack`` and one concatenation per frame. The
decoder is amortised O(n) in the bytes fed, whatever the chunking: a feed
that cannot complete the frame in progress only keeps a reference to the
chunk (no copy, no rescan), the chunks held are joined once when the frame
can complete, and frames found in a chunk when nothing is held are sliced
straight out of that chunk. Per frame it allocates the body slice and
nothing else; stopping after a frame (a consumer that is behind, a bad
body) keeps the chunk and an offset, so a consumer that stops after every
frame, or a run of bad frames, costs no copy of the rest.
"""

from __future__ import annotations

import codecs
import struct
import warnings
from functools import partial
from typing import Any, Callable, List, Optional, Union

__all__ = [
    "CodecError", "FrameTooLong", "DecodeError", "EncodeError",
    "StringBody", "BytesBody", "FiniteFrame", "CompiledFrame", "Decoder",
    "string", "finite_frame", "finite_block", "compile_frame", "encode",
    "decode", "decode_all", "DEFAULT_MAX_LENGTH",
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


class BytesBody:
    """Raw bytes filling the whole frame body (the body of ``gloss/finite-block``).

    Encodes ``bytes``, ``bytearray`` or ``memoryview``; decodes to ``bytes``.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "bytes_body()"

    def encoder(self) -> Callable[[Any], bytes]:
        return _body_bytes

    def decoder(self) -> None:
        """None: the body is the value, as it is (no call per frame)."""
        return None


def _body_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"a block body is bytes, not {type(value).__name__}")


# name -> (struct format, signed); "-le" suffix for little-endian.
_PREFIXES = {
    "uint8": "B", "uint16": "H", "uint32": "I", "uint64": "Q",
    "int8": "b", "int16": "h", "int32": "i", "int64": "q",
}


class FiniteFrame:
    """A body preceded by its length in bytes (``gloss/finite-frame``)."""

    __slots__ = ("prefix", "body", "header", "max_body")

    def __init__(self, prefix: str, body: Any) -> None:
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


def finite_frame(prefix: str, body: Any) -> FiniteFrame:
    """A length-prefixed frame: ``prefix`` is ``"uint8"``, ``"uint16"``,
    ``"uint32"`` or ``"uint64"`` (big-endian, as Gloss's ``:uint32``; a
    leading colon is accepted, as are ``int*`` and ``-le`` variants)."""
    return FiniteFrame(prefix, body)


def finite_block(prefix: str) -> FiniteFrame:
    """A length-prefixed frame of raw bytes (``gloss/finite-block``): the
    framed TCP protocol's frame is ``finite_block("uint32")`` with its
    payload codec as the pre-encoder and post-decoder."""
    return FiniteFrame(prefix, BytesBody())


# -- the compiled codec ----------------------------------------------------------


class CompiledFrame:
    """A frame compiled once for fast encode/decode (``gloss/compile-frame``).

    ``pre_encoder`` turns a value into what the body encodes (``edn.dumps``);
    ``post_decoder`` turns a decoded body into the value (``edn.loads``).
    """

    __slots__ = ("frame", "pre_encoder", "post_decoder", "header", "max_body",
                 "_encode_body", "decode_value", "unpack_header")

    def __init__(self, frame: Union[FiniteFrame, StringBody, BytesBody],
                 pre_encoder: Optional[Callable[[Any], Any]] = None,
                 post_decoder: Optional[Callable[[Any], Any]] = None) -> None:
        self.frame = frame
        self.pre_encoder = pre_encoder
        self.post_decoder = post_decoder
        if isinstance(frame, FiniteFrame):
            self.header: Optional[struct.Struct] = frame.header
            #: ``header.unpack_from``, bound once for every Decoder of this codec
            self.unpack_header: Any = frame.header.unpack_from
            self.max_body = frame.max_body
            body = frame.body
        elif hasattr(frame, "encoder") and hasattr(frame, "decoder"):
            self.header = None      # unframed: one body is the whole input
            self.unpack_header = None
            self.max_body = -1
            body = frame
        else:
            raise TypeError(f"not a frame: {frame!r}")
        self._encode_body = body.encoder()
        #: body bytes -> value in one call: the body codec's decoder, then
        #: the post-decoder (either may be absent); it raises on a bad body.
        self.decode_value: Callable[[Any], Any] = (
            _compose(body.decoder(), post_decoder) or bytes)

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
            return self.decode_value(body)
        except Exception as e:
            raise DecodeError(e, bytes(body)) from e


def compile_frame(frame: Union[FiniteFrame, StringBody, BytesBody, CompiledFrame],
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


#: a Decoder's held chunks while it holds nothing: shared, never appended to
#: (an idle connection's decoder owns no list)
_NOTHING_HELD: Any = ()


class Decoder:
    """Sans-IO incremental decoder: bytes in, the values of whole frames out.

    :meth:`feed` returns the values a chunk completed; :meth:`feed_into`
    hands each one to a callback as it is decoded, and can stop part way
    (a consumer that is behind) with the rest kept for later. Exact under
    any split or coalescing of the input; bodies are always ``bytes``.

    Cost: amortised O(n) in the bytes fed. A feed that does not complete the
    frame in progress keeps a reference to the chunk and returns; once
    enough bytes are held the chunks are joined once, and a frame's body is
    one slice. Nothing else is allocated per frame, nor per feed when a
    chunk ends on a frame boundary.

    Errors (both :class:`CodecError`):

    * :class:`FrameTooLong`: a prefix over ``max_length``, raised when the
      prefix is read, before any body is buffered. The decoder is then
      finished (framing is lost) and every later feed raises it again.
    * :class:`DecodeError`: a whole body that does not decode. That frame is
      dropped; the rest of the chunk stays buffered and a feed of ``b""``
      continues with the next frame.
    """

    __slots__ = ("codec", "max_length", "_chunks", "_start", "_buffered",
                 "_need", "_failed", "_unpack_from", "_hsize", "_decode")

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
        self._unpack_from = codec.unpack_header
        self._hsize = codec.header.size
        self._decode = codec.decode_value
        self._chunks: List[Any] = _NOTHING_HELD  # input held, not yet parsed
        self._start = 0                 # where the first chunk's unparsed bytes start
        self._buffered = 0              # the bytes held from there on
        # bytes that must be held before parsing can make progress
        self._need = self._hsize
        self._failed: Optional[int] = None     # the bad prefix, once seen

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete (or not yet parsed)."""
        return self._buffered

    def feed(self, data: BytesLike) -> List[Any]:
        """Add ``data``; return the values of the frames it completed.

        A :class:`CodecError` carries as ``values`` the values completed in
        this feed before it."""
        values: List[Any] = []
        try:
            self.feed_into(data, values.append)
        except CodecError as e:
            e.values = values
            raise
        return values

    def feed_into(self, data: BytesLike, emit: Callable[[Any], Any]) -> Any:
        """Add ``data``; call ``emit(value)`` for each frame it completes, in order.

        ``emit`` answers as a stream's ``offer`` does: None, True or False
        mean go on. Any other answer is a *hold* (for a stream, the Deferred
        of a consumer that is behind): decoding stops after that frame, the
        rest is kept, and ``feed_into`` returns the hold; call it again
        (``feed_into(b"", emit)``) to carry on. Returns None once every
        whole frame was emitted.

        Raises :class:`FrameTooLong` or :class:`DecodeError` as described
        in the class docstring, after emitting the frames before the bad
        one; an error raised by ``emit`` propagates with the frame it was
        given counted as consumed.
        """
        if self._failed is not None:
            raise self._error(self._failed, [])
        if type(data) is not bytes:
            data = _as_bytes(data)
        buffered = self._buffered
        if buffered:
            chunks = self._chunks
            if data:
                chunks.append(data)
                buffered += len(data)
                self._buffered = buffered
            if buffered < self._need:
                return None
            pos = self._start
            if len(chunks) == 1:
                buf = chunks[0]
            else:
                if pos:
                    chunks[0] = memoryview(chunks[0])[pos:]
                    pos = 0
                buf = b"".join(chunks)
        else:
            buf = data
            pos = 0
        unpack_from = self._unpack_from
        hsize = self._hsize
        max_length = self.max_length
        decode = self._decode
        end = len(buf)
        need = hsize
        hold = None
        try:
            while end - pos >= hsize:
                (n,) = unpack_from(buf, pos)
                if n > max_length or n < 0:
                    raise self._fail(n)
                stop = pos + hsize + n
                if stop > end:
                    need = stop - pos
                    break
                body = buf[pos + hsize:stop]
                pos = stop
                try:
                    value = decode(body)
                except Exception as e:
                    raise DecodeError(e, body) from e
                r = emit(value)
                if r is not True and r is not False and r is not None:
                    hold = r
                    break
        except BaseException:
            if self._failed is None:
                self._hold_at(buf, pos, end)
            raise
        # what is left starts the next frame (the common case: nothing)
        self._need = need
        if pos == end:
            if self._buffered:
                self._chunks = _NOTHING_HELD
                self._start = self._buffered = 0
        elif hold is None:
            # a partial frame: copy it out, so the rest of the read is freed
            self._chunks = [buf[pos:] if pos else buf]
            self._start = 0
            self._buffered = end - pos
        else:
            self._hold_at(buf, pos, end)
        return hold

    def hold(self, data: BytesLike) -> None:
        """Keep ``data`` without parsing it (its consumer is behind): the
        next :meth:`feed_into` or :meth:`feed` decodes it."""
        if self._failed is not None or not data:
            return
        if type(data) is not bytes:
            data = _as_bytes(data)
        if self._buffered:
            self._chunks.append(data)
        else:
            self._chunks = [data]
            self._start = 0
        self._buffered += len(data)

    def _hold_at(self, buf: Any, pos: int, end: int) -> None:
        """Stopped at a frame boundary (a hold, an error) with ``buf[pos:]``
        still to parse: keep ``buf`` as it is and where to go on from.
        Slicing the rest off instead would copy it once per frame when a
        consumer holds (or a peer sends bad frames) after every frame."""
        self._need = self._hsize
        if pos == end:
            self._chunks = _NOTHING_HELD
            self._start = 0
        else:
            self._chunks = [buf]
            self._start = pos
        self._buffered = end - pos

    def _fail(self, n: int) -> FrameTooLong:
        """Give up for good: the frame boundary is lost with a bad prefix."""
        self._chunks = _NOTHING_HELD
        self._start = self._buffered = 0
        self._failed = n
        return self._error(n, [])

    def _error(self, n: int, values: List[Any]) -> FrameTooLong:
        error = FrameTooLong(n, self.max_length, values)
        if n < 0:
            error.args = (f"negative frame length {n}",)
        return error


def _as_bytes(data: Any) -> bytes:
    """Input other than ``bytes``, copied (a caller may reuse its buffer)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, str):
        raise TypeError("a Decoder takes bytes, not str")
    raise TypeError(f"a Decoder takes bytes, not {type(data).__name__}")


def __getattr__(name: str) -> Any:
    """Deprecated names (PEP 562): ``decode_stream`` moved up to the streams."""
    if name == "decode_stream":
        warnings.warn("twisted_aleph.codec.decode_stream is deprecated; use"
                      " twisted_aleph.stream.decode_stream", DeprecationWarning,
                      stacklevel=2)
        from twisted_aleph.stream import decode_stream
        return decode_stream
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
