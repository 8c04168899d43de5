"""Benchmark: twisted_aleph.edn against PyPI's edn_format on the seed's messages.

Prints loads and dumps per second for small ints, short strings and a 10-key
map, for twisted_aleph.edn and edn_format (the baseline; skipped where it is
not installed, e.g. under PyPy), the ratio, and the stdlib json module on the
same shapes for scale. A script, not a test: numbers are noisy on a shared
machine.

For dumps it also prints a ceiling: the same harness calling a "writer" that
does no work at all but return the answer, computed beforehand (the faster
of a C call, best on CPython, and a Python function, best under PyPy's JIT).
No dumps can beat it, so ``ceiling / edn_format`` is the highest ratio any
writer can show here: on CPython the harness's own call costs a good part of
edn_format's time for a scalar, and PyPy compiles edn_format's dumps of a
scalar to about nothing.

    python bench/edn.py [--seconds 1] [--warmup N] [--python /usr/bin/pypy3] [--json]

The workload runs in a child process under ``--python`` (default: this
interpreter), pinned to CPU 1 with ``taskset`` when available; each figure
follows ``--warmup`` seconds of the same calls (PyPy's JIT).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable, List, Optional, Tuple

import _harness

# The seed's messages: what the TCP echo example sends (inc'd numbers), chat
# lines, and a small keyword map.
MESSAGES = [
    ("small int", "1"),
    ("short string", '"hello, world"'),
    ("10-key map", "{:id 42, :user \"alice\", :room \"lobby\", :seq 1234, :ok true, "
                   ":score 1.5, :tags [:a :b], :ts 1700000000, :kind :chat, :n nil}"),
]


def measure(fn: Callable[[], Any], seconds: float, warmup: float) -> float:
    """Calls per second of ``fn`` over about ``seconds``, after ``warmup`` seconds
    of calls (at least 0.1 s: that also sizes the timed batches)."""
    batch = 1
    deadline = time.perf_counter() + max(0.1, warmup)
    while time.perf_counter() < deadline:  # warm-up, and size a batch to ~10 ms
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        if time.perf_counter() - start < 0.01:
            batch *= 2
    calls = 0
    start = time.perf_counter()
    end = start + seconds
    while True:
        for _ in range(batch):
            fn()
        calls += batch
        now = time.perf_counter()
        if now >= end:
            return calls / (now - start)


Workload = Tuple[str, str, Callable[[], Any], Optional[Callable[[], Any]],
                 Callable[[], Any], List[Callable[[], Any]]]


def workloads() -> List[Workload]:
    """(message, op, ours, edn_format or None, json, no-work writers) callables."""
    import json
    import types

    from twisted_aleph import edn

    try:
        import edn_format
    except ImportError:
        edn_format = None

    def json_text(text: str) -> str:  # the same shape as JSON, for scale
        return json.dumps(edn_to_json(edn.loads(text)))

    out = []
    for name, text in MESSAGES:
        ours_value = edn.loads(text)
        jtext = json_text(text)
        jvalue = json.loads(jtext)
        theirs_loads = theirs_dumps = None
        if edn_format is not None:
            theirs_value = edn_format.loads(text)
            theirs_loads = (lambda t=text: edn_format.loads(t))
            theirs_dumps = (lambda v=theirs_value: edn_format.dumps(v))
        # Same shape as ours (an attribute lookup and a call), but no work:
        # str.format ignores the argument and returns the text (braces escaped).
        answer = edn.dumps(ours_value)
        in_c = types.SimpleNamespace(
            dumps=answer.replace("{", "{{").replace("}", "}}").format)
        in_python = types.SimpleNamespace(dumps=lambda _value, t=answer: t)
        no_work = [lambda v=ours_value, w=in_c: w.dumps(v),
                   lambda v=ours_value, w=in_python: w.dumps(v)]
        out.append((name, "loads", lambda t=text: edn.loads(t), theirs_loads,
                    lambda t=jtext: json.loads(t), []))
        out.append((name, "dumps", lambda v=ours_value: edn.dumps(v), theirs_dumps,
                    lambda v=jvalue: json.dumps(v), no_work))
    return out


def edn_to_json(value: Any) -> Any:
    from twisted_aleph import edn
    if isinstance(value, edn.Keyword):
        return str(value)
    if isinstance(value, edn.FrozenDict):
        return {str(k): edn_to_json(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [edn_to_json(v) for v in value]
    return value


def run(args: argparse.Namespace) -> None:
    """Measure every workload in this process (the child) and print the table."""
    _harness.header("EDN loads/dumps", args, "workload on CPU %d (taskset)" % _harness.LOAD_CPU)
    results = _harness.Results("edn", args)
    rows = workloads()
    have_baseline = any(row[3] is not None for row in rows)
    if not have_baseline:
        print("edn_format is not installed for this interpreter: only ours is measured")
    print("%-13s %-5s %14s %14s %8s %8s %14s %8s" % (
        "message", "op", "twisted_aleph", "edn_format", "ratio", "ceiling", "json (C)",
        "vs json"))
    for name, op, ours, theirs, json_fn, no_work in rows:
        ours_rate = measure(ours, args.seconds, args.warmup)
        theirs_rate = measure(theirs, args.seconds, args.warmup) if theirs else None
        json_rate = measure(json_fn, min(args.seconds, 0.5), min(args.warmup, 0.5))  # scale only
        ceiling = "%8s" % "-"
        note = "" if theirs_rate else "no edn_format"
        if theirs_rate:
            baseline, ratio = "%12.0f/s" % theirs_rate, "%7.1fx" % (ours_rate / theirs_rate)
            if no_work:
                most = max(measure(fn, args.seconds, args.warmup) for fn in no_work) / theirs_rate
                ceiling, note = "%7.1fx" % most, "ceiling %.1fx" % most
        else:
            baseline, ratio = "%14s" % "-", "%8s" % "-"
        print("%-13s %-5s %12.0f/s %s %s %s %12.0f/s %7.2fx" % (
            name, op, ours_rate, baseline, ratio, ceiling, json_rate, ours_rate / json_rate),
            flush=True)
        results.add("%s %s" % (op, name), ours_rate, theirs_rate, "calls/s", note=note)
    print("(ratio = twisted_aleph / edn_format, higher is better; ceiling = the ratio of a "
          "dumps doing no work at all in this harness, the most any writer can show; json is "
          "the stdlib's C module on the same shapes, for scale)")
    results.emit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _harness.add_common_options(parser, seconds=1.0, warmup_pypy=1.0)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = _harness.finish_options(parser.parse_args())
    if args.inner:
        return run(args)
    argv = _harness.script_argv(args.python, __file__, "--inner", "--python", args.python,
                                "--seconds", args.seconds, "--warmup", args.warmup)
    sys.stdout.write(_harness.run_pinned(_harness.LOAD_CPU, argv + (["--json"] if args.json else [])))


if __name__ == "__main__":
    main()
