"""Tests for twisted_aleph.statsd_protocol: the pure line parser and rollup."""

from __future__ import annotations

import math
import random

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from twisted_aleph import statsd_protocol as sp
from twisted_aleph.statsd_protocol import BadLine, Metric

NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
names = st.text(NAME_CHARS, min_size=1, max_size=40)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
numbers = st.one_of(st.integers(-10**12, 10**12), finite)
rates = st.floats(min_value=1e-6, max_value=1.0, exclude_min=False)
members = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"),
                  blacklist_characters="|:\n\r"),
    min_size=1, max_size=20).map(str.strip).filter(bool)


class ParseLineTests(unittest.SynchronousTestCase):
    def test_kinds(self) -> None:
        self.assertEqual(sp.parse_line("hits:3|c"), [Metric("hits", "c", 3.0)])
        self.assertEqual(sp.parse_line("hits:1|c|@0.1"), [Metric("hits", "c", 1.0, 0.1)])
        self.assertEqual(sp.parse_line("load:0.5|g"), [Metric("load", "g", 0.5)])
        self.assertEqual(sp.parse_line("load:+2|g"), [Metric("load", "g", 2.0, 1.0, True)])
        self.assertEqual(sp.parse_line("load:-2|g"), [Metric("load", "g", -2.0, 1.0, True)])
        self.assertEqual(sp.parse_line("rt:320|ms"), [Metric("rt", "ms", 320.0)])
        self.assertEqual(sp.parse_line("rt:320|h"), [Metric("rt", "ms", 320.0)])
        self.assertEqual(sp.parse_line("users:bob|s"), [Metric("users", "s", "bob")])

    def test_bare_name_value_is_a_counter(self) -> None:
        """The seed's format: ``name:value``."""
        self.assertEqual(sp.parse_line("a:1"), [Metric("a", "c", 1.0)])

    def test_several_values_for_one_name(self) -> None:
        self.assertEqual(sp.parse_line("x:1|c:250|ms"),
                         [Metric("x", "c", 1.0), Metric("x", "ms", 250.0)])

    def test_names_are_sanitized_like_etsy(self) -> None:
        self.assertEqual(sp.parse_line("my key/path!:1|c")[0].name, "my_key-path")

    def test_bad_lines_have_clear_reasons(self) -> None:
        cases = {
            "garbage": "no ':'",
            "a:": "empty value",
            "a:1|zz": "unknown metric type 'zz'",
            ":1|c": "empty metric name",
            "!!!:1|c": "empty metric name",
            "a:x|c": "not a number",
            "a:nan|c": "not finite",
            "a:inf|ms": "not finite",
            "a:1|c|0.5": "'@rate'",
            "a:1|c|@0": "sample rate must be",
            "a:1|c|@2": "sample rate must be",
            "a:1|c|@x": "sample rate is not a number",
            "a:1|c|@1|x": "too many",
        }
        for line, reason in cases.items():
            with self.assertRaises(BadLine, msg=line) as cm:
                sp.parse_line(line)
            self.assertIn(reason, str(cm.exception), line)

    def test_bad_line_snippet_is_short(self) -> None:
        with self.assertRaises(BadLine) as cm:
            sp.parse_line("x" * 100000)
        self.assertLess(len(str(cm.exception)), 200)

    @given(names, st.sampled_from(["c", "ms", "g"]), numbers, rates)
    @settings(max_examples=300)
    def test_any_wellformed_numeric_line_parses_to_what_was_sent(
            self, name: str, kind: str, value: float, rate: float) -> None:
        if kind == "g":
            rate = 1.0
            value = abs(value)  # a signed gauge is a delta, tested below
        line = sp.format_metric(name, value, kind, rate)
        [metric] = sp.parse_line(line)
        self.assertEqual(metric, Metric(name, kind, float(value), rate))

    @given(names, numbers)
    def test_signed_gauges_parse_as_deltas(self, name: str, value: float) -> None:
        text = ("+" if value >= 0 else "") + sp.format_metric(name, value, "g").split(":", 1)[1]
        [metric] = sp.parse_line(f"{name}:{text}")
        self.assertEqual(metric, Metric(name, "g", float(value), 1.0, True))

    @given(names, members)
    def test_any_wellformed_set_line_parses_to_what_was_sent(
            self, name: str, member: str) -> None:
        [metric] = sp.parse_line(sp.format_metric(name, member, "s"))
        self.assertEqual(metric, Metric(name, "s", member))

    @given(st.text(max_size=200))
    @settings(max_examples=500)
    def test_any_text_parses_or_raises_badline(self, line: str) -> None:
        try:
            metrics = sp.parse_line(line)
        except BadLine:
            return
        for m in metrics:
            self.assertTrue(m.name)
            self.assertIn(m.kind, ("c", "g", "ms", "s"))


