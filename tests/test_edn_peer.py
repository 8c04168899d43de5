"""Framed EDN against a real Clojure peer, both directions (issue 20.5).

``tests/edn_peer.clj`` is a few dozen lines of Clojure on plain ``java.net``
sockets and ``clojure.edn`` speaking Aleph's TCP wire format (uint32 length,
UTF-8 EDN). Run by Debian's ``clojure`` (``.ci/run`` installs it; these tests
are skipped where it is absent), one JVM per test class:

* as a client, it sends its corpus (1,000-deep nesting, BigInts,
  BigDecimals, ratios, chars, symbols with ``/``, namespaced maps, ``#inst``,
  ``#uuid``, empty frames) to this library's framed echo server, and a few
  numbers to the seed's ``inc`` server, and compares what comes back with
  what Clojure itself reads from the text, value and type;
* as a server, it echoes frames through ``edn/read-string`` and ``pr-str``,
  and this side sends its corpus and compares value and type.
"""

from __future__ import annotations

import atexit
import math
import os
import shutil
import subprocess
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Any, ClassVar, Dict, List as TList, Optional, Tuple

from twisted.internet import threads, utils
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial import unittest

from twisted_aleph import edn, tcp
from twisted_aleph.demo import tcp as demo
from twisted_aleph.edn import (
    BigInt, Char, FrozenDict, FrozenSet, Keyword, List, Symbol, Vector, dumps, edn_key,
)

K = Keyword
CLOJURE = shutil.which("clojure")
PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "edn_peer.clj")
NO_CLOJURE = ("the `clojure` binary is not installed (Debian package `clojure`, which "
              ".ci/run installs): no Clojure peer to talk to")
END = object()


def _connection_gone(stream: Any) -> Deferred:
    """Fires once the connection behind ``stream`` is closed."""
    d: Deferred = Deferred()
    stream.source.on_closed(lambda: d.called or d.callback(None))
    return d


class ClojureClientTests(unittest.TestCase):
    """The Clojure peer's corpus through our echo and inc servers."""

    skip = NO_CLOJURE if CLOJURE is None else None
    timeout = 300  # a JVM starts in seconds, more on a loaded machine
    results: ClassVar[Optional[Dict[str, Any]]] = None
    expected_count: ClassVar[int] = 0

    async def report(self) -> Dict[str, Any]:
        """Case name -> the peer's verdict, from one run of the peer per class."""
        cls = type(self)
        if cls.results is None:
            echo = demo.start_server(demo.fast_echo_handler(demo.identity), 0,
                                     interface="127.0.0.1")
            inc = demo.start_server(demo.fast_echo_handler(demo.inc), 0, interface="127.0.0.1")
            try:
                out, err, code = await utils.getProcessOutputAndValue(
                    CLOJURE or "clojure",
                    [PEER, "client", "127.0.0.1", str(echo.port), str(inc.port)],
                    env=os.environ)
            finally:
                await echo.close()
                await inc.close()
            self.assertEqual(code, 0, err.decode("utf-8", "replace")[-2000:])
            lines = [edn.loads(line) for line in out.decode("utf-8").splitlines() if line]
            errors = [line for line in lines if K("error") in line and K("case") not in line]
            self.assertEqual(errors, [], "the peer failed")
            cls.expected_count = lines[-1][K("done")]
            cls.results = {line[K("case")]: line for line in lines if K("case") in line}
        return cls.results

    def check(self, names: Optional[TList[str]] = None, prefix: str = "") -> Deferred:
        async def run() -> None:
            results = await self.report()
            self.assertEqual(len(results), self.expected_count)
            chosen = [r for name, r in results.items()
                      if (names is None or name in names) and name.startswith(prefix)]
            self.assertTrue(chosen)
            failed = [dumps(r) for r in chosen if not r[K("ok")]]
            self.assertEqual(failed, [], "\n".join(failed))
        return ensureDeferred(run())

    def test_echo_keeps_values_and_types(self) -> None:
        """Everything the peer sends comes back as Clojure itself reads it."""
        return self.check(prefix="")

    def test_bigints_keep_their_type(self) -> None:
        return self.check(["bigint 1N", "bigint 0N", "bigint -7N", "bigint past a long",
                           "bigint read from a plain big number", "bigint of 6,000 digits",
                           "numbers side by side", "ratio of bigints"])

    def test_inc_of_a_bigint_is_a_bigint(self) -> None:
        """The seed's inc handler answers 2N to 1N, as Aleph does."""
        return self.check(prefix="inc ")

    def test_nesting_a_thousand_deep(self) -> None:
        return self.check(["vectors 1,000 deep", "mixed 1,000 deep", "lists 1,000 deep"])

    def test_an_empty_frame_is_nil(self) -> None:
        """An empty frame reads as nil and is answered with nil; the connection
        goes on (the cases after it were answered on the same connection)."""
        return self.check(["empty frame", "blank frame", "discard only"])


