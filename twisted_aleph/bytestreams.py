"""Conversions between byte representations (Clojure's byte-streams).

``to_bytes``, ``to_string``, ``to_line_seq`` and ``to_byte_stream`` accept
``bytes``, ``bytearray``, ``memoryview``, ``str`` (UTF-8 unless told
otherwise), binary or text file objects, iterables of such chunks, Streams
of chunks and Deferreds of any of these.

What comes back depends on whether the input is already at hand (SPEC 1):

* in-memory or blocking inputs (bytes, str, files, iterables) give a plain
  value: ``bytes``, ``str``, or a list/iterator of lines;
* a Stream (or async iterable) or a Deferred gives a Deferred of that value,
  except ``to_line_seq``, which turns a Stream of chunks into a Stream of
  lines, and ``to_byte_stream``, which always gives a Stream.

Files are read on the calling thread: fine for regular files and for the
HTTP client's in-memory bodies; wrap a pipe or socket in a Stream instead.
Cost: joining is linear; line splitting keeps only the unfinished line
between chunks, so it is linear too however the chunks are cut.
"""

from __future__ import annotations

import codecs
from typing import Any, Iterable, Iterator, List, Union

from twisted.internet.defer import Deferred

from twisted_aleph.stream import Stream, map as stream_map, reduce as stream_reduce
from twisted_aleph.stream import to_source, transform
from twisted_aleph.stream.xforms import Reducer

__all__ = ["to_bytes", "to_string", "to_line_seq", "to_byte_stream",
           "LineSplitter", "DEFAULT_CHUNK_SIZE"]

#: chunk size for reading files and cutting bytes into a stream: 64 KiB.
DEFAULT_CHUNK_SIZE = 64 * 1024

_BYTES_LIKE = (bytes, bytearray, memoryview)


def _is_stream(x: Any) -> bool:
    return isinstance(x, Stream) or hasattr(x, "_add_edge") or hasattr(x, "__aiter__")


def _is_file(x: Any) -> bool:
    return hasattr(x, "read") and not isinstance(x, (str,) + _BYTES_LIKE)


def _chunk_to_bytes(chunk: Any, encoding: str) -> bytes:
    """One chunk (bytes-like or str) as bytes; TypeError for anything else."""
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, (bytearray, memoryview)):
        return bytes(chunk)
    if isinstance(chunk, str):
        return chunk.encode(encoding)
    raise TypeError(f"cannot convert {type(chunk).__name__} to bytes")


def _read_chunks(f: Any, chunk_size: int) -> Iterator[Any]:
    """The chunks of file ``f`` (bytes or str), read ``chunk_size`` at a time."""
    while True:
        chunk = f.read(chunk_size)
        if not chunk:
            return
        yield chunk


