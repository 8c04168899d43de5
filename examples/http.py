"""The seed's aleph.examples.http: a server with the seed's routes, then its client calls.

Run: python examples/http.py   (prints what the seed shows after each ;=>)

    'hello world!'
    (beat) 'hello world!'
    (beat) 'hello world!'
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    '0\\n1\\n2\\n3\\n4\\n5\\n6\\n7\\n8\\n9\\n'

/numbers here is the seed's thread-pool variant (a blocking iterator, 0..n-1),
the one its client examples show; the default app's periodic stream counts
from 1, as the seed's first handler does.
"""

from __future__ import annotations

import os
import sys

# This file is named like the standard library's ``http`` package, and Python
# puts its directory first on sys.path: take it off before anything imports http.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

from twisted.internet import defer, task  # noqa: E402

from twisted_aleph import bytestreams as bs, deferred as d, http, stream as s  # noqa: E402
from twisted_aleph.demo.http import make_app  # noqa: E402


async def main(reactor: object) -> None:
    server = http.start_server(make_app(numbers="thread"), 0, interface="127.0.0.1")
    base = f"http://localhost:{server.port}"

    # Deref the response, take :body (a readable binary file) and coerce it.
    resp = await http.get(base + "/hello")
    print(repr(bs.to_string(resp["body"])))  # => 'hello world!'

    resp = await http.get(base + "/delayed_hello")
    print("(beat)", repr(bs.to_string(resp["body"])))  # => (beat) 'hello world!'

    # Compose with chain instead; a string step looks the key up.
    text = await d.chain(http.get(base + "/delayed_hello"), "body", bs.to_string)
    print("(beat)", repr(text))  # => (beat) 'hello world!'

    # A line-delimited streamed response as a sequence of lines.
    resp = await http.get(base + "/numbers", query_params={"count": 10})
    print([int(line) for line in bs.to_line_seq(resp["body"])])  # => [0, 1, ..., 9]

    # With a raw-stream pool the body is a Stream of byte chunks.
    raw_stream_connection_pool = http.connection_pool(raw_stream=True)
    text = await d.chain(
        http.get(base + "/numbers", query_params={"count": 10},
                 pool=raw_stream_connection_pool),
        "body",
        lambda body: s.map(bs.to_bytes, body),
        lambda chunks: s.reduce(lambda acc, chunk: acc + [chunk], [], chunks),
        bs.to_string)
    print(repr(text))  # => '0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n'

    await raw_stream_connection_pool.close()
    await http.client.default_pool().close()
    await server.close()


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
