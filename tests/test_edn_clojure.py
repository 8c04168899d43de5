"""Differential tests of twisted_aleph.edn against real Clojure (Debian's ``clojure``).

One JVM per test class runs a small Clojure script that answers one request
per line on stdin: ``E <clojure expr>`` -> ``pr-str`` of its value, ``R <edn>``
-> ``pr-str`` of ``clojure.edn/read-string`` of it. Answers are ``OK <text>``
or ``ERR <message>``. Skipped only where the ``clojure`` binary is absent.
"""

from __future__ import annotations

import atexit
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Any, Optional, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from twisted_aleph.edn import (
    BigInt, Char, EDNError, FrozenDict, FrozenSet, Keyword, List, Symbol, Vector, dumps,
    edn_equal, loads,
)

from tests.test_edn import keywords, symbols

K = Keyword
UTC = timezone.utc
CLOJURE = shutil.which("clojure")

SCRIPT = r"""
(require '[clojure.edn :as edn])
(import '[java.io BufferedReader InputStreamReader PrintWriter OutputStreamWriter])
(let [in (BufferedReader. (InputStreamReader. System/in "UTF-8"))
      out (PrintWriter. (OutputStreamWriter. System/out "UTF-8") true)]
  (binding [*print-namespace-maps* false]
    (.println out "READY")
    (doseq [line (line-seq in)]
      (.println out
        (try
          (let [cmd (subs line 0 1) arg (subs line 2)]
            (case cmd
              "E" (str "OK " (pr-str (eval (read-string arg))))
              "R" (str "OK " (pr-str (edn/read-string arg)))))
          (catch Throwable e
            (str "ERR " (.replaceAll (str (.getName (class e)) ": " (.getMessage e))
                                     "[\r\n]" " "))))))))
"""