class ParsePacketTests(unittest.SynchronousTestCase):
    def test_lines_split_on_newlines_blank_and_crlf_ignored(self) -> None:
        metrics, bad = sp.parse_packet(b"a:1|c\r\n\nb:2|g\n")
        self.assertEqual(metrics, [Metric("a", "c", 1.0), Metric("b", "g", 2.0)])
        self.assertEqual(bad, [])

    def test_good_lines_survive_bad_neighbours(self) -> None:
        packet = b"garbage\na:1|c\na:\nb:1|zz\n:1|c\n\xff\xfe:1|c\nc:5|ms"
        metrics, bad = sp.parse_packet(packet)
        self.assertEqual(metrics, [Metric("a", "c", 1.0), Metric("c", "ms", 5.0)])
        self.assertEqual(len(bad), 5)
        self.assertTrue(any("not UTF-8" in str(b) for b in bad))

    @given(st.binary(max_size=2000))
    @settings(max_examples=300)
    def test_any_bytes_never_raise(self, data: bytes) -> None:
        metrics, bad = sp.parse_packet(data)
        self.assertIsInstance(metrics, list)
        self.assertIsInstance(bad, list)

    @given(st.lists(st.tuples(names, st.sampled_from(["c", "ms", "g"]),
                              st.integers(0, 10**6)), min_size=1, max_size=20))
    def test_a_packet_of_lines_gives_each_metric_in_order(self, items: list) -> None:
        packet = "\n".join(sp.format_metric(n, v, k) for n, k, v in items).encode()
        metrics, bad = sp.parse_packet(packet)
        self.assertEqual(bad, [])
        self.assertEqual([(m.name, m.kind, m.value) for m in metrics],
                         [(n, k, float(v)) for n, k, v in items])


class TimerStatsTests(unittest.SynchronousTestCase):
    def test_etsy_statistics(self) -> None:
        values = [float(v) for v in range(1, 11)]  # 1..10
        stats = sp.timer_stats(values, 10.0, 2.0, (90, 50))
        self.assertEqual(stats["count"], 10.0)
        self.assertEqual(stats["count_ps"], 5.0)
        self.assertEqual(stats["sum"], 55.0)
        self.assertEqual(stats["mean"], 5.5)
        self.assertEqual(stats["lower"], 1.0)
        self.assertEqual(stats["upper"], 10.0)
        self.assertEqual(stats["median"], 5.5)
        self.assertEqual(stats["upper_90"], 9.0)
        self.assertEqual(stats["count_90"], 9)
        self.assertEqual(stats["sum_90"], 45.0)
        self.assertEqual(stats["mean_90"], 5.0)
        self.assertEqual(stats["upper_50"], 5.0)

    def test_fractional_and_top_percentiles_are_named_like_etsy(self) -> None:
        stats = sp.timer_stats([1.0, 2.0, 3.0, 4.0], 4.0, 1.0, (99.5, -25))
        self.assertEqual(stats["upper_99_5"], 4.0)
        self.assertEqual(stats["lower_top25"], 4.0)

    def test_single_value(self) -> None:
        stats = sp.timer_stats([7.0], 1.0, 1.0, (90,))
        self.assertEqual((stats["median"], stats["upper_90"], stats["mean_90"]), (7.0, 7.0, 7.0))

    @given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200))
    def test_invariants(self, values: list) -> None:
        stats = sp.timer_stats(values, float(len(values)), 1.0, (90,))
        self.assertLessEqual(stats["lower"], stats["median"])
        self.assertLessEqual(stats["median"], stats["upper"])
        self.assertLessEqual(stats["upper_90"], stats["upper"])
        self.assertTrue(stats["lower"] - 1e-6 <= stats["mean"] <= stats["upper"] + 1e-6)


    @given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=300),
           st.lists(st.sampled_from([90, 50, 99.9, 10, -10, -50, 100]), max_size=4))
    def test_agrees_with_the_definition(self, values: list, percentiles: list) -> None:
        """Against Etsy's definition, written the plain way (one sort and one
        exact sum per statistic)."""
        stats = sp.timer_stats(values, float(len(values)), 1.0, percentiles)
        ordered = sorted(values)
        n = len(ordered)
        self.assertEqual((stats["lower"], stats["upper"]), (ordered[0], ordered[-1]))
        self.assertAlmostEqual(stats["sum"], math.fsum(ordered), delta=1e-6)
        for pct in percentiles:
            k = int(math.floor(abs(pct) / 100.0 * n + 0.5)) if n > 1 else n
            label = sp._percentile_label(pct)
            if k == 0:
                self.assertNotIn(f"count_{label}", stats)
                continue
            chosen = ordered[:k] if pct > 0 else ordered[n - k:]
            self.assertEqual(stats[f"count_{label}"], k)
            self.assertAlmostEqual(stats[f"sum_{label}"], math.fsum(chosen), delta=1e-6)
            if pct > 0:
                self.assertEqual(stats[f"upper_{label}"], chosen[-1])
            else:
                self.assertEqual(stats[f"lower_{label}"], chosen[0])


