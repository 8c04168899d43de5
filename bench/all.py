"""Every bench script on CPython and on PyPy, summed up in one table.

Runs each ``bench/<name>.py`` with ``--json --python <interpreter>`` once per
interpreter (one after the other, never two at once: they share the two CPUs),
collects the ``BENCH-RESULT`` line each prints, and prints one table: for
every figure, twisted_aleph and its baseline on CPython and on PyPy, the
project/baseline ratio per interpreter ("load-bound" where a server was
not kept busy: that figure measured the load generator) and the
PyPy/CPython ratio of the project's figure. A bench that fails or prints no
result gets a line in the table saying why; the others still run. Each
bench warms the JIT (a few seconds of load on PyPy) before it measures; the
table says so.

PyPy is, unless ``--pypy PATH`` says otherwise, the ``.venv-pypy`` beside
this checkout (what ``./test --pypy`` creates), else ``pypy3`` on PATH (which
needs the project's dependencies installed for it).

    python bench/all.py [--seconds 3] [--runs 3] [--bench http_hello --bench edn ...]
                        [--cpython PATH] [--pypy PATH | --no-pypy] [--log FILE]

Takes as long as the benches it runs (with ``--seconds 3``: several minutes,
mostly http_hello's fixed-length /delayed_hello and /numbers runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import _harness

#: in the order they are run and shown
BENCHES = ["edn", "stream", "tcp_echo", "http_hello", "http_upload", "tls", "websocket",
           "statsd", "scale"]


def default_pypy() -> Optional[str]:
    """The checkout's ``.venv-pypy`` (``./test --pypy`` makes it), else ``pypy3`` on PATH."""
    venv = os.path.join(_harness.ROOT, ".venv-pypy", "bin", "python")
    if os.path.exists(venv):
        return venv
    return shutil.which("pypy3")


def run_bench(name: str, python: str, args: argparse.Namespace) -> Tuple[Optional[dict], str]:
    """(the bench's result, "") or (None, why not)."""
    script = os.path.join(_harness.HERE, name + ".py")
    argv = [sys.executable, script, "--python", python, "--seconds", str(args.seconds), "--json"]
    if args.runs is not None:
        argv += ["--runs", str(args.runs)]
    if args.warmup is not None:
        argv += ["--warmup", str(args.warmup)]
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return None, "timed out after %g s" % args.timeout
    if args.log:
        with open(args.log, "a") as log:
            log.write("$ %s\n%s%s\n" % (" ".join(argv), proc.stdout, proc.stderr))
    if args.verbose:
        sys.stderr.write(proc.stdout)
    try:
        result = json.loads(_harness.last_line(proc.stdout, _harness.RESULT_PREFIX))
    except (RuntimeError, ValueError):
        why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return None, "failed (exit %d): %s" % (proc.returncode, why[:120])
    sys.stderr.write("  %s on %s: %d figures in %.0f s\n" % (
        name, result["python"], len(result["rows"]), time.monotonic() - started))
    return result, ""


def number(x: Optional[float]) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return "%.1f" % x
    return "%.3g" % x


def ratio(x: Optional[float]) -> str:
    return "-" if x is None else "%.2f" % x


def row_ratio(row: Dict[str, Any]) -> str:
    """A row's ratio, or "load-bound" where the bench found no ratio to give."""
    if row.get("ratio") is None and str(row.get("note", "")).startswith("load-bound"):
        return "load-bound"
    return ratio(row.get("ratio"))


COLUMNS = [("figure", 48), ("unit", 20),
           ("CPy aleph", 10), ("CPy base", 10), ("ratio", 10),
           ("PyPy aleph", 10), ("PyPy base", 10), ("ratio", 10), ("PyPy/CPy", 8)]


def line(cells: List[str]) -> str:
    out = []
    for (_, width), cell in zip(COLUMNS, cells):
        out.append(cell[:width].ljust(width) if width >= 13 else cell.rjust(width))
    return " ".join(out).rstrip()


