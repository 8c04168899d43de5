"""Frames out of a stream of byte chunks (Gloss's ``io/decode-stream``).

:func:`decode_stream` runs a :class:`twisted_aleph.codec.Decoder` (the pure,
sans-IO decoder of floor 1) over each chunk a source stream gives, and puts
the values into a new stream. The bytes are parsed by the decoder alone;
this module only moves chunks in and values out, with backpressure.
"""

from __future__ import annotations

from typing import Any, List, Optional

from twisted.logger import Logger

from twisted_aleph.codec import DEFAULT_MAX_LENGTH, CodecError, DecodeError, Decoder
from twisted_aleph.stream.coerce import to_source
from twisted_aleph.stream.core import Edge, Offered, attach, offer_all
from twisted_aleph.stream.default import Stream

log = Logger()


def decode_stream(source: Any, codec: Any,
                  max_length: Optional[int] = DEFAULT_MAX_LENGTH,
                  deliver_decode_errors: bool = False) -> Stream:
    """A Stream of the values decoded from ``source``'s bytes chunks
    (Gloss's ``io/decode-stream``).

    Backpressure is kept: a chunk is not taken from ``source`` until the
    values of the previous one were accepted downstream. On a codec error
    (a frame over ``max_length``, a body that does not decode) the error is
    logged, the values before it are still delivered, and both the output and
    ``source`` are closed: that connection ends, nothing else is touched.
    Closing the output closes ``source`` too.

    With ``deliver_decode_errors=True`` a body that does not decode is
    logged and delivered in the value's place as its
    :class:`~twisted_aleph.codec.DecodeError`, and decoding goes on (framing
    is intact); only :class:`~twisted_aleph.codec.FrameTooLong` still ends
    the stream.
    """
    source = to_source(source)
    out = Stream(description="decode_stream")
    attach(source, DecodeEdge(Decoder(codec, max_length), out, source,
                              deliver_decode_errors))
    return out


class DecodeEdge(Edge):
    """Feeds each chunk of ``byte_source`` to ``decoder``, values into the sink."""

    __slots__ = ("decoder", "byte_source", "deliver_errors")

    def __init__(self, decoder: Decoder, out: Any, byte_source: Any,
                 deliver_errors: bool) -> None:
        super().__init__(out, upstream=True, description="decode_stream")
        self.decoder = decoder
        self.byte_source = byte_source
        self.deliver_errors = deliver_errors

    def deliver(self, chunk: Any) -> Offered:
        values: List[Any] = []
        while True:
            try:
                values.extend(self.decoder.feed(chunk))
                break
            except DecodeError as e:
                values.extend(e.values)
                if not self.deliver_errors:
                    return self._stop(e, values)
                log.warn("{source}: {error}", source=self.byte_source, error=e)
                values.append(e)
                chunk = b""     # carry on with the rest of the chunk
            except CodecError as e:
                return self._stop(e, values + e.values)
            except Exception:
                log.failure("closing {source}: could not decode a {kind} chunk",
                            source=self.byte_source, kind=type(chunk).__name__)
                return self._stop(None, values)
        if not values:
            return True
        return offer_all(self.sink, values)

    def _stop(self, error: Optional[CodecError], values: List[Any]) -> bool:
        if error is not None:
            log.warn("closing {source}: {error}", source=self.byte_source, error=error)
        # Stop reading now; the values decoded before the error go out
        # first, and only once they were accepted (a handler replying
        # synchronously has written its replies) are the output and the
        # source (for TCP: the connection, after its writes) closed.
        out, source = self.sink, self.byte_source
        self.detach()

        def finish(_: Any = None) -> None:
            out.close()
            source.close()
        r = offer_all(out, values)
        if r is True or r is False:
            finish()
        else:
            r.addBoth(finish)
        return False

    def source_drained(self) -> None:
        if self.decoder.buffered:
            log.warn("{source} ended inside a frame; {n} bytes dropped",
                     source=self.byte_source, n=self.decoder.buffered)
        self.sink.close()


__all__ = ["decode_stream", "DecodeEdge"]
