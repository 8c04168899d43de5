"""HTTP proxies for the client: which requests go through one, and the CONNECT tunnel.

* :class:`ProxySettings` decides, per URL, whether a request goes through a
  proxy: ``proxy=`` (one ``http://[user:password@]host:port`` URL, or one per
  scheme ``{"http": ..., "https": ...}``), ``no_proxy=`` (hosts reached
  directly, in the ``NO_PROXY`` syntax: ``example.com, .internal, 10.0.0.1,
  host:8080, *``), and with ``trust_env=True`` the ``HTTP_PROXY``,
  ``HTTPS_PROXY`` and ``NO_PROXY`` environment variables for what the
  arguments leave out. The environment is read by the standard library's
  ``urllib.request.getproxies_environment`` and ``no_proxy`` is matched by
  its ``proxy_bypass_environment``: the rules urllib and requests use.
* Plain ``http://`` URLs go through Twisted's ``ProxyAgent`` (the request
  line carries the absolute URL; ``proxy_auth`` becomes a
  ``Proxy-Authorization`` header on each request sent to the proxy).
* ``https://`` URLs go through a ``CONNECT host:port`` tunnel, with TLS to
  the origin inside it (the certificate is checked against the origin's
  name, never the proxy's). Twisted has no such thing (``ProxyAgent`` says
  so in its source, and twisted/twisted#5324 has asked for it since 2011),
  nor has treq, so :class:`TunnelEndpoint` is written here: an
  ``IStreamClientEndpoint`` that connects to the proxy, asks ``CONNECT``,
  reads the proxy's answer (at most :data:`MAX_CONNECT_REPLY` bytes of it)
  and, on a 2xx, hands the connection to the protocol it was asked to
  connect; Twisted's ``wrapClientTLS`` puts TLS over it and its
  ``HTTPConnectionPool`` keeps it alive like any connection. A refused
  CONNECT (407 proxy authentication required, 403 forbidden...), a reply
  that is not HTTP, or a proxy that hangs up fails the connection with
  :class:`~twisted_aleph.http.errors.ProxyError` naming the proxy, the
  target and the status.

Only ``http://`` proxies are supported (no TLS to the proxy itself, no SOCKS).
"""

from __future__ import annotations

import base64
import urllib.request
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union
from urllib.parse import unquote, urlsplit

from twisted.internet import protocol
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_aleph.http.errors import ProxyError

#: the longest reply to a CONNECT we read (status line and headers).
MAX_CONNECT_REPLY = 16384

ProxyAuth = Tuple[Union[str, bytes], Union[str, bytes]]


def basic_credentials(auth: ProxyAuth) -> bytes:
    """The value of a Basic ``Authorization``/``Proxy-Authorization`` header."""
    user, password = (x if isinstance(x, bytes) else x.encode("utf-8") for x in auth)
    return b"Basic " + base64.b64encode(user + b":" + password)


class Proxy:
    """One HTTP proxy: where it is, how to authenticate, its endpoint.

    ``endpoint`` (to the proxy) is made once, so that Twisted's ``ProxyAgent``,
    which keys its kept-alive connections by that endpoint, reuses them.
    """

    def __init__(self, url: str, auth: Optional[ProxyAuth], reactor: Any) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise ValueError(
                f"proxy {_without_password(url)!r}: only http:// proxies are supported"
                " (an https:// URL is still tunnelled through an http:// proxy)")
        if not parts.hostname:
            raise ValueError(f"proxy {_without_password(url)!r} has no host")
        try:
            port = parts.port or 80
        except ValueError as e:
            raise ValueError(f"proxy {_without_password(url)!r}: {e}") from None
        self.host: str = parts.hostname
        self.port: int = port
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{port}"
        if auth is None and parts.username is not None:
            auth = (unquote(parts.username), unquote(parts.password or ""))
        self.authorization: Optional[bytes] = basic_credentials(auth) if auth else None
        self.endpoint = HostnameEndpoint(reactor, self.host, port)

    def __repr__(self) -> str:
        return f"Proxy({self.url!r})"


