"""Request bodies the client builds, and response bodies it decodes (``as_=``).

Requests: ``json=`` is treq's (compact JSON, ``application/json;
charset=UTF-8``); ``edn=`` is the same for the project's EDN
(``application/edn``); ``files=`` is treq's multipart (its
``MultiPartProducer``, boundary and headers), with each file streamed by
Twisted's ``FileBodyProducer`` in 64 KiB reads, never read whole.
:func:`multipart_files` takes what treq takes plus paths: a value may be a
path (``str`` or ``os.PathLike``: opened here, closed when the request
ends), a binary file object, or ``bytes`` (the content itself), alone or as
``(filename, value)`` or ``(filename, content_type, value)``. A path that is
no regular readable file, or a value of another type, raises
:class:`~twisted_aleph.http.errors.MultipartError` naming the field, before
anything is sent.

Responses: :func:`decode_body` is Aleph's ``:as`` coercion: ``"bytes"``,
``"text"`` (the charset of ``Content-Type``, UTF-8 by default), ``"json"``,
``"edn"``; an empty body is ``None`` for JSON and EDN. A body that does not
decode raises :class:`~twisted_aleph.http.errors.BadResponseBody`.
"""

from __future__ import annotations

import io
import json
import mimetypes
import os
import stat
from email.message import Message
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted_aleph import edn as edn_format
from twisted_aleph.http.errors import BadResponseBody, MultipartError

#: values of ``as_=`` (Aleph's ``:as``); None keeps the body a readable file.
BODY_DECODERS = ("bytes", "text", "json", "edn")

EDN_CONTENT_TYPE = "application/edn"


def edn_body(value: Any) -> bytes:
    """``value`` as the bytes of an ``application/edn`` request body."""
    return edn_format.dumps(value).encode("utf-8")


def multipart_files(files: Any, producer_for: Callable[[Any], Any]
                    ) -> Tuple[List[Tuple[str, Tuple[Optional[str], str, Any]]], List[Any]]:
    """``files=`` as treq's ``files=`` fields ``(name, (filename, content_type,
    producer))``, and the files opened here (the caller closes them when the
    request ends). ``producer_for(file_object)`` makes each body producer."""
    if hasattr(files, "items"):
        items = list(files.items())
    elif isinstance(files, (list, tuple)):
        items = list(files)
    else:
        raise MultipartError(f"files must be a dict or a list of (name, value), not {type(files).__name__}")
    fields: List[Tuple[str, Tuple[Optional[str], str, Any]]] = []
    opened: List[Any] = []
    try:
        for item in items:
            if not (isinstance(item, tuple) and len(item) == 2):
                raise MultipartError(f"files: {item!r} is not a (name, value) pair")
            name, value = item
            if not isinstance(name, str):
                raise MultipartError(f"files: field names must be str, not {name!r}")
            filename, content_type, content = _part(name, value)
            if isinstance(content, (bytes, bytearray, memoryview)):
                f: Any = io.BytesIO(bytes(content))
            elif isinstance(content, (str, os.PathLike)):
                f = _open_regular_file(name, content)
                opened.append(f)
                if filename is None:
                    filename = os.path.basename(os.fsdecode(content))
            elif hasattr(content, "read"):
                f = content
                if filename is None and isinstance(getattr(f, "name", None), str):
                    filename = os.path.basename(f.name)
            else:
                raise MultipartError(
                    f"files[{name!r}]: expected a path, bytes or a binary file, not"
                    f" {type(content).__name__}")
            if content_type is None:
                guessed = mimetypes.guess_type(filename)[0] if filename else None
                content_type = guessed or "application/octet-stream"
            fields.append((name, (filename, content_type, producer_for(f))))
    except BaseException:
        for f in opened:
            f.close()
        raise
    return fields, opened


def _part(name: str, value: Any) -> Tuple[Optional[str], Optional[str], Any]:
    if isinstance(value, tuple):
        if len(value) == 2:
            return value[0], None, value[1]
        if len(value) == 3:
            return value[0], value[1], value[2]
        raise MultipartError(
            f"files[{name!r}]: a tuple must be (filename, value) or (filename, content_type,"
            f" value), not {len(value)} items")
    return None, None, value


def _open_regular_file(name: str, path: Any) -> Any:
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            # a directory, a FIFO (whose open() would block the reactor), a device...
            raise MultipartError(f"files[{name!r}]: {os.fsdecode(path)!r} is not a regular file")
        return open(path, "rb")
    except MultipartError:
        raise
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise MultipartError(f"files[{name!r}]: cannot read {_show(path)}: {reason}") from e


def _show(path: Any) -> str:
    try:
        return repr(os.fsdecode(path))
    except (TypeError, ValueError):
        return repr(path)


def charset_of(headers: Dict[str, str], default: str = "utf-8") -> str:
    """The ``charset`` parameter of a ``content-type`` header, or ``default``."""
    content_type = headers.get("content-type")
    if not content_type:
        return default
    message = Message()
    message["content-type"] = content_type
    return str(message.get_param("charset") or default)


def decode_body(as_: str, response: Dict[str, Any], url: str) -> Any:
    """``response["body"]`` (bytes) decoded as ``as_`` asks (see the module doc)."""
    data: bytes = response["body"]
    headers: Dict[str, str] = response["headers"]
    if as_ == "bytes":
        return data
    try:
        if as_ == "text":
            return data.decode(charset_of(headers))
        if as_ == "json":
            return json.loads(data) if data.strip() else None
        if as_ == "edn":
            return edn_format.loads(data.decode("utf-8"))
    except (ValueError, LookupError) as e:  # JSON/EDN/Unicode errors, unknown charset
        what = {"text": f"{charset_of(headers)} text"}.get(as_, as_.upper())
        raise BadResponseBody(
            f"response body from {url} is not valid {what}: {e}", response) from e
    raise ValueError(f"as_ must be one of {BODY_DECODERS} or None, not {as_!r}")


__all__ = ["BODY_DECODERS", "EDN_CONTENT_TYPE", "charset_of", "decode_body", "edn_body",
           "multipart_files"]
