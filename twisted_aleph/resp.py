"""RESP, the Redis wire protocol, as pure functions and an incremental parser.

Sans-IO: :func:`encode_command` makes the bytes of one command and
:class:`RespParser` turns received bytes into replies, exact under any
split or coalescing of chunks. Used by :mod:`twisted_aleph.redisbus`, whose
docstring gives the measurements for which the project keeps its own Redis
client rather than txredisapi's.

Cost: ``feed`` is amortised O(n) in the bytes fed; a reply that arrives in
many small chunks is re-scanned from its start on each feed only up to the
first incomplete element (bulk strings are length-prefixed, so their bodies
are never scanned). A reply larger than ``max_bulk`` is refused, and so is
one nested deeper than ``MAX_DEPTH`` arrays (parsing recurses per level).
"""

from __future__ import annotations

from typing import Any, List, NamedTuple, Optional, Tuple, Union

CRLF = b"\r\n"


class RespError(ValueError):
    """The peer sent bytes that are not RESP."""


class ReplyError(Exception):
    """A Redis error reply (``-ERR ...``), delivered as a value."""


Arg = Union[bytes, str, int, float]


def encode_command(*args: Arg) -> bytes:
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            b = a.encode("utf-8")
        elif isinstance(a, (bytes, bytearray)):
            b = bytes(a)
        elif isinstance(a, (int, float)) and not isinstance(a, bool):
            b = str(a).encode("ascii")
        else:
            raise TypeError(f"cannot send {type(a).__name__} to Redis")
        out.append(b"$%d\r\n" % len(b))
        out.append(b)
        out.append(CRLF)
    return b"".join(out)


_INCOMPLETE = object()

#: arrays nested deeper than this are refused (Redis replies nest a few levels).
MAX_DEPTH = 64


class RespParser:
    """Incremental RESP2 reply parser: ``feed(data) -> [reply, ...]``.

    Replies: ``bytes`` for simple and bulk strings, ``int``, ``None`` for
    null, ``list`` for arrays, :class:`ReplyError` instances for errors.
    """

    def __init__(self, max_bulk: int = 512 * 1024 * 1024) -> None:
        self.max_bulk = max_bulk
        self._buf = bytearray()

    def feed(self, data: bytes) -> List[Any]:
        """Add received bytes; return the replies they completed, in order."""
        self._buf += data
        replies = []
        pos = 0
        buf = self._buf
        while pos < len(buf):
            value, end = self._parse(buf, pos)
            if value is _INCOMPLETE:
                break
            replies.append(value)
            pos = end
        if pos:
            del buf[:pos]
        return replies

    def _parse(self, buf: bytearray, pos: int, depth: int = 0) -> Tuple[Any, int]:
        line_end = buf.find(CRLF, pos)
        if line_end < 0:
            if len(buf) - pos > 64 * 1024:
                raise RespError("RESP header line too long")
            return _INCOMPLETE, pos
        kind = buf[pos:pos + 1]
        line = bytes(buf[pos + 1:line_end])
        nxt = line_end + 2
        if kind == b"+":
            return line, nxt
        if kind == b"-":
            return ReplyError(line.decode("utf-8", "replace")), nxt
        if kind == b":":
            return self._int(line), nxt
        if kind == b"$":
            n = self._int(line)
            if n < 0:
                return None, nxt
            if n > self.max_bulk:
                raise RespError(f"bulk string of {n} bytes over the {self.max_bulk} limit")
            if len(buf) < nxt + n + 2:
                return _INCOMPLETE, pos
            if buf[nxt + n:nxt + n + 2] != CRLF:
                raise RespError("bulk string not terminated by CRLF")
            return bytes(buf[nxt:nxt + n]), nxt + n + 2
        if kind == b"*":
            n = self._int(line)
            if n < 0:
                return None, nxt
            if depth >= MAX_DEPTH:
                raise RespError(f"RESP arrays nested over {MAX_DEPTH} deep")
            items: List[Any] = []
            p = nxt
            for _ in range(n):
                item, p = self._parse(buf, p, depth + 1)
                if item is _INCOMPLETE:
                    return _INCOMPLETE, pos
                items.append(item)
            return items, p
        raise RespError(f"unknown RESP type byte {kind!r}")

    @staticmethod
    def _int(line: bytes) -> int:
        try:
            return int(line)
        except ValueError:
            raise RespError(f"bad RESP integer {line!r}") from None


class RedisURL(NamedTuple):
    """A parsed ``redis://`` URL."""

    host: str
    port: int
    password: Optional[str]
    db: int
    username: Optional[str] = None  # an ACL user (Redis 6+): AUTH username password


def parse_url(url: str) -> RedisURL:
    """``redis://[[user]:password@]host[:port][/db]`` -> :class:`RedisURL`.

    ``ValueError`` for another scheme, a bad port or a db that is not a number.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("redis", ""):
        raise ValueError(f"not a redis:// URL: {url!r}")
    host = parts.hostname or "localhost"
    port = parts.port or 6379
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"the Redis db in {url!r} is not a number")
    return RedisURL(host, port, parts.password, int(path or 0), parts.username or None)


def parse_pubsub_url(url: str) -> RedisURL:
    """:func:`parse_url` for pub/sub, which ignores the db: a URL naming one
    (other than 0) is a ValueError rather than buses that seem apart but share
    every channel."""
    parsed = parse_url(url)
    if parsed.db:
        raise ValueError(f"Redis pub/sub channels are shared by all databases: /{parsed.db} "
                         f"in {url!r} would not keep this bus apart (use another Redis server)")
    return parsed