class StatsdRollupTests(unittest.SynchronousTestCase):
    def test_many_timings_in_any_order(self) -> None:
        """Past TIMER_RUN timings (sorted in runs as they arrive, on both the
        fast and the general path) the statistics are those of all of them."""
        rng = random.Random(7)
        n = sp.TIMER_RUN * 3 + 5
        values = [float(rng.randint(-5000, 5000)) / 4 for _ in range(n)]
        for sampled in (False, True):  # "|ms|@1" takes the general path
            r = sp.StatsdRollup(percentiles=(90, -10))
            for v in values:
                r.add_packet(b"t:%r|ms%s" % (v, b"|@1" if sampled else b""))
            self.assertEqual(r.flush(0.0, 1.0).timers["t"],
                             sp.timer_stats(values, float(n), 1.0, (90, -10)))

    def test_counters_with_sample_rates_gauges_timers_sets(self) -> None:
        r = sp.StatsdRollup()
        self.assertEqual(r.add_packet(b"hits:1|c|@0.1\nhits:2|c\na:1"), 0)
        r.add_packet(b"g:10|g\ng:+5|g\ng:-3|g\ng: +1|g\ng: -1|g")
        r.add_packet(b"rt:100|ms\nrt:300|ms|@0.5")
        r.add_packet(b"u:bob|s\nu:alice|s\nu:bob|s")
        out = r.flush(1000.0, 2.0)
        self.assertAlmostEqual(out.counters["hits"], 12.0)
        self.assertEqual(out.counters["a"], 1.0)
        self.assertEqual(out.gauges, {"g": 12.0})
        self.assertEqual(out.timers["rt"]["count"], 3.0)  # 1 + 1/0.5
        self.assertEqual(out.timers["rt"]["mean"], 200.0)
        self.assertEqual(out.sets, {"u": 2})
        self.assertEqual(out.counters[sp.PACKETS_RECEIVED], 4.0)
        self.assertEqual(out.counters[sp.METRICS_RECEIVED], 13.0)
        self.assertEqual(out.counters[sp.BAD_LINES], 0.0)

    def test_flush_restarts_all_but_gauges(self) -> None:
        r = sp.StatsdRollup()
        r.add_packet(b"c:1|c\nt:1|ms\ns:x|s\ng:4|g")
        r.flush(1.0, 1.0)
        r.add_packet(b"g:+1|g")
        out = r.flush(2.0, 1.0)
        self.assertNotIn("c", out.counters)
        self.assertEqual(out.timers, {})
        self.assertEqual(out.sets, {})
        self.assertEqual(out.gauges, {"g": 5.0})

    def test_gauge_delta_on_unknown_gauge_starts_from_zero(self) -> None:
        r = sp.StatsdRollup()
        r.add_packet(b"g:-2|g")
        self.assertEqual(r.flush(1.0, 1.0).gauges, {"g": -2.0})

    def test_bad_lines_are_counted_and_good_lines_still_count(self) -> None:
        r = sp.StatsdRollup()
        noise = bytes(random.Random(5).getrandbits(8) for _ in range(60 * 1024))
        bad = 0
        for packet in [b"garbage", b"a:", b"a:1|zz", b":1|c", b"\xff\xfe\xfd", noise,
                       b"ok:1|c\ngarbage\nok:2|c"]:
            bad += r.add_packet(packet)
        self.assertIn("garbage", str(r.last_bad))
        out = r.flush(1.0, 1.0)
        self.assertEqual(out.counters["ok"], 3.0)
        self.assertEqual(out.counters[sp.BAD_LINES], float(bad))
        self.assertGreaterEqual(bad, 7)

    def test_graphite_lines_use_etsy_names(self) -> None:
        r = sp.StatsdRollup()
        r.add_packet(b"hits:4|c\nload:1.5|g\nrt:10|ms\nu:a|s")
        text = r.flush(1234.9, 2.0).graphite_lines().decode()
        lines = set(text.splitlines())
        self.assertIn("stats.counters.hits.count 4 1234", lines)
        self.assertIn("stats.counters.hits.rate 2 1234", lines)
        self.assertIn("stats.gauges.load 1.5 1234", lines)
        self.assertIn("stats.timers.rt.upper_90 10 1234", lines)
        self.assertIn("stats.sets.u.count 1 1234", lines)
        self.assertIn("stats.counters.statsd.bad_lines.count 0 1234", lines)
        for line in lines:
            name, value, ts = line.split(" ")
            self.assertTrue(math.isfinite(float(value)))
            self.assertEqual(ts, "1234")

    def test_extra_counters_are_reported(self) -> None:
        out = sp.StatsdRollup().flush(1.0, 1.0, {"statsd.x": 3.0})
        self.assertEqual(out.counters["statsd.x"], 3.0)

    @given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(-1000, 1000),
                              st.sampled_from([1.0, 0.5, 0.25])), max_size=50))
    def test_counter_totals_match_a_model(self, items: list) -> None:
        r = sp.StatsdRollup()
        model: dict = {}
        for name, value, rate in items:
            r.add_packet(sp.format_metric(name, value, "c", rate).encode())
            model[name] = model.get(name, 0.0) + value / rate
        out = r.flush(1.0, 1.0)
        for name, total in model.items():
            self.assertAlmostEqual(out.counters[name], total)


wellformed_lines = st.builds(
    lambda n, k, v: sp.format_metric(n, v, k), st.sampled_from(["a", "b.c", "d-e"]),
    st.sampled_from(["c", "ms", "g", "s"]), st.integers(-5, 5))
line_pieces = st.lists(st.sampled_from(
    ["a", "b.c", "x y", " ", ":", "|", "1", "-2", "+3", "1.5e3", "nan", "c", "ms", "g", "s",
     "h", "@0.5", "@0", "@x", "\r"]), max_size=8).map("".join)
any_lines = st.one_of(wellformed_lines, line_pieces,
                      st.text("ab:|@.0123456789+-cmsg \r", max_size=16))


class FastPathTests(unittest.SynchronousTestCase):
    """``StatsdRollup.add_packet`` inlines common lines; it must agree with
    the general parser on everything."""

    @given(st.lists(any_lines, max_size=12))
    @example(["a:1:2|s", "a:x|s", "a: +1|g", "a:1|c|@0.5", "a:1|c|@0.5:2|c", "a:1|ms:2|s"])
    @settings(max_examples=1000)
    def test_fast_path_agrees_with_parse_packet(self, lines: list) -> None:
        packet = "\n".join(lines).encode()
        fast = sp.StatsdRollup()
        fast_bad = fast.add_packet(packet)
        slow = sp.StatsdRollup()
        metrics, bad = sp.parse_packet(packet)
        for m in metrics:
            slow.add(m)
        slow.packets, slow.bad_lines = 1, len(bad)
        self.assertEqual(fast_bad, len(bad))
        a, b = fast.flush(1.0, 1.0), slow.flush(1.0, 1.0)
        self.assertEqual((a.counters, a.gauges, a.timers, a.sets),
                         (b.counters, b.gauges, b.timers, b.sets))