class ProxySettings:
    """Which URLs go through which :class:`Proxy` (see the module doc)."""

    def __init__(self, proxy: Union[None, str, Mapping[str, str]] = None, *,
                 proxy_auth: Optional[ProxyAuth] = None,
                 no_proxy: Union[None, str, Any] = None, trust_env: bool = False,
                 reactor: Any = None) -> None:
        urls: Dict[str, str] = {}
        environment: Dict[str, str] = {}
        if trust_env:
            environment = urllib.request.getproxies_environment()
            urls.update((k, v) for k, v in environment.items() if k in ("http", "https"))
        if isinstance(proxy, str):
            urls = {"http": proxy, "https": proxy}
        elif proxy is not None:
            unknown = set(proxy) - {"http", "https"}
            if unknown:
                raise ValueError(f"proxy: schemes must be 'http' or 'https', not {sorted(unknown)}")
            urls.update(proxy)
        if proxy_auth is not None and not (isinstance(proxy_auth, tuple) and len(proxy_auth) == 2):
            raise TypeError("proxy_auth must be a (user, password) tuple")
        made: Dict[str, Proxy] = {}
        self.proxies: Dict[str, Proxy] = {}
        for scheme, url in urls.items():
            if url:
                if url not in made:
                    made[url] = Proxy(url, proxy_auth, reactor)
                self.proxies[scheme] = made[url]
        if no_proxy is None:
            no_proxy = environment.get("no", "")
        if not isinstance(no_proxy, str):
            no_proxy = ",".join(no_proxy)
        self.no_proxy: str = no_proxy

    def __bool__(self) -> bool:
        return bool(self.proxies)

    def proxy_for(self, scheme: str, host: str, port: int) -> Optional[Proxy]:
        """The proxy for a request to ``scheme://host:port``, or None (direct)."""
        proxy = self.proxies.get(scheme)
        if proxy is None:
            return None
        if self.no_proxy and (
                proxy_bypass_environment(host, {"no": self.no_proxy})
                or proxy_bypass_environment(
                    f"{host}:{port}", {"no": self.no_proxy})):
            return None
        return proxy


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


@implementer(IStreamClientEndpoint)
class TunnelEndpoint:
    """A connection to ``host:port`` through ``proxy``'s ``CONNECT`` (RFC 9110 9.3.6).

    ``connect(factory)`` fires with ``factory``'s protocol once the proxy
    answered 2xx, or fails with :class:`ProxyError`. ``on_early_close`` is
    called with a :class:`ProxyError` when the tunnel closes before a single
    byte came back through it (the proxy dropped it), so the request can say
    so instead of reporting a bare lost connection.
    """

    def __init__(self, proxy: Proxy, host: str, port: int, *,
                 on_early_close: Optional[Callable[[ProxyError], None]] = None) -> None:
        self.proxy = proxy
        self.host = host
        self.port = port
        self.on_early_close = on_early_close

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred:
        handshake = _ConnectHandshake(self, protocolFactory)
        connecting = connectProtocol(self.proxy.endpoint, handshake)

        def cancel(_: Deferred) -> None:
            if not connecting.called:
                connecting.cancel()
            elif handshake.transport is not None:
                handshake.transport.abortConnection()  # type: ignore[attr-defined]

        ready: Deferred = Deferred(cancel)
        handshake.ready = ready
        connecting.addErrback(lambda f: None if ready.called else ready.errback(f))
        return ready


