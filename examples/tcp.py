"""The seed's aleph.examples.tcp demonstrations: an EDN echo server that
increments, fast (on the reactor thread) and slow (f sleeps 1 s in the
thread pool; both of the seed's slow handlers), each with its client.

Run: python examples/tcp.py
"""

from __future__ import annotations

import time

from twisted.internet import defer, task

from twisted_aleph.demo.tcp import (
    client, fast_echo_handler, inc, slow_echo_handler, slow_echo_handler_async,
    start_server,
)


def slow_inc(x: int) -> int:
    time.sleep(1)  # blocking on purpose: slow_echo_handler runs it in the thread pool
    return inc(x)


async def demonstrate(title: str, handler: object) -> None:
    print(f";; {title}")
    # port 0: the system picks a free port (the seed uses 10000)
    s = start_server(handler, 0, interface="127.0.0.1")
    c = await client("localhost", s.port)
    print(f"@(s/put! c 1)  ; => {str(await c.put(1)).lower()}")
    print(f"@(s/take! c)   ; => {await c.take()}")
    c.close()
    await s.close()


async def main(reactor: object) -> None:
    await demonstrate("fast echo: (start-server (fast-echo-handler inc) 10000)",
                      fast_echo_handler(inc))
    slow = "(start-server (slow-echo-handler (fn [x] (Thread/sleep 1000) (inc x))) 10000)"
    await demonstrate(f"slow echo, loop/recur: {slow}", slow_echo_handler(slow_inc))
    await demonstrate(f"slow echo, let-flow (async def): {slow}",
                      slow_echo_handler_async(slow_inc))


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