class GaugeCapTests(unittest.SynchronousTestCase):
    def test_new_gauges_beyond_the_cap_are_bad_lines(self) -> None:
        r = sp.StatsdRollup(max_gauges=2)
        self.assertEqual(r.add_packet(b"a:1|g\nb:1|g\nc:1|g\nc:+1|g\nd:1|c"), 2)
        self.assertIn("more than 2 gauges", str(r.last_bad))
        r.add_packet(b"a:+5|g")
        out = r.flush(1.0, 1.0)
        self.assertEqual(out.gauges, {"a": 6.0, "b": 1.0})
        self.assertEqual(out.counters["d"], 1.0)
        self.assertEqual(out.counters[sp.BAD_LINES], 2.0)


class OverflowTests(unittest.SynchronousTestCase):
    """A value that makes a total infinite is a bad line: no inf reaches Graphite."""

    def test_counters_and_gauge_deltas_that_overflow_are_bad_lines(self) -> None:
        r = sp.StatsdRollup()
        packet = (b"x:1e308|c|@0.001\ng:+1e308|g\ng:+1e308|g\n"
                  b"y:1e308|c\ny:1e308|c\nz:1|c")
        self.assertEqual(r.add_packet(packet), 3)
        self.assertEqual(r.counters, {"y": 1e308, "z": 1.0})
        self.assertEqual(r.gauges, {"g": 1e308})
        self.assertIn("overflows", r.last_bad.reason)
        flat = r.flush(0, 10.0).flat("stats")
        self.assertTrue(all(math.isfinite(v) for v in flat.values()), flat)

    def test_the_general_path_agrees(self) -> None:
        r = sp.StatsdRollup()
        for line in (b"x:1e308|c", b"g:1e308|g"):
            r.add_packet(line)
        for line in (b"x:1e308|c", b"x:1e308|c|@0.5", b"g:+1e308|g"):
            self.assertEqual(r._add_lines([line.decode()]), 1, line)


class PercentileCheckTests(unittest.SynchronousTestCase):
    def test_out_of_range_percentiles_are_refused(self) -> None:
        for bad in (150, 0, -101, math.nan, math.inf):
            with self.subTest(p=bad):
                self.assertRaises(ValueError, sp.StatsdRollup, percentiles=(90, bad))
        self.assertEqual(sp.StatsdRollup(percentiles=(50, 99.9, -10, 100)).percentiles,
                         (50.0, 99.9, -10.0, 100.0))



# -- tags ---------------------------------------------------------------------------

tag_names = st.text("abcdefghijklmnopqrstuvwxyz0123456789_.-/", min_size=1, max_size=10).filter(
    lambda t: t != "name")
tag_values = st.text("abcdefghijklmnopqrstuvwxyzABC0123456789_.-/:=@+", min_size=1, max_size=12)


class TagTests(unittest.SynchronousTestCase):
    def test_tags_make_a_graphite_tagged_series(self) -> None:
        self.assertEqual(sp.parse_line("hits:1|c|#env:prod,host:a"),
                         [Metric("hits;env=prod;host=a", "c", 1.0)])

    def test_tag_order_and_field_order_do_not_matter(self) -> None:
        lines = ["rt:5|ms|@0.5|#b:2,a:1", "rt:5|ms|#a:1,b:2|@0.5", "rt:5|ms|#b:2,a:1|@0.5"]
        self.assertEqual({tuple(sp.parse_line(line)) for line in lines},
                         {(Metric("rt;a=1;b=2", "ms", 5.0, 0.5),)})

    def test_every_kind_takes_tags(self) -> None:
        self.assertEqual(sp.parse_line("g:-2|g|#k:v"), [Metric("g;k=v", "g", -2.0, 1.0, True)])
        self.assertEqual(sp.parse_line("u:bob|s|#k:v"), [Metric("u;k=v", "s", "bob")])
        self.assertEqual(sp.parse_line("t:1|h|#k:v"), [Metric("t;k=v", "ms", 1.0)])

    def test_a_value_may_hold_colons_and_equals(self) -> None:
        [metric] = sp.parse_line("hits:1|c|#url:http://x/y?a=b")
        self.assertEqual(sp.split_series(metric.name), ("hits", {"url": "http://x/y?a=b"}))

    def test_invalid_tags_are_bad_lines(self) -> None:
        cases = {
            "a:1|c|#": "not name:value",
            "a:1|c|#env": "not name:value",
            "a:1|c|#env:": "not name:value",
            "a:1|c|#:prod": "not name:value",
            "a:1|c|#env:prod,": "not name:value",
            "a:1|c|#e;v:prod": "Graphite refuses",
            "a:1|c|#e=v:prod": "Graphite refuses",
            "a:1|c|#e!:prod": "Graphite refuses",
            "a:1|c|#env:pr;od": "Graphite refuses",
            "a:1|c|#env:pr od": "Graphite refuses",
            "a:1|c|#env:~prod": "Graphite refuses",
            "a:1|c|#env:pr\u00f6d": "Graphite refuses",
            "a:1|c|#env:a,env:b": "repeated or reserved",
            "a:1|c|#name:x": "repeated or reserved",
            "a:1|c|#a:1|#b:2": "given twice",
            "a:1|c|@0.5|@0.5": "given twice",
            "a:1|c|#a:1|x": "too many '|' fields",
        }
        for line, reason in cases.items():
            with self.assertRaises(BadLine, msg=line) as cm:
                sp.parse_line(line)
            self.assertIn(reason, str(cm.exception), line)

    @given(names, st.sampled_from(["c", "ms", "g"]), st.integers(0, 10**6), rates,
           st.dictionaries(tag_names, tag_values, min_size=1, max_size=4))
    @settings(max_examples=300)
    def test_any_wellformed_tagged_line_parses_to_what_was_sent(
            self, name: str, kind: str, value: int, rate: float, tags: dict) -> None:
        if kind == "g":
            rate = 1.0
        line = sp.format_metric(name, value, kind, rate, tags)
        [metric] = sp.parse_line(line, max_name_bytes=10_000)
        self.assertEqual(metric, Metric(sp.series_name(name, tags), kind, float(value), rate))
        self.assertEqual(sp.split_series(metric.name), (name, tags))

    def test_graphite_gets_tagged_series_after_the_whole_path(self) -> None:
        r = sp.StatsdRollup()
        r.add_packet(b"hits:4|c|#env:prod\nhits:1|c\nload:2|g|#dc:x\nrt:10|ms|#env:prod\n"
                     b"u:a|s|#env:prod")
        lines = set(r.flush(1234.0, 2.0).graphite_lines().decode().splitlines())
        for line in ["stats.counters.hits.count;env=prod 4 1234",
                     "stats.counters.hits.rate;env=prod 2 1234",
                     "stats.counters.hits.count 1 1234",
                     "stats.gauges.load;dc=x 2 1234",
                     "stats.timers.rt.upper_90;env=prod 10 1234",
                     "stats.sets.u.count;env=prod 1 1234"]:
            self.assertIn(line, lines)

    def test_check_tags(self) -> None:
        sp.check_tags([("env", "prod")])
        self.assertRaises(ValueError, sp.check_tags, [("env", "a b")])


