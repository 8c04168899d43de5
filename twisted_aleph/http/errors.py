"""What the HTTP client raises: one class per way a request can fail.

Timeouts name their phase (``.phase``): :class:`ConnectTimeout` (opening a
connection, including a proxy's CONNECT), :class:`PoolTimeout` (waiting for
a free connection under the pool's limits), :class:`ReadTimeout` (no byte
from the server for ``read_timeout`` seconds, while waiting for the headers
or inside the body) and :class:`RequestTimeout` (the whole request). All are
:class:`TimeoutError`, which is Twisted's ``defer.TimeoutError``, so code
written for the single ``timeout=`` of earlier releases (``except
defer.TimeoutError``) catches every one of them; :class:`ConnectTimeout` is
also Twisted's ``error.TimeoutError``, what ``connect_timeout`` failed with
before.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from twisted.internet import defer, error

ResponseMap = Dict[str, Any]


class HTTPError(Exception):
    """An error status, when ``throw_exceptions=True``; ``.response`` is the map."""

    def __init__(self, response: ResponseMap) -> None:
        super().__init__(f"status {response['status']}")
        self.response = response


class BodyTooLarge(Exception):
    """A buffered response body was longer than ``max_body`` bytes.

    The connection it came on is dropped; ``.max_body`` is the cap,
    ``.length`` what the server declared (Content-Length), if it did.
    """

    def __init__(self, url: str, max_body: int, length: Optional[int] = None) -> None:
        declared = f" (Content-Length {length})" if length is not None else ""
        super().__init__(
            f"response body from {url}{declared} exceeds max_body of {max_body} bytes;"
            " pass a larger max_body, max_body=None, or use connection_pool(raw_stream=True)")
        self.url = url
        self.max_body = max_body
        self.length = length


class TimeoutError(defer.TimeoutError):  # noqa: A001 (http.TimeoutError is the public name)
    """A request ran out of time; ``.phase`` says in which phase, ``.seconds``
    the limit and ``.server`` the ``scheme://host:port`` it was talking to."""

    phase = "request"

    def __init__(self, message: str, *, server: Optional[str] = None,
                 seconds: Optional[float] = None) -> None:
        super().__init__(message)
        self.args = (message,)  # ConnectError's __init__ would keep ("",)
        self.message = message
        self.server = server
        self.seconds = seconds

    def __str__(self) -> str:  # not ConnectError's "<doc>: <osError>" for ConnectTimeout
        return self.message


class ConnectTimeout(TimeoutError, error.TimeoutError):
    """No connection within ``connect_timeout`` seconds (TCP, a proxy's CONNECT)."""

    phase = "connect"


class PoolTimeout(TimeoutError):
    """No free connection within ``pool_timeout`` seconds: the pool's
    ``max_per_host`` or ``max_connections`` were all in use."""

    phase = "pool"


class ReadTimeout(TimeoutError):
    """The server sent nothing for ``read_timeout`` seconds (before the
    headers, or between two pieces of the body); the connection is dropped."""

    phase = "read"


class RequestTimeout(TimeoutError):
    """The whole request took longer than ``timeout`` seconds; it is cancelled
    and its connection dropped (never reused)."""

    phase = "request"


class ProxyError(Exception):
    """A proxy did not carry the request: it refused a CONNECT (``.status``,
    e.g. 407 without valid ``proxy_auth``, 403 for a forbidden port), answered
    it with something that is not HTTP, or closed the tunnel before the server
    behind it answered. ``.proxy`` is the proxy's URL (never its password),
    ``.target`` the ``host:port`` the tunnel was for."""

    def __init__(self, message: str, *, proxy: str, target: str,
                 status: Optional[int] = None) -> None:
        super().__init__(message)
        self.proxy = proxy
        self.target = target
        self.status = status


class TooManyRedirects(Exception):
    """More than ``max_redirects`` redirects (a loop, most likely).

    ``.trace`` lists the URLs followed, ``.url`` the last one, which answered
    with yet another redirect.
    """

    def __init__(self, url: str, max_redirects: int, trace: List[str]) -> None:
        super().__init__(
            f"gave up after {max_redirects} redirects: {url} redirects again"
            " (pass a larger max_redirects, or follow_redirects=False)")
        self.url = url
        self.max_redirects = max_redirects
        self.trace = trace


class BadResponseBody(ValueError):
    """A response body that ``as_=`` could not turn into a value (not JSON,
    not EDN, not text in its charset). ``.response`` is the response map with
    the body as bytes; the underlying parse error is ``__cause__``."""

    def __init__(self, message: str, response: ResponseMap) -> None:
        super().__init__(message)
        self.response = response


class MultipartError(ValueError):
    """A ``files=`` entry that cannot be sent: no such file, not a regular
    file, unreadable, or not a path, bytes, or file object."""


__all__ = [
    "HTTPError", "BodyTooLarge", "TimeoutError", "ConnectTimeout", "PoolTimeout",
    "ReadTimeout", "RequestTimeout", "ProxyError", "TooManyRedirects", "BadResponseBody",
    "MultipartError",
]
