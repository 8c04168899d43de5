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
between chunks, so it is linear too however the chunks are cut, and that
line is capped (``max_line_length``, 1 MiB by default) so a peer that never
sends a newline cannot make it grow without limit.
"""

from __future__ import annotations

import codecs
from typing import Any, Iterable, Iterator, List, Optional, Union

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from twisted_aleph.stream import Stream, map as stream_map, reduce as stream_reduce
from twisted_aleph.stream import Reduced, Reducer, connect, to_source, transform

__all__ = ["to_bytes", "to_string", "to_line_seq", "to_byte_stream",
           "LineSplitter", "LineTooLong", "DEFAULT_CHUNK_SIZE", "DEFAULT_MAX_LINE_LENGTH"]

log = Logger()

#: chunk size for reading files and cutting bytes into a stream: 64 KiB.
DEFAULT_CHUNK_SIZE = 64 * 1024

#: the longest line ``to_line_seq`` holds (characters, terminator excluded): 1 MiB.
DEFAULT_MAX_LINE_LENGTH = 1024 * 1024

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


class LineTooLong(ValueError):
    """A line grew past ``max_line_length`` characters without ending.

    ``lines`` holds the complete lines that came before it in the same
    chunk, so a caller can still hand them on: nothing earlier is lost.
    """

    def __init__(self, max_line_length: int, lines: Optional[List[str]] = None) -> None:
        super().__init__(f"line longer than {max_line_length} characters"
                         " (no line terminator within the limit)")
        self.max_line_length = max_line_length
        self.lines: List[str] = lines or []


class LineSplitter:
    """Sans-IO line splitter: ``feed(chunk) -> [complete lines]``, ``finish()``.

    Lines end at ``\\n`` or ``\\r\\n`` (a lone ``\\r`` stays in the line), the
    terminators are dropped, and a last line without terminator is kept if
    not empty: for ``\\n`` text this is ``str.splitlines``. Bytes are decoded
    incrementally, so a multi-byte character cut between chunks is whole.
    Only the unfinished line is held between feeds.

    With ``max_line_length`` (characters, terminator excluded; None:
    unbounded), a line longer than that raises :class:`LineTooLong` from
    ``feed``/``finish`` and the unfinished line is dropped, so the splitter
    never holds more than about one chunk plus the limit.
    """

    __slots__ = ("encoding", "max_line_length", "_decoder", "_partial", "_partial_len")

    def __init__(self, encoding: str = "utf-8",
                 max_line_length: Optional[int] = None) -> None:
        if max_line_length is not None and max_line_length < 0:
            raise ValueError("max_line_length must be >= 0 or None")
        self.encoding = encoding
        self.max_line_length = max_line_length
        self._decoder = codecs.getincrementaldecoder(encoding)()
        self._partial: List[str] = []
        self._partial_len = 0

    def feed(self, chunk: Any) -> List[str]:
        """Add a chunk (bytes-like or str); return the lines it completed."""
        if isinstance(chunk, str):
            text = chunk
        elif isinstance(chunk, _BYTES_LIKE):
            text = self._decoder.decode(chunk)
        else:
            raise TypeError(f"cannot split {type(chunk).__name__} into lines")
        limit = self.max_line_length
        if "\n" not in text:
            if text:
                self._partial.append(text)
                self._partial_len += len(text)
                if limit is not None and self._partial_len > limit:
                    self._check_unfinished(limit, [])
            return []
        pieces = text.split("\n")
        if self._partial:
            self._partial.append(pieces[0])
            pieces[0] = "".join(self._partial)
        tail = pieces.pop()
        self._partial = [tail] if tail else []
        self._partial_len = len(tail)
        lines = [p[:-1] if p.endswith("\r") else p for p in pieces]
        if limit is not None:
            if max(map(len, lines)) > limit:
                self._overflow(limit, lines)
            if self._partial_len > limit:
                self._check_unfinished(limit, lines)
        return lines

    def _check_unfinished(self, limit: int, lines: List[str]) -> None:
        """The unfinished line is past the limit, unless only by a ``\\r``
        that may be the start of its ``\\r\\n``."""
        if self._partial_len == limit + 1 and self._partial[-1].endswith("\r"):
            return
        self._overflow(limit, lines)

    def _overflow(self, limit: int, lines: List[str]) -> None:
        """Drop the unfinished line; raise with the good lines before the long one."""
        self._partial = []
        self._partial_len = 0
        good: List[str] = []
        for line in lines:
            if len(line) > limit:
                break
            good.append(line)
        raise LineTooLong(limit, good)

    def finish(self) -> List[str]:
        """The last, unterminated line (if any); the input has ended."""
        rest = self._decoder.decode(b"", final=True)
        if rest:
            self._partial.append(rest)
        last = "".join(self._partial)
        self._partial = []
        self._partial_len = 0
        if last.endswith("\r"):
            last = last[:-1]
        if self.max_line_length is not None and len(last) > self.max_line_length:
            raise LineTooLong(self.max_line_length)
        return [last] if last else []


def _iter_lines(chunks: Iterable[Any], encoding: str,
                max_line_length: Optional[int] = None) -> Iterator[str]:
    splitter = LineSplitter(encoding, max_line_length)
    for chunk in chunks:
        try:
            lines = splitter.feed(chunk)
        except LineTooLong as e:
            yield from e.lines
            raise LineTooLong(e.max_line_length) from None
        yield from lines
    yield from splitter.finish()


class _SplitLines(Reducer):
    """A ``transform`` stage: chunks in, lines out (for Streams).

    A line past the limit is logged and stops the stage (``Reduced``): the
    lines before it are still delivered, then the transform closes the
    line stream, which closes the chunk stream (that connection) too.
    """

    __slots__ = ("splitter", "overflowed")

    def __init__(self, rf: Reducer, encoding: str, max_line_length: Optional[int]) -> None:
        super().__init__(rf)
        self.splitter = LineSplitter(encoding, max_line_length)
        self.overflowed = False

    def step(self, acc: Any, chunk: Any) -> Any:
        try:
            lines = self.splitter.feed(chunk)
        except LineTooLong as e:
            return Reduced(self._give_up(acc, e))
        for line in lines:
            acc = self.rf.step(acc, line)
        return acc

    def complete(self, acc: Any) -> Any:
        if not self.overflowed:
            try:
                lines = self.splitter.finish()
            except LineTooLong as e:
                return self.rf.complete(self._give_up(acc, e))
            for line in lines:
                acc = self.rf.step(acc, line)
        return self.rf.complete(acc)

    def _give_up(self, acc: Any, error: LineTooLong) -> Any:
        self.overflowed = True
        for line in error.lines:
            acc = self.rf.step(acc, line)
        log.error("to_line_seq: {error}; closing the line stream and its source",
                  error=error)
        return acc


def to_line_seq(x: Any, encoding: str = "utf-8",
                max_line_length: Optional[int] = DEFAULT_MAX_LINE_LENGTH) -> Any:
    """The lines of ``x``, without terminators.

    A list for ``bytes``/``str``; a lazy iterator for files and iterables of
    chunks (read as it is consumed); a Stream of lines for a Stream of
    chunks (split across chunk boundaries, with backpressure); a Deferred of
    a list for a Deferred.

    ``max_line_length`` (characters, terminator excluded; default 1 MiB,
    None: unbounded) caps what is held for a line that has not ended, for
    inputs that can be endless (a peer that never sends a newline). Past
    it, a Stream of lines is closed, with its source, and the error logged
    (lines before the long one are delivered first; nothing is raised into
    the producer); an iterator raises :class:`LineTooLong` (a ValueError)
    after the lines before it; a Deferred fails with it. ``bytes``/``str``
    are already in memory and are split whole, without the limit.
    """
    if isinstance(x, (str,) + _BYTES_LIKE):
        return list(_iter_lines((x,), encoding))
    if isinstance(x, Deferred):
        return x.addCallback(lambda v: list(_lines_now(v, encoding, max_line_length)))
    if _is_stream(x):
        return transform(lambda rf: _SplitLines(rf, encoding, max_line_length),
                         to_source(x))
    return _iter_lines(_chunks(x), encoding, max_line_length)


def _lines_now(x: Any, encoding: str, max_line_length: Optional[int]) -> Iterable[str]:
    if _is_stream(x):
        raise TypeError("a Deferred of a Stream: call to_line_seq on the Stream")
    return to_line_seq(x, encoding, max_line_length)


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
            connect(to_byte_stream(value, chunk_size, encoding), out)

        def failed(f: Any) -> None:
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