# -- what a peer may send: names in bytes, numbers in ASCII ----------------------------

class NameLengthTests(unittest.SynchronousTestCase):
    def test_the_cap_is_256_bytes_tags_included(self) -> None:
        ok, long = "n" * 256, "n" * 257
        self.assertEqual(sp.parse_line(f"{ok}:1|c")[0].name, ok)
        for line in (f"{long}:1|c", f"{'n' * 250}:1|c|#env:prod", f"{long}:1|c|@0.5",
                     f"{long}:x|s"):
            with self.assertRaises(BadLine, msg=line[-20:]) as cm:
                sp.parse_line(line)
            self.assertIn("longer than 256 bytes", str(cm.exception))
            self.assertLess(len(str(cm.exception)), 200)

    def test_both_paths_refuse_a_long_name_and_keep_the_others(self) -> None:
        for line in (b"n" * 300 + b":1|c", b"n" * 300 + b":1|ms", b"n" * 300 + b":1|g",
                     b"n" * 300 + b":x|s", b"n" * 300 + b":1|c|@0.5"):
            r = sp.StatsdRollup()
            self.assertEqual(r.add_packet(line + b"\nok:1|c"), 1, line[-10:])
            self.assertEqual(r.series, 1)
            self.assertEqual(r.counters, {"ok": 1.0})

    def test_the_cap_is_a_parameter(self) -> None:
        r = sp.StatsdRollup(max_name_bytes=8)
        self.assertEqual(r.add_packet(b"12345678:1|c\n123456789:1|c"), 1)
        self.assertEqual(list(r.counters), ["12345678"])

    def test_a_huge_name_costs_little(self) -> None:
        r = sp.StatsdRollup()
        self.assertEqual(r.add_packet(b"x" * 65000 + b":1|g"), 1)
        self.assertEqual(r.gauges, {})


class AsciiDigitTests(unittest.SynchronousTestCase):
    """``float()`` reads Unicode digits and underscores; statsd values are ASCII."""

    BAD = ["ud:\u0663|c", "ud:\u0661\u0662|ms", "ud:+\u0663|g", "ud:\uff11|c", "ud:1|c|@\u0660.5",
           "ud:1_000|c", "ud:1_0|ms", "ud:1_0|g", "ud:1|c|@0.5_0", "ud:0x10|c", "ud:1e5_0|c",
           "ud:infinity|c", "ud:\u0663"]

    def test_non_ascii_digits_are_bad_lines(self) -> None:
        for line in self.BAD:
            with self.assertRaises(BadLine, msg=line):
                sp.parse_line(line)

    def test_both_paths_agree_and_good_neighbours_count(self) -> None:
        for line in self.BAD:
            r = sp.StatsdRollup()
            bad = r.add_packet(f"ok:1|c\n{line}\nok:2|c".encode())
            self.assertEqual(bad, 1, line)
            self.assertEqual(r.counters, {"ok": 3.0}, line)
            self.assertEqual((r.timers, r.gauges), ({}, {}), line)

    def test_ascii_forms_still_parse(self) -> None:
        for text, value in [("1", 1.0), ("-1.5", -1.5), ("+2", 2.0), (".5", 0.5),
                            ("1.", 1.0), ("1e3", 1000.0), ("2E-2", 0.02), (" 7 ", 7.0)]:
            self.assertEqual(sp.parse_number(text), value, text)

    def test_sets_members_may_be_any_text(self) -> None:
        self.assertEqual(sp.parse_line("u:\u0663|s"), [Metric("u", "s", "\u0663")])