class Clojure:
    """One JVM running SCRIPT; ``ask`` sends a line and waits for its answer."""

    def __init__(self) -> None:
        fd, self.script = tempfile.mkstemp(suffix=".clj")
        with os.fdopen(fd, "w") as f:
            f.write(SCRIPT)
        self.proc = subprocess.Popen(
            [CLOJURE or "clojure", self.script], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.answers: "queue.Queue[Optional[str]]" = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        ready = self.answers.get(timeout=120)
        if ready != "READY":
            raise RuntimeError("clojure did not start: %r" % ready)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.answers.put(raw.decode("utf-8").rstrip("\r\n"))
        self.answers.put(None)

    def ask(self, command: str, text: str) -> Tuple[bool, str]:
        assert "\n" not in text and "\r" not in text, text
        assert self.proc.stdin is not None
        self.proc.stdin.write(("%s %s\n" % (command, text)).encode("utf-8"))
        self.proc.stdin.flush()
        answer = self.answers.get(timeout=60)
        if answer is None:
            raise RuntimeError("clojure exited")
        status, _, rest = answer.partition(" ")
        return status == "OK", rest

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        os.unlink(self.script)


def _same(a: Any, b: Any) -> bool:
    return edn_equal(a, b) and type(a) is type(b)


def _brief(value: Any) -> str:
    """A value for a failure message: its type and EDN text, cut short (big ints have no repr)."""
    return "%s %s" % (type(value).__name__, dumps(value)[:300])


INST = datetime(2020, 1, 2, 3, 4, 5, 678000, UTC)
U = uuid.UUID("f81d4fae-7dec-11d0-a765-00a0c91e6bf6")

# Clojure expression -> the Python value our reader must make of its pr-str.
FROM_CLOJURE = [
    ("nil", None), ("true", True), ("false", False), ("42", 42), ("-7", -7),
    ("123456789012345678901234567890N", BigInt(123456789012345678901234567890)),
    ("(bigint 5)", BigInt(5)), ("(* 1N Long/MAX_VALUE Long/MAX_VALUE)", BigInt((2**63 - 1) ** 2)),
    ("1N", BigInt(1)), ("(inc 1N)", BigInt(2)), ("0N", BigInt(0)), ("Long/MAX_VALUE", 2**63 - 1),
    ("Long/MIN_VALUE", -2**63), ("(inc' Long/MAX_VALUE)", BigInt(2**63)),
    ("(biginteger 5)", 5),  # java.math.BigInteger prints without N
    # past Python's 4,300-digit str()/int() limit
    ("(reduce * (repeat 20000 2N))", BigInt(2**20000)),
    ("(- (reduce * (repeat 15000 3N)))", BigInt(-3**15000)),
    ("1.5", 1.5), ("1e16", 1e16), ("1.0E-7", 1e-7), ("-0.0", -0.0), ("(/ 1.0 3)", 1 / 3),
    ("1.5M", Decimal("1.5")), ("1.50M", Decimal("1.50")), ("1E+10M", Decimal("1E+10")),
    ("##Inf", float("inf")), ("##-Inf", float("-inf")), ("1/3", Fraction(1, 3)),
    ("-2/4", Fraction(-1, 2)),
    ('"plain"', "plain"), ('"tab\\tnl\\ncr\\rq\\"bs\\\\ff\\fbk\\b"', 'tab\tnl\ncr\rq"bs\\ff\fbk\b'),
    ('"é日本😀"', "é日本😀"), ('(str (char 1) (char 127) (char 0x2028))', "\x01\x7f\u2028"),
    ("\\a", Char("a")), ("\\newline", Char("\n")), ("\\space", Char(" ")), ("\\tab", Char("\t")),
    ("\\return", Char("\r")), ("\\backspace", Char("\b")), ("\\formfeed", Char("\f")),
    ("\\u00e9", Char("é")), ("(char 0)", Char("\x00")), ("\\(", Char("(")), ("\\\\", Char("\\")),
    (":kw", K("kw")), (":ns/kw", K("ns/kw")), (":a.b/c-d?", K("a.b/c-d?")),
    ("'sym", Symbol("sym")), ("'ns/sym", Symbol("ns/sym")), ("'/", Symbol("/")),
    ("'(1 (2 3))", List([1, List([2, 3])])), ("[1 [2] []]", Vector([1, Vector([2]), Vector()])),
    ('{:a 1, "b" [2], nil 3}', FrozenDict({K("a"): 1, "b": [2], None: 3})),
    ("#{1 :a}", FrozenSet([1, K("a")])), ("{}", FrozenDict()), ("#{}", FrozenSet()),
    ("{1 :a, true :b, 1.0 :c}", FrozenDict([(1, K("a")), (True, K("b")), (1.0, K("c"))])),
    ("#{0 false}", FrozenSet([0, False])),
    ("{[1] :v, #{[2]} :s, {:k 1} :m}",
     FrozenDict([(Vector([1]), K("v")), (FrozenSet([Vector([2])]), K("s")),
                 (FrozenDict({K("k"): 1}), K("m"))])),
    ('#inst "2020-01-02T03:04:05.678-00:00"', INST),
    ("(java.util.Date. 0)", datetime(1970, 1, 1, tzinfo=UTC)),
    ('#uuid "f81d4fae-7dec-11d0-a765-00a0c91e6bf6"', U),
    ("{:ns/a 1, :ns/b 2}", FrozenDict({K("ns/a"): 1, K("ns/b"): 2})),
    ("(range 3)", List([0, 1, 2])), ("(map inc [1 2])", List([2, 3])),
    ("(sorted-map :b 1 :a 2)", FrozenDict({K("a"): 2, K("b"): 1})),
]

# EDN text both readers must accept, and agree on (compared via Clojure's pr-str).
BOTH_ACCEPT = [
    "[1 #_ 2 3]", "#_ 1 2", "[1, 2,, 3]", "1 ; comment", "#{[1] (1 2) {:a #{}}}",
    "0x1F", "017", "2r101", "36rZZ", "1N", "-0", "+5", "1.", "1.e5", "4/2",
    "#:ns{:a 1, :_/b 2, :c/d 3}", "^:meta [1]", ":1", "a#b", "'a", "nil?",
    '"\\u00e9\\101"', "\\o101", "\\u0041", "1 )", '#inst "1985"',
    '#inst "2020-02-29T10:11:12.123+05:30"',
    "", "   ", "; only a comment", "#_ 1", "#_ #_ 1 2", "#_ ^:m x", "[^:m a 1]",
    '^"s" [1]', "^{:a 1} #{1}", "^:a ^:b ()",
    "12345678901234567890", "-9223372036854775809", "12345678901234567890/1", "0N",
    "a٣", ":٣",
]

# EDN text both readers must reject.
BOTH_REJECT = [
    "[1 2", "(1]", ")", '"abc', '"\\q"', "{1}", "#foo 1", "08", "1.2.3", "1a",
    "{1 1 1 2}", "#{1 1}", "{[1] 1 (1) 2}", "#{1N 1}", "\\abc", "\\ud800", "a::b", "::a",
    "a:", "##Foo", "#<x>", "[#_]", "1/0", '#uuid "x"', '#inst "1985-13-01"',
    "#_", "^:m", "[^:m]", "#_ #_ 1", "^:m 1", '^:m "s"', "^:m :k", "^1 a", "^\\a a", "٣", "+٣", "-٣", "1٣", "٣/2", "2r11N", "1/2N",
]


class ClojureTestBase(unittest.TestCase):
    """Starts one Clojure JVM for the class, on first use; stops it at exit."""

    timeout = 600  # the JVM takes seconds to start on a loaded machine
    clojure: Optional[Clojure] = None

    def setUp(self) -> None:
        if CLOJURE is None:
            raise unittest.SkipTest("the `clojure` binary is not installed (Debian package "
                                    "`clojure`): no reference reader to compare against")
        cls = type(self)
        if cls.__dict__.get("clojure") is None:
            cls.clojure = Clojure()
            atexit.register(cls.clojure.close)

    def ask(self, command: str, text: str) -> Tuple[bool, str]:
        assert self.clojure is not None
        return self.clojure.ask(command, text)


class FromClojureTests(ClojureTestBase):
    """Clojure's pr-str -> our loads."""

    def test_pr_str_corpus(self) -> None:
        for expr, want in FROM_CLOJURE:
            with self.subTest(expr=expr):
                ok, text = self.ask("E", expr)
                self.assertTrue(ok, "%s: %s" % (expr, text))
                got = loads(text)
                if not _same(got, want):
                    self.fail("%s printed %s, read %s, want %s"
                              % (expr, text[:300], _brief(got), _brief(want)))

    def test_edn_equality_matches_clojure(self) -> None:
        for expr, count in [("{1 :a, true :b, 1.0 :c}", 3), ("#{0 false}", 2),
                            ("#{1 1.0 1M true}", 4), ("#{[1] [true] [1.0]}", 3),
                            ("#{\\a \"a\" :a 'a}", 4), ("#{[1 2] '(1 2)}", 1)]:
            with self.subTest(expr=expr):
                ok, text = self.ask("E", "(count %s)" % expr)
                self.assertTrue(ok, text)
                self.assertEqual(int(text), count)
                ok, text = self.ask("E", expr)
                self.assertTrue(ok, text)
                self.assertEqual(len(loads(text)), count)


class ToClojureTests(ClojureTestBase):
    """Our dumps -> clojure.edn/read-string -> pr-str -> our loads."""

    def round_trip(self, value: Any) -> None:
        text = dumps(value)
        ok, printed = self.ask("R", text)
        self.assertTrue(ok, "Clojure rejected %s: %s" % (text, printed))
        back = loads(printed)
        if not edn_equal(back, value):
            self.fail("%s -> Clojure -> %s -> %s" % (_brief(value), printed[:300], _brief(back)))

    def test_corpus_round_trips_through_clojure(self) -> None:
        for expr, value in FROM_CLOJURE:
            with self.subTest(expr=expr):
                if isinstance(value, float) and value != value:
                    continue
                self.round_trip(value)

    def test_python_containers(self) -> None:
        self.round_trip({K("a"): [1, (2, 3)], "s": {1, 2}, None: [], 1.5: {}})
        self.round_trip([datetime(2021, 6, 1, 12, 30, tzinfo=timezone(timedelta(hours=-7)))])
        self.round_trip([Decimal("-0.000"), Decimal("123.4567890123456789")])

    def test_integers_print_exactly_as_clojure(self) -> None:
        # pr-str of what Clojure read from our text is our text: a long plainly,
        # a BigInt with N, however it was made on our side.
        for value in (0, 1, -1, 2**63 - 1, 2**63, -2**63, -2**63 - 1, BigInt(0), BigInt(5),
                      BigInt(-7), 10**30, -(10**30), 2**20000, Fraction(1, 3),
                      Fraction(2**70, 3), Fraction(2**70), [1, BigInt(1), 1.0, Decimal(1)]):
            with self.subTest(value=_brief(value)[:60]):
                text = dumps(value)
                ok, printed = self.ask("R", text)
                self.assertTrue(ok, printed)
                self.assertEqual(printed, text)

    def test_types_as_clojure_sees_them(self) -> None:
        cases = [
            (1, "java.lang.Long"), (BigInt(1), "clojure.lang.BigInt"),
            (2**63, "clojure.lang.BigInt"), (2**63 - 1, "java.lang.Long"),
            (Decimal("1.5"), "java.math.BigDecimal"), (Fraction(1, 2), "clojure.lang.Ratio"),
            (1.5, "java.lang.Double"), (Char("a"), "java.lang.Character"),
            (Symbol("a/b"), "clojure.lang.Symbol"), (List([1]), "clojure.lang.PersistentList"),
            (U, "java.util.UUID"), (INST, "java.util.Date"),
        ]
        for value, class_name in cases:
            with self.subTest(value=_brief(value)):
                quoted = dumps(dumps(value))  # the EDN text as a Clojure string literal
                ok, answer = self.ask("E", "(.getName (class (clojure.edn/read-string %s)))"
                                      % quoted)
                self.assertTrue(ok, answer)
                self.assertEqual(answer, dumps(class_name))

    @settings(max_examples=150, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.recursive(
        st.one_of(
            st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
            st.text(), st.characters(max_codepoint=0xFFFF, blacklist_categories=("Cs",)).map(Char),
            keywords, symbols, st.decimals(allow_nan=False, allow_infinity=False),
            st.uuids(),
            st.datetimes(min_value=datetime(1900, 1, 1), timezones=st.just(UTC))
              .map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)),
        ),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.lists(inner, max_size=4).map(List),
            st.dictionaries(st.one_of(st.integers(), st.text(), keywords), inner, max_size=4),
            st.frozensets(st.one_of(st.integers(), st.text(), keywords), max_size=4),
        ), max_leaves=15))
    def test_generated_values_round_trip_through_clojure(self, value: Any) -> None:
        self.round_trip(value)


class ReaderAgreementTests(ClojureTestBase):
    """The same text through both readers."""

    def test_both_accept_and_agree(self) -> None:
        for text in BOTH_ACCEPT:
            with self.subTest(text=text):
                ok, printed = self.ask("R", text)
                self.assertTrue(ok, "Clojure rejected %s: %s" % (text, printed))
                self.assertTrue(edn_equal(loads(printed), loads(text)),
                                "%s: Clojure %s, ours %r" % (text, printed, loads(text)))

    def test_both_reject(self) -> None:
        for text in BOTH_REJECT:
            with self.subTest(text=text):
                ok, answer = self.ask("R", text)
                self.assertFalse(ok, "Clojure accepted %s as %s" % (text, answer))
                self.assertRaises(EDNError, loads, text)
