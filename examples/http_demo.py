"""The seed's aleph.examples.http: a server with the seed's routes, then its client calls.

Run: python examples/http_demo.py   (prints what the seed shows after each ;=>)

    'hello world!'
    (beat) 'hello world!'
    (beat) 'hello world!'
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    '0\\n1\\n2\\n3\\n4\\n5\\n6\\n7\\n8\\n9\\n'
    (mutual TLS) 'hello world!'
    (no client certificate) refused: TLS with https://localhost:...

/numbers here is the seed's thread-pool variant (a blocking iterator, 0..n-1),
the one its client examples show; the default app's periodic stream counts
from 1, as the seed's first handler does.

The last part is the seed's "TLS client certificate authentication": a
throwaway CA, server and client certificate (PKCS#8 keys, as the seed's
``key.k8``) are written to a temporary directory, an HTTPS server that
requires client certificates signed by that CA starts, and /hello is fetched
through ``build_ssl_connection_pool``; a pool without a client certificate
is refused. (The same server from the command line: ``twistd -n aleph-http
--tls-cert server.crt --tls-key server.k8 --tls-ca ca.crt
--require-client-cert``.)
"""

from __future__ import annotations

import shutil
import tempfile

from twisted.internet import defer, task

from twisted_aleph import bytestreams as bs, deferred as d, http, stream as s, tls
from twisted_aleph.demo.http import make_app


def build_ssl_context(ca: str, cert: str, key: str) -> tls.ClientTLS:
    """The seed's build-ssl-context: trust ``ca``, present ``cert`` and its
    PKCS#8 ``key``."""
    return tls.client_context(ca=ca, cert=cert, key=key)


def build_ssl_connection_pool(ca: str, cert: str, key: str) -> http.ConnectionPool:
    """The seed's build-ssl-connection-pool."""
    return http.connection_pool(tls=build_ssl_context(ca, cert, key))


async def mutual_tls() -> None:
    """An HTTPS server with TLS client auth, and the seed's pool against it."""
    directory = tempfile.mkdtemp(prefix="aleph-tls-")
    try:
        pki = tls.generate_pki(directory)  # ca.crt, server.crt/.k8, client.crt/.k8
        server = http.start_server(
            make_app(), 0, interface="127.0.0.1",
            tls=tls.server_context(pki.server_cert, pki.server_key, ca=pki.ca_cert,
                                   require_client_cert=True))
        url = f"https://localhost:{server.port}/hello"

        ssl_connection_pool = build_ssl_connection_pool(pki.ca_cert, pki.client_cert,
                                                        pki.client_key)
        text = await d.chain(http.get(url, pool=ssl_connection_pool), "body", bs.to_string)
        print("(mutual TLS)", repr(text))  # => (mutual TLS) 'hello world!'

        # Without a client certificate the server refuses the handshake.
        anonymous_pool = http.connection_pool(tls=tls.client_context(ca=pki.ca_cert))
        try:
            await http.get(url, pool=anonymous_pool)
        except tls.TLSError as e:
            print("(no client certificate) refused:", e)
        else:
            raise AssertionError("the server accepted a client without a certificate")

        await ssl_connection_pool.close()
        await anonymous_pool.close()
        await server.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


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

    await mutual_tls()


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