def table(results: Dict[str, Dict[str, Tuple[Optional[dict], str]]],
          interpreters: Dict[str, str]) -> str:
    """The one table: a block per bench, a line per figure."""
    out = [line([c for c, _ in COLUMNS]), "-" * (sum(w for _, w in COLUMNS) + len(COLUMNS) - 1)]
    notes: Dict[Tuple[str, str, str], List[str]] = {}  # (bench, impl, note) -> figures
    for bench, per_python in results.items():
        rows: Dict[str, Dict[str, Any]] = {}
        warmups, failures = [], []
        for impl in ("CPython", "PyPy"):
            result, why = per_python.get(impl, (None, "not run"))
            if result is None:
                if impl in interpreters:
                    failures.append("  %s: %s" % (impl, why))
                continue
            warmups.append("%s %g s" % (impl, result["warmup"]))
            for row in result["rows"]:
                rows.setdefault(row["name"], {})[impl] = row
        out.append("[%s]%s" % (bench, "  warm-up: " + ", ".join(warmups) if warmups else ""))
        out += failures
        for name, by_impl in rows.items():
            cpy, pypy = by_impl.get("CPython", {}), by_impl.get("PyPy", {})
            any_row = cpy or pypy
            unit = any_row["unit"] + (" (lower)" if any_row.get("better") == "lower" else "")
            across = (pypy["project"] / cpy["project"]
                      if cpy.get("project") and pypy.get("project") is not None else None)
            out.append(line(["  " + name, unit,
                             number(cpy.get("project")), number(cpy.get("baseline")),
                             row_ratio(cpy),
                             number(pypy.get("project")), number(pypy.get("baseline")),
                             row_ratio(pypy), ratio(across)]))
            for impl, row in (("CPython", cpy), ("PyPy", pypy)):
                if row.get("note"):
                    notes.setdefault((bench, impl, row["note"]), []).append(name)
    if notes:
        out.append("")
    for (bench, impl, note), names in notes.items():
        which = names[0] if len(names) == 1 else "%d figures" % len(names)
        out.append("note: %s on %s, %s: %s" % (bench, impl, which, note))
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpython", default=sys.executable,
                        help="CPython interpreter (default: this one)")
    parser.add_argument("--pypy", default=None,
                        help="PyPy interpreter with the project's dependencies (default: "
                             ".venv-pypy/bin/python beside this checkout, else pypy3 on PATH)")
    parser.add_argument("--no-pypy", action="store_true", help="CPython only")
    parser.add_argument("--no-cpython", action="store_true", help="PyPy only")
    parser.add_argument("--bench", action="append", choices=BENCHES,
                        help="a bench to run (repeat; default: all of %s)" % ", ".join(BENCHES))
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="--seconds for each bench (default 3)")
    parser.add_argument("--runs", type=int, default=None,
                        help="--runs for each bench that alternates runs (default: theirs, 3)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="--warmup for each bench (default: each bench's own, a few "
                             "seconds on PyPy)")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds before a bench counts as failed (default 900)")
    parser.add_argument("--log", help="append every bench's full output to this file")
    parser.add_argument("--json-out", help="also write the raw results to this file")
    parser.add_argument("--verbose", action="store_true", help="echo each bench's output")
    args = parser.parse_args()

    interpreters: Dict[str, str] = {}
    if not args.no_cpython:
        interpreters["CPython"] = args.cpython
    if not args.no_pypy:
        args.pypy = args.pypy or default_pypy()
        if args.pypy and shutil.which(args.pypy):
            interpreters["PyPy"] = args.pypy
        else:
            print("PyPy: not found (%s); pass --pypy PATH to a PyPy venv's python"
                  % (args.pypy or "no default"), file=sys.stderr)
    labels = {}
    for impl, python in list(interpreters.items()):
        try:
            labels[impl] = _harness.interpreter(python)["label"]
        except (OSError, subprocess.SubprocessError) as e:
            print("%s (%s) does not run: %s" % (impl, python, e), file=sys.stderr)
            del interpreters[impl]

    results: Dict[str, Dict[str, Tuple[Optional[dict], str]]] = {}
    for bench in args.bench or BENCHES:
        results[bench] = {}
        for impl, python in interpreters.items():
            sys.stderr.write("running %s on %s...\n" % (bench, impl))
            results[bench][impl] = run_bench(bench, python, args)

    print("twisted_aleph vs its baselines, %g s per measurement; %s; %s" % (
        args.seconds, "; ".join("%s = %s (%s)" % (impl, labels[impl], interpreters[impl])
                                for impl in interpreters),
        "servers pinned to CPU 0, load to CPU 1" if _harness.PINNED else "not pinned"))
    print("Each measurement follows a warm-up of the same load (for PyPy's JIT; seconds per bench "
          "below).")
    print("ratio = aleph/base (goal >= 0.8-1.0 for rates; '(lower)' rows: lower is better, "
          "so ratio <= 1 is good); PyPy/CPy = the project's figure on PyPy / on CPython.")
    print("load-bound = a server was busy (running or queued for its core) under %.0f%% of the "
          "window: the figure measured the load, not the server (no ratio)."
          % (_harness.BUSY_MIN * 100))
    print("A shared 2-core machine: figures are noisy, re-measure before quoting.\n")
    print(table(results, interpreters))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({b: {i: r for i, (r, _) in per.items()} for b, per in results.items()},
                      f, indent=1)


if __name__ == "__main__":
    main()
