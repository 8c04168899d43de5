"""Cookies for the HTTP client: one jar per pool, and a request's own cookies.

The jar is the standard library's ``http.cookiejar`` (RFC 6265 rules through
its ``DefaultCookiePolicy``: a cookie for another domain, a bad ``Max-Age``
... is refused), as treq's ``IndexableCookieJar`` (``pool.cookies["name"]``);
Twisted's ``CookieAgent`` sends what it holds and stores what responses set,
on every hop of a redirect. Read it by iterating (``{c.name: c.value for c
in pool.cookies}``) or indexing, empty it with ``pool.cookies.clear()``.

:class:`CookieStore` adds one thing: a ``Set-Cookie`` header the standard
library cannot read at all (non-ASCII bytes make ``http.cookiejar`` raise,
which would fail the whole request inside ``CookieAgent``) is ignored, as
RFC 6265 tells user agents to, and reported as a peer's bad input (the
project's :class:`~twisted_aleph.peerlog.PeerLog`: rate-limited per server,
a short excerpt, no traceback); the response and its other cookies are kept.

:func:`request_cookies` gives one request its ``cookies=`` (a dict, scoped
to the request's origin with treq's ``scoped_cookie``, or a ``CookieJar``)
on top of the pool's, without adding them to the pool's jar; what the
responses set still goes to the pool's jar.
"""

from __future__ import annotations

from http.cookiejar import Cookie, CookieJar, CookiePolicy
from typing import Any, Iterable, List, Optional, cast

from treq.cookies import IndexableCookieJar, scoped_cookie
from twisted.web.client import URI

from twisted_aleph.peerlog import PeerLog

#: where every pool reports unreadable Set-Cookie headers, unless given its own
BAD_COOKIES = PeerLog("http-client")


class CookieStore(IndexableCookieJar):
    """A pool's cookie jar (see the module doc); ``peer_log`` hears of the
    ``Set-Cookie`` headers it ignores (default :data:`BAD_COOKIES`)."""

    def __init__(self, policy: Optional[CookiePolicy] = None, *,
                 peer_log: Optional[PeerLog] = None) -> None:
        super().__init__(policy)
        self.peer_log = peer_log if peer_log is not None else BAD_COOKIES

    def extract_cookies(self, response: Any, request: Any) -> None:
        try:
            super().extract_cookies(response, request)
            return
        except (UnicodeError, ValueError, TypeError, IndexError):
            pass
        # Something in one header broke the parser: keep the headers it can read.
        raw = _raw_set_cookies(response)
        bad: List[bytes] = []
        for value in raw:
            try:
                text = value.decode("ascii")
                super().extract_cookies(cast(Any, _OneSetCookie(text)), request)
            except (UnicodeError, ValueError, TypeError, IndexError):
                bad.append(value)
        if bad:
            self._log_bad(bad, request)

    def _log_bad(self, bad: List[bytes], request: Any) -> None:
        server = _server_of(request)
        for value in bad:
            self.peer_log.bad_input(server, "bad Set-Cookie", "unreadable, ignored",
                                    payload=value)


class _RequestJar(CookieStore):
    """The pool's cookies plus one request's; what responses set is stored
    in the pool's jar as well as here (for the next hop of a redirect)."""

    def __init__(self, pool_jar: CookieJar, extra: Iterable[Cookie]) -> None:
        super().__init__()
        self.pool_jar = pool_jar
        for cookie in pool_jar:
            self.set_cookie(cookie)
        for cookie in extra:
            self.set_cookie(cookie)

    def extract_cookies(self, response: Any, request: Any) -> None:
        self.pool_jar.extract_cookies(response, request)
        super().extract_cookies(response, request)

    def _log_bad(self, bad: List[bytes], request: Any) -> None:
        pass  # the pool's jar has said it


def request_cookies(pool_jar: CookieJar, cookies: Any, url: str) -> CookieJar:
    """The jar for one request: ``pool_jar`` alone, or with ``cookies``
    (a ``{name: value}`` dict scoped to ``url``'s origin, a ``CookieJar``,
    or an iterable of ``http.cookiejar.Cookie``) added for this request."""
    if not cookies:
        return pool_jar
    if isinstance(cookies, dict):
        extra: List[Cookie] = []
        for name, value in cookies.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError(f"cookies: names and values must be str, got {name!r}: {value!r}")
            extra.append(scoped_cookie(url, name, value))
        return _RequestJar(pool_jar, extra)
    if isinstance(cookies, CookieJar) or all(isinstance(c, Cookie) for c in cookies):
        return _RequestJar(pool_jar, list(cookies))
    raise TypeError("cookies must be a dict of str, a CookieJar or http.cookiejar.Cookie objects")


class _OneSetCookie:
    """A response with one ``Set-Cookie`` header, as ``http.cookiejar`` reads it."""

    def __init__(self, value: str) -> None:
        self.value = value

    def info(self) -> "_OneSetCookie":
        return self

    def get_all(self, name: str, default: Optional[List[str]] = None) -> List[str]:
        if name.lower() == "set-cookie":
            return [self.value]
        return default if default is not None else []


def _raw_set_cookies(response: Any) -> List[bytes]:
    """The raw ``Set-Cookie`` values of ``CookieAgent``'s stand-in response."""
    inner = getattr(response, "response", None)
    headers = getattr(inner, "headers", None)
    if headers is None:
        return []
    return list(headers.getRawHeaders(b"set-cookie", []))


def _server_of(request: Any) -> str:
    try:
        uri = URI.fromBytes(request.uri if isinstance(request.uri, bytes)
                            else request.get_full_url().encode("ascii"))
        return f"{uri.scheme.decode()}://{uri.host.decode('idna')}:{uri.port}"
    except Exception:
        return "the server"


__all__ = ["CookieStore", "request_cookies"]