def _typed_difference(a: Any, b: Any) -> Optional[str]:
    """None if ``a`` and ``b`` are the same EDN value with the same types all
    the way down, else where they differ. A loop, not recursion: 1,000 levels."""
    stack: TList[Tuple[Any, Any, str]] = [(a, b, "")]
    while stack:
        x, y, path = stack.pop()
        if type(x) is not type(y):
            return "%s: %s != %s" % (path or "top", type(x).__name__, type(y).__name__)
        if isinstance(x, (Vector, List)):
            if len(x) != len(y):
                return "%s: %d != %d items" % (path or "top", len(x), len(y))
            stack.extend((p, q, "%s[%d]" % (path, i)) for i, (p, q) in enumerate(zip(x, y)))
        elif isinstance(x, (FrozenDict, FrozenSet)):
            if len(x) != len(y):
                return "%s: %d != %d entries" % (path or "top", len(x), len(y))
            theirs = {edn_key(k): k for k in y}
            for k in x:
                match = theirs.get(edn_key(k), END)
                if match is END:
                    return "%s: %s missing" % (path or "top", dumps(k)[:80])
                stack.append((k, match, path + "{key}"))
                if isinstance(x, FrozenDict):
                    stack.append((x[k], y[match], "%s{%s}" % (path, dumps(k)[:40])))
        elif isinstance(x, float) and math.isnan(x):
            if not math.isnan(y):
                return "%s: ##NaN != %r" % (path or "top", y)
        elif not edn.edn_equal(x, y) or dumps(x) != dumps(y):
            return "%s: %s != %s" % (path or "top", dumps(x)[:80], dumps(y)[:80])
    return None


def _nested(depth: int, make: Any, leaf: Any) -> Any:
    value = leaf
    for _ in range(depth):
        value = make(value)
    return value


UTC = timezone.utc
U = uuid.UUID("f81d4fae-7dec-11d0-a765-00a0c91e6bf6")

# (name, what we put, what must come back: the same unless given).
PYTHON_CORPUS: TList[Tuple[Any, ...]] = [
    ("nil", None), ("true", True), ("false", False), ("int", 42), ("long max", 2**63 - 1),
    ("long min", -2**63), ("BigInt", BigInt(1)), ("BigInt zero", BigInt(0)),
    ("BigInt negative", BigInt(-7)), ("BigInt past a long", BigInt(2**70)),
    ("plain int past a long", 2**70, BigInt(2**70)),
    ("BigInt of 5,000 digits", BigInt(10**5000 + 1)),
    ("float", 1.5), ("float -0.0", -0.0), ("float small", 1e-05), ("float inf", math.inf),
    ("float -inf", -math.inf), ("float nan", math.nan),
    ("Decimal", Decimal("1.5")), ("Decimal scale", Decimal("1.50")),
    ("Decimal exponent", Decimal("1E+10")), ("Decimal zero", Decimal("0.000")),
    ("Decimal negative zero", Decimal("-0.000"), Decimal("0.000")),  # Java's has no sign
    ("Decimal long", Decimal("123456789012345678901234567890.123456789")),
    ("Fraction", Fraction(1, 3)), ("Fraction negative", Fraction(-1, 2)),
    ("Fraction of big ints", Fraction(2**70, 3)),
    ("str", "hello"), ("str empty", ""), ("str unicode", "é日本😀"),
    ("str escapes", 'tab\tnl\ncr\rq"bs\\'), ("str control", "\x01\x7f\u2028"),
    ("Char", Char("a")), ("Char newline", Char("\n")), ("Char space", Char(" ")),
    ("Char unicode", Char("é")), ("Char paren", Char("(")), ("Char backslash", Char("\\")),
    ("Symbol", Symbol("foo")), ("Symbol ns", Symbol("ns/foo")), ("Symbol slash", Symbol("/")),
    ("Symbol ns slash", Symbol("clojure.core//")), ("Keyword", K("k")), ("Keyword ns", K("ns/k")),
    ("namespaced keys", FrozenDict({K("ns/a"): 1, K("ns/b"): 2})),
    ("datetime", datetime(2020, 1, 2, 3, 4, 5, 678000, UTC)), ("UUID", U),
    ("numbers side by side", Vector([1, BigInt(1), 1.0, Decimal(1), Fraction(1, 2)])),
    ("edn equality keys", FrozenDict([(1, K("a")), (1.0, K("b")), (True, K("c"))])),
    ("zero and false", FrozenSet([0, False, None])),
    ("lists", List([1, List([2, List([3])])])),
    ("empty collections", Vector([List(), FrozenDict(), FrozenSet(), Vector()])),
    ("collection keys", FrozenDict([(Vector([1]), K("v")), (FrozenSet([2]), K("s")),
                                    (FrozenDict({K("k"): 1}), K("m"))])),
    ("big map", FrozenDict({i: str(i) for i in range(20)})),
    ("plain Python containers", [1, (2, 3), {K("a"): {1}}],
     Vector([1, Vector([2, 3]), FrozenDict({K("a"): FrozenSet([1])})])),
    ("vectors 1,000 deep", _nested(999, lambda v: Vector([v]), Vector())),
    ("mixed 1,000 deep",
     _nested(333, lambda v: Vector([FrozenDict({K("k"): FrozenSet([v])})]), 1)),
    ("lists 1,000 deep", _nested(999, lambda v: List([v]), List())),
    ("empty frame", b"", None),
]