class _ConnectHandshake(protocol.Protocol):
    """Sends CONNECT, reads the proxy's reply, then passes bytes both ways
    between the connection and the protocol the tunnel was made for."""

    def __init__(self, endpoint: TunnelEndpoint, factory: IProtocolFactory) -> None:
        self.endpoint = endpoint
        self.factory = factory
        self.ready: Optional[Deferred] = None
        self.tunnelled: Optional[protocol.Protocol] = None
        self.answered = False  # a byte came back through the tunnel
        self._reply = b""

    def connectionMade(self) -> None:
        target = self.endpoint.target.encode("idna" if not self.endpoint.host.isascii() else "ascii")
        lines = [b"CONNECT " + target + b" HTTP/1.1", b"Host: " + target]
        if self.endpoint.proxy.authorization:
            lines.append(b"Proxy-Authorization: " + self.endpoint.proxy.authorization)
        self.transport.write(b"\r\n".join(lines) + b"\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        if self.tunnelled is not None:
            self.answered = True
            self.tunnelled.dataReceived(data)
            return
        if self.ready is None or self.ready.called:
            return  # refused (and being closed), or cancelled
        self._reply += data
        end = self._reply.find(b"\r\n\r\n")
        if end < 0:
            if len(self._reply) > MAX_CONNECT_REPLY:
                self._refuse(f"sent a reply to CONNECT {self.endpoint.target} over"
                             f" {MAX_CONNECT_REPLY} bytes")
            return
        head, rest = self._reply[:end], self._reply[end + 4:]
        self._reply = b""
        status, reason = _status_of(head)
        if status is None:
            self._refuse(f"answered CONNECT {self.endpoint.target} with something that is"
                         f" not HTTP: {head[:60]!r}")
        elif not 200 <= status < 300:
            self._refuse(_refusal(self.endpoint, status, reason), status)
        else:
            self._open(rest)

    def _open(self, rest: bytes) -> None:
        self.tunnelled = self.factory.buildProtocol(self.transport.getPeer())
        if self.tunnelled is None:
            self.transport.loseConnection()
            self.ready.errback(ConnectionError("the protocol factory refused the connection"))
            return
        self.tunnelled.makeConnection(self.transport)
        self.ready.callback(self.tunnelled)
        if rest:
            self.dataReceived(rest)

    def _refuse(self, message: str, status: Optional[int] = None) -> None:
        self.transport.loseConnection()
        if self.ready is not None and not self.ready.called:
            self.ready.errback(ProxyError(f"proxy {self.endpoint.proxy.url} {message}",
                                          proxy=self.endpoint.proxy.url,
                                          target=self.endpoint.target, status=status))

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self.tunnelled is not None:
            if not self.answered and self.endpoint.on_early_close is not None:
                self.endpoint.on_early_close(ProxyError(
                    f"proxy {self.endpoint.proxy.url} closed the tunnel to"
                    f" {self.endpoint.target} before the server answered",
                    proxy=self.endpoint.proxy.url, target=self.endpoint.target))
            self.tunnelled.connectionLost(reason)
        elif self.ready is not None and not self.ready.called:
            if reason.check(CancelledError):
                self.ready.errback(reason)
                return
            self.ready.errback(ProxyError(
                f"proxy {self.endpoint.proxy.url} closed the connection before answering"
                f" CONNECT {self.endpoint.target} ({reason.getErrorMessage()})",
                proxy=self.endpoint.proxy.url, target=self.endpoint.target))


def _status_of(head: bytes) -> Tuple[Optional[int], str]:
    """``(status, reason)`` from a reply's status line, or ``(None, "")``."""
    line = head.split(b"\r\n", 1)[0]
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() \
            or len(parts[1]) != 3:
        return None, ""
    reason = parts[2].decode("latin-1").strip() if len(parts) > 2 else ""
    return int(parts[1]), reason


def _refusal(endpoint: TunnelEndpoint, status: int, reason: str) -> str:
    message = f"refused CONNECT {endpoint.target}: {status} {reason}".rstrip()
    if status in (401, 407):  # 407 is the standard answer; some proxies say 401
        if endpoint.proxy.authorization is None:
            message += " (it wants credentials: pass proxy_auth=(user, password))"
        else:
            message += " (it rejected the proxy_auth given)"
    return message


__all__ = ["MAX_CONNECT_REPLY", "Proxy", "ProxySettings", "TunnelEndpoint", "basic_credentials"]