def _chunks(x: Any, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterable[Any]:
    """An in-memory or blocking input as an iterable of bytes/str chunks."""
    if isinstance(x, (str,) + _BYTES_LIKE):
        return (x,)
    if _is_file(x):
        return _read_chunks(x, chunk_size)
    if isinstance(x, (int, float, dict)) or x is None:
        raise TypeError(f"cannot convert {type(x).__name__} to bytes")
    try:
        return iter(x)
    except TypeError:
        raise TypeError(f"cannot convert {type(x).__name__} to bytes") from None


def to_bytes(x: Any, encoding: str = "utf-8") -> Union[bytes, Deferred]:
    """``x`` as one ``bytes`` value; a Deferred of it for a Stream or Deferred.

    ``str`` pieces are encoded with ``encoding``.
    """
    if isinstance(x, bytes):
        return x
    if isinstance(x, Deferred):
        return x.addCallback(to_bytes, encoding)
    if _is_stream(x):
        d = stream_reduce(_append_chunk, [], to_source(x))
        return d.addCallback(lambda parts: b"".join(
            _chunk_to_bytes(p, encoding) for p in parts))
    return b"".join(_chunk_to_bytes(chunk, encoding) for chunk in _chunks(x))


def _append_chunk(parts: List[Any], chunk: Any) -> List[Any]:
    parts.append(chunk)
    return parts


def to_string(x: Any, encoding: str = "utf-8") -> Union[str, Deferred]:
    """``x`` decoded as one ``str``; a Deferred of it for a Stream or Deferred.

    Bytes are decoded after joining, so a character cut between two chunks is
    decoded whole. Undecodable bytes raise ``UnicodeDecodeError``.
    """
    if isinstance(x, str):
        return x
    if isinstance(x, Deferred):
        return x.addCallback(to_string, encoding)
    data = to_bytes(x, encoding)
    if isinstance(data, Deferred):
        return data.addCallback(lambda b: b.decode(encoding))
    return data.decode(encoding)


class LineSplitter:
    """Sans-IO line splitter: ``feed(chunk) -> [complete lines]``, ``finish()``.

    Lines end at ``\\n`` or ``\\r\\n`` (a lone ``\\r`` stays in the line), the
    terminators are dropped, and a last line without terminator is kept if
    not empty: for ``\\n`` text this is ``str.splitlines``. Bytes are decoded
    incrementally, so a multi-byte character cut between chunks is whole.
    Only the unfinished line is held between feeds.
    """

    __slots__ = ("encoding", "_decoder", "_partial")

    def __init__(self, encoding: str = "utf-8") -> None:
        self.encoding = encoding
        self._decoder = codecs.getincrementaldecoder(encoding)()
        self._partial: List[str] = []

    def feed(self, chunk: Any) -> List[str]:
        """Add a chunk (bytes-like or str); return the lines it completed."""
        if isinstance(chunk, str):
            text = chunk
        elif isinstance(chunk, _BYTES_LIKE):
            text = self._decoder.decode(chunk)
        else:
            raise TypeError(f"cannot split {type(chunk).__name__} into lines")
        if "\n" not in text:
            if text:
                self._partial.append(text)
            return []
        pieces = text.split("\n")
        if self._partial:
            self._partial.append(pieces[0])
            pieces[0] = "".join(self._partial)
        tail = pieces.pop()
        self._partial = [tail] if tail else []
        return [p[:-1] if p.endswith("\r") else p for p in pieces]

    def finish(self) -> List[str]:
        """The last, unterminated line (if any); the input has ended."""
        rest = self._decoder.decode(b"", final=True)
        if rest:
            self._partial.append(rest)
        last = "".join(self._partial)
        self._partial = []
        if last.endswith("\r"):
            last = last[:-1]
        return [last] if last else []


def _iter_lines(chunks: Iterable[Any], encoding: str) -> Iterator[str]:
    splitter = LineSplitter(encoding)
    for chunk in chunks:
        yield from splitter.feed(chunk)
    yield from splitter.finish()


class _SplitLines(Reducer):
    """A ``transform`` stage: chunks in, lines out (for Streams)."""

    __slots__ = ("splitter",)

    def __init__(self, rf: Reducer, encoding: str) -> None:
        super().__init__(rf)
        self.splitter = LineSplitter(encoding)

    def step(self, acc: Any, chunk: Any) -> Any:
        for line in self.splitter.feed(chunk):
            acc = self.rf.step(acc, line)
        return acc

    def complete(self, acc: Any) -> Any:
        for line in self.splitter.finish():
            acc = self.rf.step(acc, line)
        return self.rf.complete(acc)


def to_line_seq(x: Any, encoding: str = "utf-8") -> Any:
    """The lines of ``x``, without terminators.

    A list for ``bytes``/``str``; a lazy iterator for files and iterables of
    chunks (read as it is consumed); a Stream of lines for a Stream of
    chunks (split across chunk boundaries, with backpressure); a Deferred of
    a list for a Deferred.
    """
    if isinstance(x, (str,) + _BYTES_LIKE):
        return list(_iter_lines((x,), encoding))
    if isinstance(x, Deferred):
        return x.addCallback(lambda v: list(_lines_now(v, encoding)))
    if _is_stream(x):
        return transform(lambda rf: _SplitLines(rf, encoding), to_source(x))
    return _iter_lines(_chunks(x), encoding)


def _lines_now(x: Any, encoding: str) -> Iterable[str]:
    if _is_stream(x):
        raise TypeError("a Deferred of a Stream: call to_line_seq on the Stream")
    return to_line_seq(x, encoding)


def to_byte_stream(x: Any, chunk_size: int = DEFAULT_CHUNK_SIZE,
                   encoding: str = "utf-8") -> Any:
    """``x`` as a Stream of ``bytes`` chunks, produced with backpressure.

    ``bytes``/``str`` are cut into ``chunk_size`` pieces, a file is read
    ``chunk_size`` at a time (as the stream is consumed), an iterable's own
    chunks are kept, a Stream's chunks are converted to bytes, and a Deferred
    becomes a stream of its value's chunks.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be > 0")
    if isinstance(x, Deferred):
        out = Stream(description="to_byte_stream")

        def convert(value: Any) -> None:
            from twisted_aleph.stream import connect
            connect(to_byte_stream(value, chunk_size, encoding), out)

        def failed(f: Any) -> None:
            from twisted_aleph.stream.default import log
            log.failure("to_byte_stream: Deferred failed; closing", f)
            out.close()

        x.addCallbacks(convert, failed)
        return out
    if _is_stream(x):
        return stream_map(lambda chunk: _chunk_to_bytes(chunk, encoding), to_source(x))
    if isinstance(x, (str,) + _BYTES_LIKE):
        data = _chunk_to_bytes(x, encoding)
        return to_source(_cut(data, chunk_size))
    chunks = _chunks(x, chunk_size)
    return to_source(_chunk_to_bytes(chunk, encoding) for chunk in chunks)


def _cut(data: bytes, chunk_size: int) -> Iterator[bytes]:
    if len(data) <= chunk_size:
        if data:
            yield data
        return
    view = memoryview(data)
    for start in range(0, len(data), chunk_size):
        yield bytes(view[start:start + chunk_size])
