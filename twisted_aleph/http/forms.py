"""Form bodies (``application/x-www-form-urlencoded``, ``multipart/form-data``)
parsed into ``{name: [value, ...]}`` (bytes, like ``request.args``).

twisted.web parses a POSTed form whole, eagerly, in ``requestReceived``,
before the resource is even found: a 16 MiB form of ``a=1&`` froze a server
for seconds, for every route. Here a form is parsed only when a route asks
(:mod:`.server_request` calls :func:`parse_form`), and within bounds: the body is
already capped, the fields are counted *before* parsing (at most
``max_fields``, werkzeug's ``max_form_parts`` default of 1,000), so the
per-field Python work is bounded; what is left is proportional to the bytes.

The parsers are the well-kept ones: urlencoded bodies by twisted.web's own
``parse_qs`` (what ``request.args`` always used), multipart bodies by
werkzeug's sans-IO ``MultipartDecoder`` (werkzeug comes with Klein), fed in
slices so a body in a temporary file is never read into memory twice.

Pure functions over a file object, no reactor: the caller decides to run
them inline (small bodies) or in a thread.
"""

from __future__ import annotations

from typing import IO, Dict, List, Optional

from twisted.web.http import parse_qs
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
#: bytes of a multipart body handed to the decoder at a time.
SLICE = 65536

FormArgs = Dict[bytes, List[bytes]]


class FormError(ValueError):
    """A form body that cannot be parsed, or has too many fields: one line."""


def form_type(content_type: Optional[bytes]) -> Optional[str]:
    """:data:`URLENCODED` or :data:`MULTIPART` if ``content_type`` (a raw
    ``Content-Type`` value) is a form, else None."""
    if not content_type:
        return None
    mimetype = content_type.split(b";", 1)[0].strip().lower()
    if mimetype == URLENCODED.encode():
        return URLENCODED
    if mimetype == MULTIPART.encode():
        return MULTIPART
    return None


def parse_form(content_type: bytes, body: IO[bytes], max_fields: int) -> FormArgs:
    """The fields of a form body read from ``body`` (from its start; left at
    its start again). Raises :class:`FormError`."""
    kind = form_type(content_type)
    body.seek(0)
    try:
        if kind == URLENCODED:
            return parse_urlencoded(body.read(), max_fields)
        if kind == MULTIPART:
            return parse_multipart(content_type, body, max_fields)
        return {}
    finally:
        body.seek(0)


def field_count(content_type: bytes, body: IO[bytes]) -> int:
    """How many fields (urlencoded) or parts (multipart) a form body has, at
    most: a count of separators, in C, without parsing (the body is read
    whole: call it on small bodies)."""
    body.seek(0)
    data = body.read()
    body.seek(0)
    kind = form_type(content_type)
    if kind == URLENCODED:
        return data.count(b"&") + data.count(b";") + 1 if data else 0
    if kind == MULTIPART:
        try:
            boundary = parse_options_header(content_type.decode("latin-1"))[1].get("boundary")
        except Exception:
            boundary = None
        return data.count(b"--" + boundary.encode("latin-1")) if boundary else 0
    return 0


def parse_urlencoded(data: bytes, max_fields: int) -> FormArgs:
    """``a=1&b=2`` (``;`` separates too, as twisted.web's ``parse_qs``)."""
    fields = data.count(b"&") + data.count(b";") + 1
    if fields > max_fields:
        raise FormError(f"Too many form fields (more than {max_fields}).")
    return parse_qs(data, 1)  # type: ignore[no-any-return]


def parse_multipart(content_type: bytes, body: IO[bytes], max_fields: int) -> FormArgs:
    """Every part's content by its ``name`` (file parts too, as twisted.web
    gives them), read from ``body`` a slice at a time."""
    try:
        options = parse_options_header(content_type.decode("latin-1"))[1]
    except Exception:
        options = {}
    boundary = options.get("boundary")
    if not boundary:
        raise FormError("Multipart form without a boundary.")
    decoder = MultipartDecoder(boundary.encode("latin-1"), max_parts=max_fields)
    args: FormArgs = {}
    name: Optional[bytes] = None
    value: List[bytes] = []
    try:
        while True:
            data = body.read(SLICE)
            decoder.receive_data(data or None)
            while True:
                event = decoder.next_event()
                if isinstance(event, (NeedData, Epilogue)):
                    break
                if isinstance(event, (Field, File)):
                    # (a part without a name is read and left out)
                    name = event.name.encode("utf-8") if event.name else None
                    value = []
                elif isinstance(event, Data):
                    value.append(event.data)
                    if not event.more_data and name is not None:
                        args.setdefault(name, []).append(b"".join(value))
                        name, value = None, []
            if isinstance(event, Epilogue) or not data:
                break
    except RequestEntityTooLarge:
        raise FormError(f"Too many form parts (more than {max_fields}).") from None
    except ValueError:  # werkzeug's malformed-body errors (and bad UTF-8 in part headers)
        raise FormError("Malformed multipart form.") from None
    if not isinstance(event, Epilogue):
        raise FormError("Multipart form ends before its closing boundary.")
    return args


__all__ = ["FormError", "FormArgs", "form_type", "field_count", "parse_form", "parse_urlencoded",
           "parse_multipart", "URLENCODED", "MULTIPART"]