# -- lifetimes ----------------------------------------------------------------------

class DeleteIdleTests(unittest.SynchronousTestCase):
    def test_kept_types_are_sent_as_zeros_like_etsy(self) -> None:
        r = sp.StatsdRollup(delete_idle=())
        r.add_packet(b"c:5|c\nt:1|ms\ns:x|s\ng:4|g")
        r.flush(1.0, 1.0)
        out = r.flush(2.0, 1.0)
        self.assertEqual(out.counters["c"], 0.0)
        self.assertEqual(out.timers["t"], {"count": 0.0, "count_ps": 0.0})
        self.assertEqual(out.sets, {"s": 0})
        self.assertEqual(out.gauges, {"g": 4.0})
        lines = out.graphite_lines().decode()
        self.assertIn("stats.timers.t.count 0 2", lines)
        self.assertNotIn("stats.timers.t.mean", lines)

    def test_each_type_is_chosen_apart(self) -> None:
        r = sp.StatsdRollup(delete_idle=("timers",))
        r.add_packet(b"c:5|c\nt:1|ms\ns:x|s")
        r.flush(1.0, 1.0)
        out = r.flush(2.0, 1.0)
        self.assertEqual((out.counters["c"], out.timers, out.sets), (0.0, {}, {"s": 0}))

    def test_deleted_gauges_are_sent_once_per_update(self) -> None:
        r = sp.StatsdRollup(delete_idle=("gauges",))
        r.add_packet(b"g:4|g")
        self.assertEqual(r.flush(1.0, 1.0).gauges, {"g": 4.0})
        self.assertEqual(r.flush(2.0, 1.0).gauges, {})
        r.add_packet(b"g:+1|g")  # forgotten: a delta starts from zero again
        self.assertEqual(r.flush(3.0, 1.0).gauges, {"g": 1.0})

    def test_unknown_type_is_refused(self) -> None:
        self.assertRaises(ValueError, sp.StatsdRollup, delete_idle=("counter",))


class GaugeTTLTests(unittest.SynchronousTestCase):
    def test_a_gauge_is_sent_for_ttl_flushes_after_its_last_update(self) -> None:
        r = sp.StatsdRollup(gauge_ttl=3)
        r.add_packet(b"old:1|g\nfresh:1|g")
        sent = []
        for i in range(6):
            if i in (2, 4):
                r.add_packet(b"fresh:+1|g")
            sent.append(sorted(r.flush(float(i), 1.0).gauges))
        self.assertEqual(sent, [["fresh", "old"], ["fresh", "old"], ["fresh", "old"],
                                ["fresh"], ["fresh"], ["fresh"]])
        self.assertNotIn("old", r.gauges)  # forgotten, not only unsent
        self.assertEqual(r.gauges, {"fresh": 3.0})

    def test_zero_keeps_gauges_for_good(self) -> None:
        r = sp.StatsdRollup(gauge_ttl=0)
        r.add_packet(b"g:1|g")
        for i in range(50):
            out = r.flush(float(i), 1.0)
        self.assertEqual(out.gauges, {"g": 1.0})

    def test_the_default_ttl_is_an_hour_of_one_second_flushes(self) -> None:
        self.assertEqual(sp.StatsdRollup().gauge_ttl, sp.DEFAULT_GAUGE_TTL)
        self.assertEqual(sp.DEFAULT_GAUGE_TTL, 3600)


# -- bounded state --------------------------------------------------------------------

class MaxMetricsTests(unittest.SynchronousTestCase):
    def test_new_series_past_the_cap_are_dropped_and_counted(self) -> None:
        r = sp.StatsdRollup(max_metrics=3)
        self.assertEqual(r.add_packet(b"known:1|c"), 0)
        hostile = b"\n".join(b"n%d:1|%s" % (i, kind) for i, kind in
                             enumerate([b"c", b"g", b"ms", b"s", b"c|@0.5", b"c|#k:v"] * 20))
        self.assertEqual(r.add_packet(hostile), 0)  # not bad lines: dropped at the cap
        r.add_packet(b"known:2|c")  # the well-behaved series is unaffected
        self.assertEqual(r.series, 3)
        self.assertLessEqual(r.series, r.max_metrics)
        out = r.flush(1.0, 1.0)
        self.assertEqual(out.counters["known"], 3.0)
        self.assertEqual(out.counters[sp.DROPPED_NEW_METRICS], 118.0)
        self.assertEqual(out.counters[sp.BAD_LINES], 0.0)
        self.assertTrue(r.last_dropped.startswith("n"))

    def test_forgotten_series_make_room_again(self) -> None:
        r = sp.StatsdRollup(max_metrics=2)
        r.add_packet(b"a:1|c\nb:1|c\nc:1|c")
        self.assertEqual(sorted(r.flush(1.0, 1.0).counters)[:2], ["a", "b"])
        r.add_packet(b"c:1|c")
        self.assertEqual(r.flush(2.0, 1.0).counters["c"], 1.0)

    def test_gauges_held_count_toward_the_cap(self) -> None:
        r = sp.StatsdRollup(max_metrics=2, gauge_ttl=0)
        r.add_packet(b"g1:1|g\ng2:1|g")
        r.flush(1.0, 1.0)
        r.add_packet(b"c:1|c\ng1:+1|g")
        out = r.flush(2.0, 1.0)
        self.assertNotIn("c", out.counters)
        self.assertEqual(out.gauges, {"g1": 2.0, "g2": 1.0})
        self.assertEqual(out.counters[sp.DROPPED_NEW_METRICS], 1.0)

    def test_default(self) -> None:
        self.assertEqual(sp.StatsdRollup().max_metrics, 100_000)


