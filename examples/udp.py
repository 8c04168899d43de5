"""The seed's aleph.examples.udp: a pared-down statsd.

Run: python examples/udp.py [PORT]   (prints {'a': 1, 'b': 2}; PORT defaults to 10002)
"""

from __future__ import annotations

import sys

from twisted.internet import defer, task

from twisted_aleph import udp
from twisted_aleph.demo.udp import (
    SERVER_PORT, send_metric, start_statsd_server,
)


async def main(reactor: object, server_port: int) -> None:
    # A socket without a port: we only use it to send.
    client_socket = await udp.socket()
    server = await start_statsd_server(server_port)
    await send_metric(client_socket, "a", 1, port=server_port)
    await send_metric(client_socket, "b", 2, port=server_port)
    print(await server.take())  # => {'a': 1, 'b': 2}
    server.close()
    client_socket.close()


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else SERVER_PORT
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, port)))
