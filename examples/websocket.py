"""The seed's aleph.examples.websocket: an echo server and chat rooms, then two clients.

Run: python examples/websocket.py   (prints what the seed shows after each ;=>)

    ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']
    Alice: hello
    Alice: hello
    Bob: hi!
    Bob: hi!

The server is the seed's: /echo connects each socket to itself, /chat runs
rooms on an event bus (the first two messages are room and name). Open
http://localhost:<port>/ in a browser while it runs (``--serve``) to chat.
"""

from __future__ import annotations

import argparse
from typing import Any

from klein import Klein
from twisted.internet import defer, task

from twisted_aleph import stream as s
from twisted_aleph.demo.websocket import add_routes
from twisted_aleph.http import start_server, websocket_client


async def main(reactor: Any, port: int, serve: bool) -> None:
    app = Klein()
    add_routes(app)  # GET /echo, GET /chat, and the chat page at /
    server = start_server(app, port, interface="127.0.0.1")
    base = f"ws://localhost:{server.port}"

    # Here we put ten messages to the server, and read them back again.
    conn = await websocket_client(base + "/echo")
    s.put_all(conn, [str(i) for i in range(10)])
    echoed = await s.reduce(lambda acc, msg: acc + [msg], [],
                            s.transform(s.take(10), conn))
    print(echoed)  # => ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']

    # Here we create two clients, and have them speak to each other.
    conn1 = await websocket_client(base + "/chat")
    conn2 = await websocket_client(base + "/chat")

    # sign our two users in. (The seed sends both sign-ins and then "hello" at
    # once, which races: "hello" can be published before Bob's subscription
    # exists. Each user here waits for its own first line to come back, which
    # proves it is in the room.)
    await s.put_all(conn1, ["shoes and ships", "Alice", "(joined)"])
    await conn1.take()  # "Alice: (joined)"
    await s.put_all(conn2, ["shoes and ships", "Bob", "(joined)"])
    await conn2.take()  # "Bob: (joined)"
    await conn1.take()  # "Bob: (joined)"

    await conn1.put("hello")
    print(await conn1.take())  # => Alice: hello
    print(await conn2.take())  # => Alice: hello

    await conn2.put("hi!")
    print(await conn1.take())  # => Bob: hi!
    print(await conn2.take())  # => Bob: hi!

    for c in (conn, conn1, conn2):
        c.close()
    if serve:
        print(f"chat page: http://localhost:{server.port}/  (Ctrl-C to stop)")
        await defer.Deferred()  # until interrupted
    await server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--serve", action="store_true",
                        help="keep serving the chat page after the demonstration")
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, args.port, args.serve)))