class MaxStateBytesTests(unittest.SynchronousTestCase):
    def test_timings_past_the_byte_cap_are_dropped_and_counted(self) -> None:
        cap = len("ok") + len("t") + 2 * sp.SERIES_COST + 10 * sp.TIMER_VALUE_COST
        r = sp.StatsdRollup(max_state_bytes=cap)
        r.add_packet(b"ok:1|ms")
        r.add_packet(b"\n".join([b"t:1|ms"] * 50))  # a hostile flood of timings
        r.add_packet(b"t:1|ms|@0.5")  # the general path too
        self.assertLessEqual(r.state_bytes, cap)
        out = r.flush(1.0, 1.0)
        self.assertEqual(out.timers["ok"]["count"], 1.0)
        self.assertEqual(out.timers["t"]["count"], 9.0)
        self.assertEqual(out.counters[sp.DROPPED_VALUES], 42.0)
        r.add_packet(b"t:1|ms")  # the flush emptied the timings: room again
        self.assertEqual(r.flush(2.0, 1.0).timers["t"]["count"], 1.0)

    def test_set_members_and_new_names_count_in_bytes(self) -> None:
        r = sp.StatsdRollup(max_state_bytes=3000)
        r.add_packet(b"u:a|s")
        members = b"\n".join(b"big:" + b"%04d" % i * 50 + b"|s" for i in range(100))
        r.add_packet(members)
        names = b"\n".join(b"%s:1|c" % (b"n%d" % i * 20) for i in range(100))
        r.add_packet(names)
        r.add_packet(b"u:b|s")
        self.assertLessEqual(r.state_bytes, 3000)
        out = r.flush(1.0, 1.0)
        self.assertEqual(out.sets["u"], 2)
        self.assertGreater(out.counters[sp.DROPPED_VALUES], 50)
        self.assertGreater(out.counters[sp.DROPPED_NEW_METRICS], 50)

    def test_estimate_is_recounted_after_a_flush(self) -> None:
        r = sp.StatsdRollup(gauge_ttl=0)
        r.add_packet(b"g:1|g\nt:1|ms\nt:2|ms\nu:x|s\nc:1|c")
        before = r.state_bytes
        self.assertEqual(before, r.recount_state_bytes())
        r.flush(1.0, 1.0)
        self.assertEqual(r.state_bytes, len("g") + sp.SERIES_COST)


# -- what a flush sends ------------------------------------------------------------------

class HistogramTests(unittest.SynchronousTestCase):
    def test_etsy_bins(self) -> None:
        stats = sp.timer_stats([1.0, 5.0, 10.0, 50.0, 100.0, 500.0], 6.0, 1.0, (90,),
                               (10.0, 100.0, math.inf))
        self.assertEqual((stats["histogram.bin_10"], stats["histogram.bin_100"],
                          stats["histogram.bin_inf"]), (2, 2, 2))

    def test_values_past_the_last_finite_bin_are_not_counted(self) -> None:
        stats = sp.timer_stats([0.25, 0.75, 2.0], 3.0, 1.0, (), (0.5, 1.0))
        self.assertEqual(stats, {**stats, "histogram.bin_0_5": 1, "histogram.bin_1": 1})
        self.assertEqual(sum(v for k, v in stats.items() if k.startswith("histogram.")), 2)

    def test_first_matching_name_wins_and_reaches_graphite(self) -> None:
        r = sp.StatsdRollup(histograms=[sp.parse_histogram("api.:10,inf"),
                                        sp.parse_histogram(":1,inf")])
        r.add_packet(b"api.rt:5|ms\napi.rt:50|ms\ndb.rt:5|ms")
        out = r.flush(7.0, 1.0)
        self.assertEqual(out.timers["api.rt"]["histogram.bin_10"], 1)
        self.assertEqual(out.timers["db.rt"]["histogram.bin_1"], 0)
        self.assertIn(b"stats.timers.api.rt.histogram.bin_inf 1 7\n", out.graphite_lines())

    def test_parse_histogram(self) -> None:
        self.assertEqual(sp.parse_histogram("a:1,2.5,inf"), ("a", (1.0, 2.5, math.inf)))
        self.assertEqual(sp.parse_histogram(":1"), ("", (1.0,)))
        for bad in ("a", "a:", "a:x", "a:2,1", "a:1,1", "a:nan"):
            self.assertRaises(ValueError, sp.parse_histogram, bad)


class GraphiteNamesTests(unittest.SynchronousTestCase):
    def test_etsy_prefixes_and_suffix(self) -> None:
        r = sp.StatsdRollup(stats_prefix="self")
        r.add_packet(b"c:1|c\ng:2|g\nt:3|ms\ns:x|s\nc:1|c|#k:v")
        names = sp.GraphiteNames("p", "cnt", "tm", "", "st", "sfx")
        flat = r.flush(1.0, 1.0).flat(names=names)
        for name in ["p.cnt.c.count.sfx", "p.g.sfx", "p.tm.t.mean.sfx", "p.st.s.count.sfx",
                     "p.cnt.c.count.sfx;k=v", "p.cnt.self.bad_lines.count.sfx"]:
            self.assertIn(name, flat)

    def test_no_prefix_at_all(self) -> None:
        r = sp.StatsdRollup()
        r.add_packet(b"g:2|g")
        self.assertIn("g", r.flush(1.0, 1.0).flat(names=sp.GraphiteNames("", "", "", "", "")))

    def test_parts_that_break_a_path_are_refused(self) -> None:
        for bad in (sp.GraphiteNames("a b"), sp.GraphiteNames(suffix=".x"),
                    sp.GraphiteNames(counter="x;y"), sp.GraphiteNames("a..b")):
            self.assertRaises(ValueError, bad.check)


