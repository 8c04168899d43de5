"""Two chat clients on different workers of one aleph-http, talking through Redis.

Start the server first (see README, "Scaling out"):

    redis-server --port 6379 --save "" --appendonly no
    twistd -n aleph-http --port 10000 --workers 2 --bus redis://127.0.0.1:6379

Run: python examples/chat_two_workers.py [ws://127.0.0.1:10000/chat]

    alice on 1234 bob on 1235
    bob got: alice: hi bob
"""

from __future__ import annotations

import sys

from twisted.internet import defer, task
from twisted.internet.error import ConnectionRefusedError

from twisted_aleph.http import websocket_client

URL = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:10000/chat"
MAX_TRIES = 20


async def join(name: str):
    """Connect, enter the room, wait for our own line to come back (we are in)."""
    conn = await websocket_client(URL)
    for line in ("lobby", name, "hello"):
        await conn.put(line)
    while await conn.take() != f"{name}: hello":
        pass
    return conn


def worker(conn) -> str:
    return conn.info["headers"].get("x-aleph-worker", "?")


async def main(reactor) -> None:
    try:
        alice = await join("alice")
    except ConnectionRefusedError:
        sys.exit(f"nothing listens at {URL}: start the server first (see the top of this file)")
    bob = await join("bob")
    for _ in range(MAX_TRIES):  # the kernel chose the same process: try again
        if worker(bob) != worker(alice):
            break
        bob.close()
        bob = await join("bob")
    print("alice on", worker(alice), "bob on", worker(bob))
    await alice.put("hi bob")
    while True:
        line = await bob.take()
        if line.startswith("alice: hi bob"):
            print("bob got:", line)
            break
    alice.close()
    bob.close()


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
