"""Manifold-style streams for Twisted: one abstraction for every transport.

The facade: ``from twisted_aleph import stream as s`` then ``s.Stream()``,
``s.connect(a, b)``, ``s.map(f, src)``, ``s.transform(s.take(3), src)``...
Transports and other implementers build on ``core`` (sinks, sources, edges:
Manifold's ``stream/core``) and this facade, never on the modules behind it:
the buffered stream lives in ``default``, the connection graph in ``graph``,
the operators in ``operators``, transducer stages in ``xforms``, coercions
in ``coerce``, and Gloss's ``decode-stream`` in ``framing``.
"""

from twisted_aleph.stream.coerce import stream_of, to_blocking_iter, to_source
from twisted_aleph.stream.core import Edge
from twisted_aleph.stream.default import NOTHING, Stream
from twisted_aleph.stream.framing import decode_stream
from twisted_aleph.stream.graph import (
    SplicedStream, connect, connect_via, splice,
)
from twisted_aleph.stream.operators import (
    batch, buffer, consume, filter, map, mapcat, periodically, put_all, reduce,
    transform, zip_streams,
)
from twisted_aleph.stream.xforms import (
    Reduced, Reducer, comp, dedupe, drop, drop_while, partition, partition_all,
    partition_by, take, take_while,
)

stream_to_seq = to_blocking_iter

__all__ = [
    "NOTHING", "Edge", "Stream", "SplicedStream", "splice", "connect",
    "connect_via", "map", "filter", "mapcat", "transform", "buffer", "batch",
    "consume", "reduce", "put_all", "periodically", "zip_streams", "to_source",
    "to_blocking_iter", "stream_to_seq", "stream_of", "Reduced", "Reducer",
    "comp", "take", "drop", "take_while", "drop_while", "partition",
    "partition_all", "partition_by", "dedupe", "decode_stream",
]
