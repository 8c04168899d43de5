"""The options the twistd commands share, as ``usage.Options`` mixins.

A command's ``Options`` inherits the mixins it offers (Twisted gathers
``optParameters`` and ``optFlags`` from every base class) and calls their
checks from ``postOptions``: a bad value or combination is a
``usage.UsageError`` naming the option, which twistd prints as one line
instead of a traceback.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Optional

from twisted.internet import ssl
from twisted.python import usage

from twisted_aleph.server import SERVER_GC_THRESHOLD
from twisted_aleph.tls import TLSConfigError, server_context

# -- TLS ----------------------------------------------------------------------------


class ServerTLSOptions:
    """``--tls-cert``, ``--tls-key``, ``--tls-ca`` and ``--require-client-cert``
    (call :func:`server_tls_from_options` from ``postOptions``)."""

    optParameters: List[List[Any]] = [
        ["tls-cert", None, None, "PEM certificate (chain) to serve TLS with."],
        ["tls-key", None, None, "PEM private key for --tls-cert (PKCS#8 or traditional)."],
        ["tls-ca", None, None,
         "PEM CA certificate(s) that client certificates are verified against."],
    ]
    optFlags: List[List[Any]] = [
        ["require-client-cert", None,
         "Refuse clients without a certificate signed by --tls-ca (mutual TLS)."],
    ]


def server_tls_from_options(options: Any) -> Optional[ssl.CertificateOptions]:
    """The server context the TLS options ask for, or None (plain TCP).

    Bad combinations and unusable files raise ``usage.UsageError`` with a
    one-line reason, which twistd prints instead of a traceback.
    """
    cert, key, ca = options.get("tls-cert"), options.get("tls-key"), options.get("tls-ca")
    require = bool(options.get("require-client-cert"))
    if key and not cert:
        raise usage.UsageError("--tls-key needs --tls-cert")
    if cert and not key:
        raise usage.UsageError("--tls-cert needs --tls-key")
    if require and not ca:
        raise usage.UsageError("--require-client-cert needs --tls-ca")
    if ca and not cert:
        raise usage.UsageError("--tls-ca needs --tls-cert and --tls-key")
    if not cert:
        return None
    try:
        return server_context(cert, key, ca=ca or None, require_client_cert=require)
    except TLSConfigError as e:
        raise usage.UsageError(f"TLS: {e}") from e


# -- the garbage collector -------------------------------------------------------------

GC_OPTION: List[Any] = ["gc-threshold", None, SERVER_GC_THRESHOLD,
             "CPython's young-generation garbage collection threshold (Python's default: "
             "700); start-up objects are also frozen out of the collector's sight. "
             "0 leaves the collector alone. No effect on PyPy.", int]


class GCOptions:
    """``--gc-threshold`` (call :func:`check_gc_option` from ``postOptions``);
    the service passes it to :func:`twisted_aleph.server.tune_gc`."""

    optParameters: List[List[Any]] = [GC_OPTION]


def check_gc_option(options: Any) -> None:
    """Refuse a negative ``--gc-threshold`` with a :class:`usage.UsageError`."""
    if options["gc-threshold"] < 0:
        raise usage.UsageError("--gc-threshold must not be negative (0 leaves the collector alone)")


# -- several processes, graceful stop, the chat rooms' bus ---------------------------

SCALING_OPTIONS: List[List[Any]] = [
    ["workers", None, 1,
     "Processes serving the port: this one and N-1 it starts, sharing its socket.", int],
    ["shutdown-timeout", None, 10.0,
     "On SIGTERM, seconds in-flight requests get to finish before they are cut.", float],
    ["inherit-fd", None, None,
     "Internal (set by --workers): serve the listening socket inherited as this fd.", int],
]
BUS_OPTION: List[Any] = ["bus", None, None,
              "redis://[[user]:password@]host:port: chat rooms go through Redis, "
              "so they span workers."]


class ScalingOptions:
    """``--workers``, ``--shutdown-timeout``, ``--inherit-fd`` (call
    :func:`check_options`; :func:`twisted_aleph.tap.scaling.scaled_service`
    acts on them)."""

    optParameters: List[List[Any]] = SCALING_OPTIONS


class BusOptions:
    """``--bus redis://...`` (checked by :func:`check_options`)."""

    optParameters: List[List[Any]] = [BUS_OPTION]


def check_options(options: Mapping[str, Any]) -> None:
    """Refuse impossible values of :data:`SCALING_OPTIONS` / :data:`BUS_OPTION`
    with a :class:`usage.UsageError` naming the option."""
    if options["workers"] < 1:
        raise usage.UsageError("--workers must be at least 1")
    if options["shutdown-timeout"] < 0:
        raise usage.UsageError("--shutdown-timeout must not be negative")
    bus = options.get("bus")
    if bus:
        from twisted_aleph.resp import parse_pubsub_url
        try:
            parse_pubsub_url(bus)
        except ValueError as e:
            raise usage.UsageError(f"--bus: {e}")


__all__ = [
    "ServerTLSOptions", "server_tls_from_options", "GC_OPTION", "GCOptions", "check_gc_option",
    "SCALING_OPTIONS", "BUS_OPTION", "ScalingOptions", "BusOptions", "check_options",
]
