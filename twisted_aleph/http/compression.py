"""Response compression (gzip, deflate) for ``start_server(compression=True)``.

A response is compressed when the client accepts gzip or deflate
(``Accept-Encoding``, q-values honoured; gzip preferred), its type is
compressible (text, JSON, XML, JavaScript, EDN, SVG...), it has a body
(not HEAD, 1xx, 204, 304), it is not already encoded (a ``Content-Encoding``
other than identity), not a range (``Content-Range``), not marked
``Cache-Control: no-transform``, and, when its size is known, at least
:data:`MIN_SIZE` bytes. ``Vary: Accept-Encoding`` is added to every
response whose type could be compressed, compressed or not.

How: a sized body written at once is compressed whole and keeps a
``Content-Length``; anything else (a streamed body) goes through a
:class:`ChunkCompressor` installed as twisted.web's request encoder
(``Request._encoder``, the hook ``EncodingResourceWrapper`` uses), which
compresses each write and flushes it (``Z_SYNC_FLUSH``), so a stream such
as ``/numbers`` still reaches the client line by line. Twisted's own
``GzipEncoderFactory`` does not fit: it decides before the route has set its
headers (so it cannot see the type or an existing encoding), knows no
deflate, and does not flush per write.

The choice is :func:`choose_encoding` (pure, over header values); the
request (:mod:`.server_request`) applies it before its first byte is written.
"""

from __future__ import annotations

import zlib
from typing import List, Optional, Tuple

from twisted.web.iweb import _IRequestEncoder
from zope.interface import implementer

#: compression level (zlib's default: a fair trade of CPU for bytes).
LEVEL = 6
#: smaller sized bodies are sent as they are (compressing them costs more
#: than it saves).
MIN_SIZE = 256
GZIP = b"gzip"
DEFLATE = b"deflate"
_WBITS = {GZIP: 16 + zlib.MAX_WBITS, DEFLATE: zlib.MAX_WBITS}

#: compressible types besides ``text/*`` and ``*+json``/``*+xml``.
COMPRESSIBLE = frozenset([
    b"application/json", b"application/javascript", b"application/ecmascript",
    b"application/xml", b"application/edn", b"application/x-www-form-urlencoded",
    b"application/xhtml+xml", b"application/wasm", b"image/svg+xml",
    b"application/x-ndjson", b"application/manifest+json", b"application/graphql",
])
NO_BODY_CODES = frozenset([204, 304])


def compressible(content_type: Optional[bytes]) -> bool:
    """Whether a response of this ``Content-Type`` is worth compressing."""
    if not content_type:
        return False
    mimetype = content_type.split(b";", 1)[0].strip().lower()
    return (mimetype.startswith(b"text/") or mimetype in COMPRESSIBLE
            or mimetype.endswith(b"+json") or mimetype.endswith(b"+xml"))


def accepted_encodings(accept_encoding: Optional[bytes]) -> List[Tuple[bytes, float]]:
    """``Accept-Encoding`` as ``[(coding, q)]`` (lower-case, malformed q is 0)."""
    if not accept_encoding:
        return []
    found = []
    for item in accept_encoding.split(b","):
        coding, _, params = item.partition(b";")
        coding = coding.strip().lower()
        if not coding:
            continue
        q = 1.0
        for param in params.split(b";"):
            key, _, value = param.partition(b"=")
            if key.strip().lower() == b"q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:  # also NaN
                    q = 0.0
        found.append((coding, q))
    return found


def negotiate(accept_encoding: Optional[bytes]) -> Optional[bytes]:
    """:data:`GZIP` or :data:`DEFLATE` if the client accepts one (gzip
    first, at equal q), else None."""
    codings = dict(accepted_encodings(accept_encoding))
    best: Optional[bytes] = None
    best_q = 0.0
    for coding in (GZIP, DEFLATE):
        q = codings.get(coding, codings.get(b"*", 0.0))
        if q > best_q:
            best, best_q = coding, q
    return best


def choose_encoding(*, method: bytes, code: int, accept_encoding: Optional[bytes],
                    content_type: Optional[bytes], content_encoding: Optional[bytes],
                    content_length: Optional[int], content_range: bool,
                    cache_control: Optional[bytes]) -> Tuple[Optional[bytes], bool]:
    """``(encoding or None, vary)`` for a response: which coding to apply (see
    the module doc), and whether to add ``Vary: Accept-Encoding``."""
    if not compressible(content_type):
        return None, False
    if content_encoding and content_encoding.strip().lower() != b"identity":
        return None, False
    if method == b"HEAD" or code < 200 or code in NO_BODY_CODES or content_range:
        return None, True
    if cache_control and b"no-transform" in cache_control.lower():
        return None, True
    if content_length is not None and content_length < MIN_SIZE:
        return None, True
    return negotiate(accept_encoding), True


def compress(data: bytes, encoding: bytes, level: int = LEVEL) -> bytes:
    """A whole body compressed at once."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, _WBITS[encoding])
    return compressor.compress(data) + compressor.flush()


@implementer(_IRequestEncoder)
class ChunkCompressor:
    """twisted.web's request encoder for a streamed body: each write is
    compressed and flushed (so it can be decoded on arrival); :meth:`finish`
    ends the stream."""

    __slots__ = ("_compressor",)

    def __init__(self, encoding: bytes, level: int = LEVEL) -> None:
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, _WBITS[encoding])

    def encode(self, data: bytes) -> bytes:
        if not data:
            return b""
        compressor = self._compressor
        return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._compressor.flush()


__all__ = ["compressible", "accepted_encodings", "negotiate", "choose_encoding", "compress",
           "ChunkCompressor", "LEVEL", "MIN_SIZE", "GZIP", "DEFLATE", "COMPRESSIBLE"]
