"""An EventBus over Redis pub/sub, so chat rooms span processes and machines.

:class:`RedisEventBus` has :class:`twisted_aleph.bus.EventBus`'s interface
(``subscribe``, ``publish``, ``is_active``, ``downstream``). Messages are
EDN-encoded, so any EDN value crosses. It lives here, a transport module,
rather than in ``bus`` (a primitive that does no I/O), by the floors rule.

The URL is ``redis://[[user]:password@]host[:port]``: with a password each
connection sends AUTH (with the ACL user, Redis 6+, when one is named). A
``/db`` other than 0 is refused: pub/sub channels are shared by all
databases, so it would not keep two buses apart.

Two connections: one in subscribe mode, one for PUBLISH. Both reconnect
with backoff when Redis goes away; on reconnect the channels with local
subscribers are subscribed again. A publish while Redis is unreachable
fails its Deferred with :class:`RedisUnavailable`: nothing silently vanishes.

Redis pub/sub has no backpressure. A local subscriber whose stream is full
(``buffer_size`` messages behind) loses the messages that do not fit; they
are counted in ``dropped`` and logged. Choose ``buffer_size`` to taste.

The bus is a Twisted service: ``RedisEventBus(url)`` connects at once and
``close()`` disconnects, as before; ``RedisEventBus(url, start=False)``
waits for ``startService`` (from its parent service under twistd, which must
not open connections before it forks), and ``stopService`` is ``close()``.
A stopped bus can be started again.

Why a Redis client of our own (:mod:`twisted_aleph.resp` and
:class:`RedisProtocol`, measured rather than a taste): txredisapi 1.6.0, the
kept Twisted Redis client, was tried in their place (its protocols under the
same ``ClientService``; the bus's integration tests passed). Chat fan-out
through Redis, one bus publishing 20,000 EDN chat lines at once to four
subscribed buses in the same process, in the same run, best of three::

    messages delivered per second   CPython 3.11   PyPy 3.9
    this client                           32,500    148,000
    txredisapi (from PyPI)                11,400     13,000

and one publish at a time, each awaited: 6,300/s against 2,550/s on
CPython, 14,500/s against 7,700/s on PyPy. txredisapi's pure-Python reply
reader pauses the connection for a reactor turn after every bulk string with
more data behind it (three per pub/sub message) and re-splits its buffer on
every line; a subclass looping instead of pausing still gets only 16,800/s
(CPython) and 23,800/s (PyPy). Its optional C reader, hiredis, gets CPython
to 34,000/s (41,000/s for this client in that run) but has no PyPy wheel:
its source build needs PyPy's C headers, absent from a plain PyPy install.
It also imports the global reactor when imported, which this library must
not do, and its ``whenConnected`` never fires for a connection lost during
AUTH. PUBLISH, SUBSCRIBE and AUTH are all the bus sends, and their RESP is
small (``resp``: sans-IO, tested under any split of the bytes).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Deque, Dict, Hashable, List, Optional, cast

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet import defer, protocol, task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_aleph import edn
from twisted_aleph.resp import ReplyError, RespParser, encode_command, parse_pubsub_url
from twisted_aleph.stream import Stream

log = Logger()


class RedisUnavailable(ConnectionError):
    """Redis could not be reached, so the command was not sent."""


class RedisProtocol(protocol.Protocol):
    """A RESP connection: commands answered in order; pushes to ``on_push``."""

    def __init__(self, password: Optional[str] = None, on_push: Any = None,
                 on_ready: Any = None, on_lost: Any = None,
                 username: Optional[str] = None) -> None:
        self.parser = RespParser()
        self.waiting: Deque[Deferred] = deque()
        self.password = password
        self.username = username
        self.on_push = on_push
        self.on_ready = on_ready
        self.on_lost = on_lost
        self.is_ready = False
        self.is_lost = False
        self._ready_waiters: List[Deferred] = []

    def connectionMade(self) -> None:
        if self.password:
            credentials = (self.password,) if not self.username else (self.username,
                                                                      self.password)
            self.command("AUTH", *credentials).addCallbacks(
                self._became_ready, self._auth_failed)
        else:
            self._became_ready()

    def _became_ready(self, _: Any = None) -> None:
        self.is_ready = True
        if self.on_ready is not None:
            self.on_ready(self)
        waiters, self._ready_waiters = self._ready_waiters, []
        _fire_all(waiters, self)

    def when_ready(self) -> Deferred:
        """Deferred[self] once connected (and authenticated)."""
        if self.is_ready:
            return defer.succeed(self)
        if self.is_lost:
            return defer.fail(RedisUnavailable("connection to Redis lost"))
        d: Deferred = Deferred()
        self._ready_waiters.append(d)
        return d

    def _auth_failed(self, failure: Any) -> None:
        log.error("Redis AUTH failed: {error}", error=failure.value)
        self.transport.loseConnection()

    def command(self, *args: Any) -> Deferred:
        """Send one command; Deferred of its reply (fails with ReplyError on ``-ERR``)."""
        d: Deferred = Deferred()
        self.waiting.append(d)
        self.transport.write(encode_command(*args))
        return d

    def dataReceived(self, data: bytes) -> None:
        try:
            replies = self.parser.feed(data)
        except ValueError as e:
            log.error("bad reply from Redis ({error}); reconnecting", error=e)
            self.transport.loseConnection()
            return
        for reply in replies:
            if self.on_push is not None and isinstance(reply, list) and reply and \
                    reply[0] in (b"message", b"subscribe", b"unsubscribe"):
                self.on_push(reply)
                continue
            if not self.waiting:
                log.warn("unexpected Redis reply {reply!r}", reply=reply)
                continue
            d = self.waiting.popleft()
            if isinstance(reply, ReplyError):
                d.errback(reply)
            else:
                d.callback(reply)

    def connectionLost(self, reason: Any = None) -> None:
        self.is_lost = True
        self.is_ready = False
        waiting, self.waiting = self.waiting, deque()
        waiters, self._ready_waiters = self._ready_waiters, []
        for d in list(waiting) + waiters:
            d.errback(RedisUnavailable("connection to Redis lost"))
        if self.on_lost is not None:
            self.on_lost(self)


def _fire_all(waiters: List[Deferred], value: Any = None) -> None:
    """Fire each of ``waiters`` with ``value``."""
    for d in waiters:
        d.callback(value)


def _follow(d: Deferred) -> Deferred:
    """A new Deferred that fires with ``d``'s result, leaving ``d`` as it is
    (for a Deferred handed to several callers)."""
    follower: Deferred = Deferred()

    def fire(result: Any) -> Any:
        if isinstance(result, Failure):
            follower.errback(result)
        else:
            follower.callback(result)
        return result
    d.addBoth(fire)
    return follower


def _when_ready(p: IProtocol) -> Deferred:
    """Deferred[p] once ``p`` (one of our RedisProtocols) is ready: ClientService
    types the connections it hands out as plain IProtocol."""
    return cast(RedisProtocol, p).when_ready()


class _Factory(protocol.Factory):
    def __init__(self, bus: "RedisEventBus", subscriber: bool) -> None:
        self.bus = bus
        self.subscriber = subscriber

    def buildProtocol(self, addr: Any) -> RedisProtocol:
        bus = self.bus
        if self.subscriber:
            p = RedisProtocol(bus.password, bus._on_push, bus._connected, bus._lost,
                              username=bus.username)
        else:
            p = RedisProtocol(bus.password, on_ready=bus._publisher_ready,
                              username=bus.username)
        p.factory = self
        return p


class RedisEventBus(Service):
    """The EventBus interface over Redis pub/sub, and a service (see the
    module docstring). ``start=False``: connect on ``startService`` only."""

    def __init__(self, url: str = "redis://localhost:6379", *, buffer_size: int = 1024,
                 reactor: Any = None, start: bool = True) -> None:
        if reactor is None:
            from twisted.internet import reactor  # type: ignore[no-redef]
        self.reactor = reactor
        address = parse_pubsub_url(url)
        self.password, self.username = address.password, address.username
        self.address = f"{address.host}:{address.port}"
        self.buffer_size = buffer_size
        self.dropped = 0
        self._topics: Dict[Hashable, List[Stream]] = {}
        self._channels: Dict[bytes, Hashable] = {}
        self._pending: Dict[Stream, Deferred] = {}
        self._closing = False
        self._stopping: Optional[Deferred] = None
        self._confirmed: set = set()
        self._confirm_waiters: Dict[bytes, List[Deferred]] = {}
        policy = backoffPolicy(initialDelay=0.1, maxDelay=5.0)
        endpoint = TCP4ClientEndpoint(reactor, address.host, address.port, timeout=5)
        self._sub = ClientService(endpoint, _Factory(self, True), retryPolicy=policy,
                                  clock=reactor)
        self._pub = ClientService(endpoint, _Factory(self, False), retryPolicy=policy,
                                  clock=reactor)
        self._sub_protocol: Optional[RedisProtocol] = None
        self._pub_protocol: Optional[RedisProtocol] = None
        if start:
            self.startService()

    # -- IService ---------------------------------------------------------------

    def startService(self) -> None:
        """Connect to Redis, and keep reconnecting until stopped (nothing if running)."""
        if self.running:
            return
        super().startService()
        self._closing = False
        stopping, self._stopping = self._stopping, None
        if stopping is not None and not stopping.called:
            # restarted while the connections are still closing: after that
            stopping.addCallback(lambda _: self._connect())
        else:
            self._connect()

    def _connect(self) -> None:
        if self.running:
            self._sub.startService()
            self._pub.startService()

    def stopService(self) -> Deferred:
        """:meth:`close`: Deferred that fires once both connections are closed."""
        return self.close()

    @staticmethod
    def _channel(topic: Hashable) -> bytes:
        return topic.encode("utf-8") if isinstance(topic, str) else edn.dumps(topic).encode()

    def when_connected(self) -> Deferred:
        """Deferred that fires once both connections are up (for tests, start-up;
        a bus not started yet is waited for)."""
        return defer.gatherResults(
            [self._sub.whenConnected().addCallback(_when_ready),
             self._pub.whenConnected().addCallback(_when_ready)]
        ).addCallback(lambda _: None)

    # -- EventBus interface -------------------------------------------------

    def subscribe(self, topic: Hashable) -> Stream:
        """A new stream of every message later published to ``topic`` by any process."""
        s = Stream(self.buffer_size, description=f"redis:{topic!r}")
        subscribers = self._topics.setdefault(topic, [])
        subscribers.append(s)
        channel = self._channel(topic)
        self._channels[channel] = topic
        if len(subscribers) == 1 and self._sub_protocol is not None:
            self._sub_command("SUBSCRIBE", channel)
        s.on_closed(lambda: self._unsubscribe(topic, s))
        return s

    def _unsubscribe(self, topic: Hashable, s: Stream) -> None:
        subscribers = self._topics.get(topic)
        if not subscribers or s not in subscribers:
            return
        subscribers.remove(s)
        self._pending.pop(s, None)
        if not subscribers:
            del self._topics[topic]
            channel = self._channel(topic)
            self._channels.pop(channel, None)
            # no longer confirmed from now on: a new subscribe() to this
            # topic must wait for Redis's new confirmation, not the old one
            self._confirmed.discard(channel)
            # nobody left to wait for this subscription: let waiters go
            _fire_all(self._confirm_waiters.pop(channel, []))
            if self._sub_protocol is not None:
                self._sub_command("UNSUBSCRIBE", channel)

    def publish(self, topic: Hashable, msg: Any) -> Deferred:
        """PUBLISH ``msg`` (EDN); Deferred[bool]: True once Redis took it and
        at least one subscriber anywhere received it; fails with
        :class:`RedisUnavailable` if Redis is down."""
        try:
            payload = edn.dumps(msg)
        except Exception as e:
            return defer.fail(e)
        d = self._publisher()
        d.addCallback(lambda p: p.command("PUBLISH", self._channel(topic), payload))
        d.addCallback(lambda n: n > 0)

        def unavailable(f: Any) -> Any:
            if f.check(ReplyError):
                return f
            # name the cause even when it has no message (e.g. CancelledError)
            reason = f.getErrorMessage() or f.type.__name__
            raise RedisUnavailable(f"cannot publish to Redis: {reason}") from f.value
        d.addErrback(unavailable)
        return d

    def _publisher(self) -> Deferred:
        """Deferred of the ready PUBLISH connection; fails if Redis is down."""
        p = self._pub_protocol
        if p is not None and p.is_ready:
            return defer.succeed(p)
        if not self.running:
            return defer.fail(RedisUnavailable("the Redis bus is not running"))
        # Asked on the next turn: ClientService refuses re-entrant
        # whenConnected calls (e.g. a publish from a connection callback).
        # (deferLater types this as a Deferred of a Deferred; it fires with
        # the protocol, as a Deferred returned by a callback is chained.)
        d: Deferred = task.deferLater(self.reactor, 0, self._pub.whenConnected,
                                      failAfterFailures=1)
        return d.addCallback(_when_ready)

    def is_active(self, topic: Hashable) -> bool:
        """Whether ``topic`` has a subscriber in this process."""
        return bool(self._topics.get(topic))

    def downstream(self, topic: Hashable) -> List[Stream]:
        """This process's subscriber streams of ``topic``."""
        return list(self._topics.get(topic, ()))

    def close(self) -> Deferred:
        """Close every subscriber stream and both connections (stop the
        service); Deferred that fires once they are closed. Closing again
        gives the same Deferred."""
        if self._stopping is not None:
            return _follow(self._stopping)
        self._closing = True
        for subscribers in list(self._topics.values()):
            for s in list(subscribers):
                s.close()
        waiters = [d for ds in self._confirm_waiters.values() for d in ds]
        self._confirm_waiters.clear()
        _fire_all(waiters)
        if not self.running:
            return defer.succeed(None)
        super().stopService()
        # On the next turn: ClientService refuses re-entrant calls, and close()
        # is often called from a callback of its own connection events.
        stopped = defer.gatherResults([task.deferLater(self.reactor, 0, self._sub.stopService),
                                       task.deferLater(self.reactor, 0, self._pub.stopService)])
        # and fire on a turn of its own, so that who waits on it may start
        # the bus again (ClientService is still in the middle of stopping
        # when its Deferred fires)
        self._stopping = stopped.addCallback(lambda _: task.deferLater(self.reactor, 0,
                                                                      lambda: None))
        return _follow(self._stopping)

    # -- connection events ----------------------------------------------------

    def _publisher_ready(self, p: RedisProtocol) -> None:
        self._pub_protocol = p

    def _connected(self, p: RedisProtocol) -> None:
        self._sub_protocol = p
        log.info("event bus on Redis at {address}", address=self.address)
        if self._channels:
            self._sub_command("SUBSCRIBE", *self._channels)

    def _lost(self, p: RedisProtocol) -> None:
        if self._sub_protocol is p:
            self._sub_protocol = None
            self._confirmed.clear()
            if not self._closing:
                log.warn("lost the Redis subscription connection; reconnecting")

    def _sub_command(self, *args: Any) -> None:
        p = self._sub_protocol
        if p is not None and p.transport is not None:
            p.transport.write(encode_command(*args))

    def when_subscribed(self, topic: Hashable) -> Deferred:
        """Deferred that fires once Redis has confirmed the subscription to
        ``topic`` (messages published before that are not received), or once
        nobody here subscribes to it any more (all its streams closed, or the
        bus closed), so a waiter never hangs on a subscription that is gone."""
        channel = self._channel(topic)
        if channel in self._confirmed or topic not in self._topics:
            return defer.succeed(None)
        d: Deferred = Deferred()
        self._confirm_waiters.setdefault(channel, []).append(d)
        return d

    def _on_push(self, reply: List[Any]) -> None:
        if len(reply) != 3:
            return
        kind, channel = reply[0], reply[1]
        if kind == b"subscribe":
            self._confirmed.add(channel)
            _fire_all(self._confirm_waiters.pop(channel, []))
            return
        if kind == b"unsubscribe":
            self._confirmed.discard(channel)
            return
        if kind != b"message":
            return
        topic = self._channels.get(channel)
        if topic is None:
            return
        try:
            msg = edn.loads(reply[2].decode("utf-8"))
        except Exception as e:
            log.warn("undecodable message on {channel!r}: {error}", channel=reply[1], error=e)
            return
        for s in list(self._topics.get(topic, ())):
            waiting = self._pending.get(s)
            if waiting is not None and not waiting.called:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warn("subscriber of {topic!r} is behind; {n} messages dropped",
                             topic=topic, n=self.dropped)
                continue
            r = s.offer(msg)
            if isinstance(r, Deferred):
                self._pending[s] = r