class PayloadCapTests(unittest.SynchronousTestCase):
    def test_lines_past_the_cap_are_counted_not_rendered_internal_ones_first(self) -> None:
        r = sp.StatsdRollup()
        r.add_packet(b"\n".join(b"metric%03d:1|g" % i for i in range(300)))
        out = r.flush(1.0, 1.0)
        full, none_left = out.graphite_payload()
        self.assertEqual(none_left, 0)
        payload, left_out = out.graphite_payload(max_bytes=2000)
        self.assertLessEqual(len(payload), 2000)
        self.assertTrue(payload.endswith(b"\n"))
        self.assertTrue(full.startswith(payload))
        self.assertEqual(len(payload.splitlines()) + left_out, len(full.splitlines()))
        self.assertTrue(payload.startswith(b"stats.counters.statsd.packets_received.count 1 1\n"))
        self.assertIn(b"statsd.dropped_values", payload)

    def test_the_payload_is_items_in_order(self) -> None:
        r = sp.StatsdRollup(histograms=[("", (1.0, math.inf))])
        r.add_packet(b"c:1|c\nc:2|c|#k:v\ng:0.1|g\nt:3|ms|#a:b\nt:1e20|ms\nu:x|s|#k:v")
        out = r.flush(5.0, 2.0)
        names = sp.GraphiteNames("p", "c", "", "g", "s", "sfx")
        expected = "".join(f"{k} {sp.format_number(v)} 5\n" for k, v in out.items(names))
        self.assertEqual(out.graphite_payload(names)[0].decode(), expected)

    def test_console_text_and_summary(self) -> None:
        r = sp.StatsdRollup()
        r.add_packet(b"c:1|c\ng:2|g\nbad")
        out = r.flush(1.0, 1.0)
        self.assertIn("stats.gauges.g 2", out.console_text().splitlines())
        self.assertEqual(out.summary(), "2 metrics (1 counters, 1 gauges, 0 timers, 0 sets)"
                                        " from 1 datagrams, 1 bad lines")


# -- the fast path, on the new language ----------------------------------------------------

new_pieces = st.lists(st.sampled_from(
    ["a", "b.c", ":", "|", "1", "+2", "c", "ms", "g", "s", "@0.5", "#", "k", ":", "v", ",",
     "_", "\u0663", "\uff11", "n" * 255, "nn", "~", ";", "=", " "]), max_size=10).map("".join)


class FastPathNewLanguageTests(unittest.SynchronousTestCase):
    @given(st.lists(new_pieces, max_size=8), st.integers(1, 6), st.integers(200, 5000))
    @example(["a:1_0|c", "a:\u0663|c", "n" * 257 + ":1|c", "a:1|c|#k:v", "a:1|ms|#k:v"], 2, 900)
    @example(["a:1|c|#k:v,j:w", "a:2|c|#j:w,k:v", "a:1|c|@0.5|#k:v", "a:1|c|#k:v|@0.5",
              "g:+1|g|#k:v", "g:-3|g|#k:v", "u:x|s|#k:v", "t:1|ms|#k:v", "a:1|#k:v",
              "a:1|c|#k", "a:1|c|#k:~v", "a:1|c|#name:v", "a:1|c:2|c|#k:v", "b!:1|c|#k:v",
              "n" * 250 + ":1|c|#k:vvvvvv", "a:1|c|#k:v,k:w", "a:1|c|#"], 6, 5000)
    @example(["u:x|s|#k:v", "u:y|s|#k:v", "u:z|s|#k:v", "t:1|ms|#k:v", "t:2|h|@0.5|#k:v",
              "u:w|s|@0.5|#k:v", "g:1|g|@0.5|#k:v", "c:1_0|c|#k:v", "c:1|c|@0.5_0|#k:v"],
             3, 700)
    @settings(max_examples=500)
    def test_fast_path_agrees_with_parse_packet(self, lines: list, max_metrics: int,
                                                 max_bytes: int) -> None:
        packet = "\n".join(lines).encode()
        options = dict(max_metrics=max_metrics, max_state_bytes=max_bytes)
        fast = sp.StatsdRollup(**options)
        fast_bad = fast.add_packet(packet)
        slow = sp.StatsdRollup(**options)
        metrics, bad = sp.parse_packet(packet)
        for m in metrics:
            slow.add(m)
        slow.packets, slow.bad_lines = 1, len(bad)
        self.assertEqual(fast_bad, len(bad))
        self.assertEqual((fast.dropped_new_metrics, fast.dropped_values, fast.state_bytes),
                         (slow.dropped_new_metrics, slow.dropped_values, slow.state_bytes))
        a, b = fast.flush(1.0, 1.0), slow.flush(1.0, 1.0)
        self.assertEqual((a.counters, a.gauges, a.timers, a.sets),
                         (b.counters, b.gauges, b.timers, b.sets))