def _encode(value: Any) -> bytes:
    """The framed protocol's encoder, except that bytes go as they are (an
    empty frame)."""
    return value if isinstance(value, bytes) else tcp.encode_edn(value)


class TypedComparisonTests(unittest.TestCase):
    """The comparison the server tests rely on."""

    def test_typed_comparison_sees_type_changes(self) -> None:
        # a Long for a BigInt, a list for a vector, a scale: all count, at any depth
        for a, b in [(BigInt(1), 1), (Vector([1]), List([1])), (Decimal("1.5"), Decimal("1.50")),
                     (_nested(999, lambda v: Vector([v]), Vector([BigInt(1)])),
                      _nested(999, lambda v: Vector([v]), Vector([1]))),
                     (FrozenSet([BigInt(2)]), FrozenSet([2])), (-0.0, 0.0),
                     (FrozenDict({1: BigInt(1)}), FrozenDict({1: 1}))]:
            with self.subTest(a=dumps(a)[-20:]):
                self.assertIsNotNone(_typed_difference(a, b))
        self.assertIsNone(_typed_difference(FrozenSet([1, 2, 3]), FrozenSet([3, 2, 1])))


class ClojureServer:
    """The peer in server mode: one JVM, its port read from its first line."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([CLOJURE or "clojure", PEER, "server"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.port: Optional[int] = None

    def read_port(self) -> int:
        """Blocking: run in a thread (threads.deferToThread)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode("utf-8").strip()
        if not line.startswith("PORT "):
            raise RuntimeError("the Clojure peer did not start: %r" % line)
        return int(line.split()[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # its cue to exit
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class ClojureServerTests(unittest.TestCase):
    """Our corpus through the Clojure peer's echo (edn/read-string + pr-str)."""

    skip = NO_CLOJURE if CLOJURE is None else None
    timeout = 300
    server: ClassVar[Optional[ClojureServer]] = None

    async def connect(self) -> Any:
        """A framed connection to the class's Clojure echo server."""
        cls = type(self)
        if cls.server is None:
            cls.server = ClojureServer()
            atexit.register(cls.server.stop)
        server = cls.server
        if server.port is None:
            server.port = await threads.deferToThread(server.read_port)
        stream = await demo.client("127.0.0.1", server.port, encode=_encode)
        self.addCleanup(self.hang_up, stream)
        return stream

    def hang_up(self, stream: Any) -> Deferred:
        gone = _connection_gone(stream)
        stream.close()
        return gone

    async def echo(self, stream: Any, value: Any) -> Any:
        accepted = await stream.put(value)
        self.assertTrue(accepted)
        return await stream.take(END)

    def test_values_and_types_come_back(self) -> None:
        async def run() -> None:
            stream = await self.connect()
            differences = []
            for name, value, *want in PYTHON_CORPUS:
                expected = want[0] if want else value
                back = await self.echo(stream, value)
                if back is END:
                    self.fail("the connection closed at %r" % name)
                difference = _typed_difference(expected, back)
                if difference is not None:
                    differences.append("%s: %s" % (name, difference))
            self.assertEqual(differences, [], "\n".join(differences))
        return ensureDeferred(run())

    def test_an_unencodable_put_fails_and_the_connection_goes_on(self) -> None:
        """Issue 20.4: a value dumps refuses fails its own put, and nothing else."""
        async def run() -> None:
            self.addCleanup(self.flushLoggedErrors)  # today: logged, connection closed
            stream = await self.connect()
            with self.assertRaises(edn.EDNError):
                await stream.put("a lone surrogate: \udc80")
            self.assertEqual(await self.echo(stream, 7), 7)
        return ensureDeferred(run())

    test_an_unencodable_put_fails_and_the_connection_goes_on.todo = (  # type: ignore[attr-defined]
        "the framed connection still accepts the put and closes when encoding fails: it "
        "needs to encode before accepting the put (tcp.FrameWriter), the TCP side of issue 20.4")
