"""What every bench script shares: options, interpreters, pinned child processes,
CPU windows, alternating runs, results.

A bench script is an orchestrator (run by any Python) that starts its server
processes under ``--python`` with this checkout first on ``PYTHONPATH``,
servers pinned to CPU 0 and the load to CPU 1 with ``taskset`` when it exists,
and prints its figures; with ``--json`` its last line is ``BENCH-RESULT
{json}``, which ``bench/all.py`` collects into one table.

A figure is only worth its load: the load generators (``_loadgen``) print
``window-start`` when their measured window begins and a result line when it
ends, and :func:`run_load` reads the CPU times of the server, of the load
process and of both cores (``/proc``) at those two lines. A window in which
the server was busy (running, or runnable and queued behind another process
for its core) less than :data:`BUSY_MIN` of the time measured the load, not
the server: :class:`Results` gives it no ratio and notes it "load-bound".

Usage, in a script::

    args = _harness.finish_options(parser.parse_args())  # after add_common_options
    with _harness.Child.server(args.python, __file__, "--role", "server") as server:
        out, window = _harness.run_load(argv, server.pid, "msgs_per_s=")
    outcomes = _harness.alternate(("aleph", "raw"), args.runs, measure, labels, "msgs/s", "msg")
    results = _harness.Results("tcp_echo", args)
    results.compare("inc-echo", outcomes["aleph"], outcomes["raw"], "msgs/s", "msg")
    results.emit()
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SERVER_CPU = 0
LOAD_CPU = 1
HAS_TASKSET = shutil.which("taskset") is not None


def _allowed_cpus() -> Set[int]:
    """The CPUs this process may run on (PyPy 3.9 has no os.sched_getaffinity)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Cpus_allowed_list:"):
                cpus: Set[int] = set()
                for part in line.split(":", 1)[1].strip().split(","):
                    low, _, high = part.partition("-")
                    cpus.update(range(int(low), int(high or low) + 1))
                return cpus
    return set(range(os.cpu_count() or 1))


def _can_pin() -> bool:
    try:
        return HAS_TASKSET and {SERVER_CPU, LOAD_CPU} <= _allowed_cpus()
    except (OSError, ValueError):
        return False


#: servers on CPU 0 and load on CPU 1 (taskset present, both CPUs ours)
PINNED = _can_pin()
#: a server busy (running, or runnable and queued for its core) less than this
#: part of a measured window spent the rest waiting for the load: the figure
#: measured the load generator, not the server
BUSY_MIN = 0.90
#: what a load generator prints when its measured window begins
WINDOW_START = "window-start"
#: the line prefix bench/all.py looks for
RESULT_PREFIX = "BENCH-RESULT "
#: default warm-up seconds: PyPy's JIT needs load before it compiles the hot paths
#: (a Twisted server's request path takes several seconds to reach full speed)
WARMUP_PYPY = 5.0
WARMUP_CPYTHON = 0.5


# -- options and interpreters --------------------------------------------------

def add_common_options(parser: argparse.ArgumentParser, seconds: float,
                       warmup_pypy: float = WARMUP_PYPY) -> None:
    """The options every bench script takes (see bench/README.md).

    ``warmup_pypy``: the default warm-up on PyPy; an in-process microbenchmark
    (one small loop) is compiled in well under a second and may ask for less.
    """
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter for the server and workload processes "
                             "(default: this one)")
    parser.add_argument("--seconds", type=float, default=seconds,
                        help="seconds per measurement (default %g)" % seconds)
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds of load before each measurement, for PyPy's JIT "
                             "(default %g on PyPy, %g on CPython)" % (warmup_pypy, WARMUP_CPYTHON))
    parser.set_defaults(warmup_pypy=warmup_pypy)
    parser.add_argument("--runs", type=int, default=3,
                        help="measured runs of each figure, alternating project and "
                             "baselines; the median is kept (default 3)")
    parser.add_argument("--json", action="store_true",
                        help="end with a line 'BENCH-RESULT {json}' (for bench/all.py)")


def finish_options(args: argparse.Namespace) -> argparse.Namespace:
    """Resolve ``--warmup`` from the target interpreter and record what it is."""
    info = interpreter(args.python)
    args.python_label = info["label"]
    args.is_pypy = info["implementation"] == "PyPy"
    if args.warmup is None:
        args.warmup = args.warmup_pypy if args.is_pypy else WARMUP_CPYTHON
    return args


_INTERPRETERS: Dict[str, Dict[str, str]] = {}
_PROBE = ("import platform, sys; print(platform.python_implementation(), "
          "platform.python_version(), sys.executable)")


def interpreter(python: str) -> Dict[str, str]:
    """Implementation and version of ``python`` (asked once, by running it)."""
    if python not in _INTERPRETERS:
        out = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True,
                             check=True, timeout=60).stdout.split()
        _INTERPRETERS[python] = {"implementation": out[0], "version": out[1],
                                 "label": "%s %s" % (out[0], out[1])}
    return _INTERPRETERS[python]


def header(title: str, args: argparse.Namespace, pinning: str = "") -> None:
    """One line saying what runs where, how long, and that the JIT was warmed."""
    if not PINNED:
        pinning = "not pinned (%s)" % ("CPUs 0 and 1 not both available" if HAS_TASKSET
                                       else "no taskset")
    elif not pinning:
        pinning = "server on CPU %d, load on CPU %d (taskset)" % (SERVER_CPU, LOAD_CPU)
    print("%s: %s (%s); %g s per measurement after %g s of warm-up load; %s" % (
        title, args.python_label, args.python, args.seconds, args.warmup, pinning), flush=True)


# -- child processes ------------------------------------------------------------

def pinned(cpu: int, argv: Sequence[str]) -> List[str]:
    """``argv`` run on one CPU with taskset (unchanged where there is none)."""
    return (["taskset", "-c", str(cpu)] if PINNED else []) + list(argv)


def child_env() -> Dict[str, str]:
    """This checkout first on the path: a stale installed twisted_aleph must not win."""
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=ROOT + (os.pathsep + path if path else ""))


def script_argv(python: str, script: str, *args: Any) -> List[str]:
    return [python, os.path.abspath(script)] + [str(a) for a in args]


def run_pinned(cpu: int, argv: Sequence[str], timeout: Optional[float] = None) -> str:
    """Run ``argv`` on ``cpu`` to the end; its stdout (stderr passes through).
    A non-zero exit is a RuntimeError naming the command."""
    proc = subprocess.run(pinned(cpu, argv), stdout=subprocess.PIPE, text=True,
                          env=child_env(), timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError("%s exited with %d: %s" % (
            " ".join(argv[:4]), proc.returncode, proc.stdout.strip()[-300:]))
    return proc.stdout


def last_line(out: str, prefix: str) -> str:
    """The rest of the last line of ``out`` that starts with ``prefix``."""
    for line in reversed(out.splitlines()):
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise RuntimeError("no %r line in: %r" % (prefix, out[-300:]))


def free_port() -> int:
    """A TCP port nobody listens on now (for a server that cannot be told port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    """A long-running child (a server) pinned to one CPU; a context manager.

    Without ``port`` it must print ``PORT <n>`` once it listens; ``port``
    holds the number. With ``port`` (a server run as shipped, e.g. by
    twistd), it is ready once that port accepts a connection, and its output
    goes to a file shown if it fails. ``control=True`` gives it a stdin pipe
    (``proc.stdin``) for a line protocol of the script's own; closing it is
    how such a child is stopped.
    """

    def __init__(self, argv: Sequence[str], cpu: int = SERVER_CPU,
                 ready_timeout: float = 60.0, control: bool = False,
                 port: Optional[int] = None) -> None:
        self.log = tempfile.TemporaryFile() if port is not None else None
        self.proc = subprocess.Popen(
            pinned(cpu, argv), stdout=self.log or subprocess.PIPE,
            stderr=subprocess.STDOUT if self.log else None, text=self.log is None,
            stdin=subprocess.PIPE if control else None, env=child_env())
        try:
            if port is None:
                self.port = int(self._read_line(ready_timeout, "PORT "))
            else:
                self.port = port
                self._wait_listening(ready_timeout)
        except BaseException:
            self.stop()
            raise

    @classmethod
    def server(cls, python: str, script: str, *args: Any, control: bool = False) -> "Child":
        return cls(script_argv(python, script, *args), control=control)

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                assert self.log is not None
                self.log.seek(0)
                said = self.log.read().decode("utf-8", "replace").strip()[-800:]
                raise RuntimeError("server %s (%s): %s" % (
                    "exited" if self.proc.poll() is not None else "not listening in time",
                    " ".join(self.proc.args[-8:]), said))  # type: ignore[index]
            time.sleep(0.05)  # a process starting up; nothing here is timed

    def _read_line(self, timeout: float, prefix: str) -> str:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise RuntimeError("child printed nothing in %g s" % timeout)
        line = self.proc.stdout.readline()
        if not line.startswith(prefix):
            raise RuntimeError("child did not start: %r" % line)
        return line[len(prefix):].strip()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the child has used so far."""
        return cpu_seconds(self.pid)

    def _status_kib(self, field: str) -> int:
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
        raise RuntimeError("no %s for pid %d" % (field, self.pid))

    def rss_kib(self) -> int:
        return self._status_kib("VmRSS:")

    def peak_rss_mb(self) -> float:
        return self._status_kib("VmHWM:") / 1024

    def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self.log is not None:
            self.log.close()

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far (Linux /proc).

    A load process reads its server's at the start and end of the measured
    window: CPU per message is steadier than messages/s on a shared machine."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- CPU over a measured window ------------------------------------------------------

def core_ticks() -> Dict[int, Tuple[int, int]]:
    """Per CPU: (busy ticks, all ticks) since boot, from /proc/stat (idle and
    iowait count as not busy)."""
    out: Dict[int, Tuple[int, int]] = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *fields = line.split()
                # user nice system idle iowait irq softirq steal
                ticks = [int(v) for v in fields[:8]]
                out[int(name[3:])] = (sum(ticks) - ticks[3] - ticks[4], sum(ticks))
    return out


def sched_ns(pid: int) -> Optional[Tuple[int, int]]:
    """(nanoseconds on a CPU, nanoseconds runnable but queued for one) of
    process ``pid``, summed over its threads (Linux /proc/<pid>/task/*/schedstat;
    None where the kernel keeps no such figures)."""
    running = waiting = 0
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
        for task in tasks:
            try:
                with open("/proc/%d/task/%s/schedstat" % (pid, task)) as f:
                    r, w = f.read().split()[:2]
            except FileNotFoundError:  # a thread that just ended
                continue
            running += int(r)
            waiting += int(w)
    except (OSError, ValueError):
        return None
    return running, waiting


class Sample:
    """CPU times at one instant: the server's, the load's, and every core's."""

    def __init__(self, server_pid: int, load_pid: Optional[int]) -> None:
        self.time = time.monotonic()
        self.server = cpu_seconds(server_pid)
        self.server_sched = sched_ns(server_pid)
        self.load = cpu_seconds(load_pid) if load_pid else 0.0
        self.load_sched = sched_ns(load_pid) if load_pid else None
        self.cores = core_ticks() if PINNED else {}


def _busy(start: Sample, end: Sample, cpu: int) -> Optional[float]:
    if cpu not in start.cores or cpu not in end.cores:
        return None
    busy = end.cores[cpu][0] - start.cores[cpu][0]
    total = end.cores[cpu][1] - start.cores[cpu][1]
    return busy / total if total > 0 else None


def _median(values: Sequence[Optional[float]]) -> Optional[float]:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


class Window:
    """CPU use over a measured window, as fractions of it: the server
    process's and the load process's CPU; how long each was runnable but
    queued behind other processes for its core (``queued``, ``load_queued``;
    summed over threads); and, when pinned, how busy the server's core (CPU 0)
    and the load's core (CPU 1) were, whatever ran there."""

    def __init__(self, seconds: float, server_cpu_seconds: float, server: float, load: float,
                 server_core: Optional[float], load_core: Optional[float],
                 demand: Optional[float] = None, queued: Optional[float] = None,
                 load_queued: Optional[float] = None) -> None:
        self.seconds = seconds
        self.server_cpu_seconds = server_cpu_seconds
        self.server = server
        self.load = load
        self.server_core = server_core
        self.load_core = load_core
        self.demand = demand
        self.queued = queued
        self.load_queued = load_queued

    @classmethod
    def between(cls, start: Sample, end: Sample) -> "Window":
        seconds = max(end.time - start.time, 1e-9)
        demand = queued = None
        if start.server_sched and end.server_sched:
            running = (end.server_sched[0] - start.server_sched[0]) / 1e9 / seconds
            queued = (end.server_sched[1] - start.server_sched[1]) / 1e9 / seconds
            demand = running + queued
        load_queued = None
        if start.load_sched and end.load_sched:
            # max: a thread that ended in the window takes its figures with it
            load_queued = max(0, end.load_sched[1] - start.load_sched[1]) / 1e9 / seconds
        return cls(seconds, end.server - start.server, (end.server - start.server) / seconds,
                   (end.load - start.load) / seconds,
                   _busy(start, end, SERVER_CPU), _busy(start, end, LOAD_CPU), demand, queued,
                   load_queued)

    @classmethod
    def median(cls, windows: Sequence["Window"]) -> "Window":
        return cls(statistics.median(w.seconds for w in windows),
                   statistics.median(w.server_cpu_seconds for w in windows),
                   statistics.median(w.server for w in windows),
                   statistics.median(w.load for w in windows),
                   _median([w.server_core for w in windows]),
                   _median([w.load_core for w in windows]),
                   _median([w.demand for w in windows]), _median([w.queued for w in windows]),
                   _median([w.load_queued for w in windows]))

    @property
    def server_busy(self) -> float:
        """How much of the window the server wanted its core: running or queued
        for it (from schedstat); without schedstat, how busy its core was
        (pinned) or the server's own share. The rest it spent waiting for work."""
        if self.demand is not None:
            return self.demand
        return self.server_core if self.server_core is not None else self.server

    @property
    def load_bound(self) -> bool:
        """The server waited for work more than a tenth of the window: the rate
        is the load generator's (or its window's latency), not the server's."""
        return self.server_busy < BUSY_MIN

    @property
    def shared(self) -> Optional[float]:
        """The part of the window other processes kept the server off its core,
        if notable (5% or more)."""
        if self.queued is not None:
            other = self.queued
        elif self.server_core is not None:
            other = self.server_core - self.server
        else:
            return None
        return other if other >= 0.05 else None

    def describe(self) -> str:
        server = "server process %.0f%%" % (self.server * 100)
        if self.queued is not None:
            server += ", queued %.0f%%" % (self.queued * 100)
        if self.server_core is not None:
            server = "server core %.0f%% (%s)" % (self.server_core * 100, server)
        load = "load process %.0f%%" % (self.load * 100)
        if self.load_queued is not None:
            load += ", queued %.0f%%" % (self.load_queued * 100)
        if self.load_core is not None:
            load = "load core %.0f%% (%s)" % (self.load_core * 100, load)
        return server + ", " + load

    def as_dict(self) -> Dict[str, Optional[float]]:
        def r(x: Optional[float]) -> Optional[float]:
            return None if x is None else round(x, 3)
        return {"server_busy": r(self.server_busy), "server": r(self.server),
                "server_queued": r(self.queued), "server_core": r(self.server_core),
                "load": r(self.load), "load_queued": r(self.load_queued),
                "load_core": r(self.load_core)}


def run_load(argv: Sequence[str], server_pid: int, end_prefix: str,
             start_prefix: Optional[str] = WINDOW_START, timeout: float = 600.0,
             env: Optional[Dict[str, str]] = None) -> Tuple[str, Window]:
    """Run a load generator pinned to the load CPU to its end.

    Returns its stdout and the CPU :class:`Window` from the line starting with
    ``start_prefix`` (None: from its start) to the line starting with
    ``end_prefix`` (its result line, printed as its window ends). A non-zero
    exit or a missing line is a RuntimeError saying what the generator said."""
    errors = tempfile.TemporaryFile()
    proc = subprocess.Popen(pinned(LOAD_CPU, argv), stdout=subprocess.PIPE, stderr=errors,
                            text=True, env=env if env is not None else child_env())
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    first = Sample(server_pid, proc.pid) if start_prefix is None else None
    last = None
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if first is None and start_prefix is not None and line.startswith(start_prefix):
                first = Sample(server_pid, proc.pid)
            elif first is not None and last is None and line.startswith(end_prefix):
                last = Sample(server_pid, proc.pid)
            lines.append(line)
        proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    out = "".join(lines)
    if proc.returncode != 0 or first is None or last is None:
        errors.seek(0)
        said = (errors.read().decode("utf-8", "replace") + out).strip()
        errors.close()
        raise RuntimeError("%s exited with %d: %s" % (
            os.path.basename(argv[0]), proc.returncode, said[-400:] or "nothing printed"))
    errors.close()
    return out, Window.between(first, last)


def result_fields(out: str, prefix: str) -> Dict[str, float]:
    """The ``key=value`` pairs of the last line of ``out`` starting with
    ``prefix`` (a generator's result line), values as numbers."""
    out_fields = {}
    for item in (prefix + last_line(out, prefix)).split():
        key, sep, value = item.partition("=")
        if sep:
            try:
                out_fields[key] = float(value)
            except ValueError:
                pass
    return out_fields


class Run:
    """One measured window of one server: its rate and the server's CPU
    microseconds per counted unit (message, request, delivery)."""

    def __init__(self, rate: float, count: float, window: Window) -> None:
        self.rate = rate
        self.window = window
        self.server_us = window.server_cpu_seconds * 1e6 / max(count, 1)


class Outcome:
    """A figure for one server: the medians of its runs."""

    def __init__(self, runs: Sequence[Run]) -> None:
        self.runs = list(runs)
        self.rate = statistics.median(r.rate for r in runs)
        self.server_us = statistics.median(r.server_us for r in runs)
        self.window = Window.median([r.window for r in runs])

    @property
    def load_bound(self) -> bool:
        return self.window.load_bound


def alternate(variants: Sequence[str], runs: int, measure: Callable[[str], Run],
              labels: Dict[str, str], unit: str, per: str) -> Dict[str, Outcome]:
    """``runs`` rounds of ``measure(variant)`` for every variant in turn
    (project, baseline, project, baseline, ...: noise from elsewhere hits all
    alike), each run printed; the medians per variant."""
    done: Dict[str, List[Run]] = {v: [] for v in variants}
    width = max(len(labels[v]) for v in variants)
    for i in range(runs):
        for v in variants:
            run = measure(v)
            done[v].append(run)
            print("  run %d/%d  %-*s %s%s" % (
                i + 1, runs, width, labels[v], _figures(run.rate, run.server_us, unit, per,
                                                        run.window),
                _marker(run.window)), flush=True)
    return {v: Outcome(rs) for v, rs in done.items()}


def _marker(window: Window) -> str:
    if not window.load_bound:
        return ""
    if (window.load_queued or 0.0) >= 0.05:
        return "  <- load-bound (the load starved of its core)"
    return "  <- load-bound"


def _figures(rate: float, server_us: float, unit: str, per: str, window: Window) -> str:
    return "%12s %s %7.2f server CPU us/%s | %s" % (
        f"{rate:,.0f}", unit, server_us, per, window.describe())


def print_outcomes(outcomes: Dict[str, Outcome], labels: Dict[str, str], unit: str,
                   per: str) -> None:
    """The medians, one line per server."""
    runs = len(next(iter(outcomes.values())).runs)
    print("  median of %d:" % runs)
    width = max(len(labels[v]) for v in outcomes)
    for v, o in outcomes.items():
        print("    %-*s %s" % (width, labels[v], _figures(o.rate, o.server_us, unit, per,
                                                          o.window)))


def load_bound_note(project: Outcome, baseline: Outcome) -> str:
    """"" when both servers were kept busy, else what the figure measured."""
    bound = [(who, o.window.server_busy) for who, o in (("project", project),
                                                         ("baseline", baseline))
             if o.load_bound]
    if not bound:
        return ""
    note = "load-bound: " + ", ".join("%s server busy %.0f%%" % (who, busy * 100)
                                      for who, busy in bound)
    starved = max(o.window.load_queued or 0.0 for o in (project, baseline))
    if starved >= 0.05:
        note += " (other processes kept the load off its core %.0f%%)" % (starved * 100)
    return note


def print_ratio(project_label: str, baseline_label: str, project: Outcome,
                baseline: Outcome, goal: str = "") -> Optional[float]:
    """The project/baseline ratio of the medians, or "load-bound" (None)."""
    note = load_bound_note(project, baseline)
    if note:
        print("  %s / %s: %s" % (project_label, baseline_label, note))
        return None
    ratio = project.rate / baseline.rate
    shared = [o.window.shared for o in (project, baseline) if o.window.shared]
    extra = ("  (noisy: other processes kept a server off its core %.0f%% of the window)"
             % (max(shared) * 100) if shared else "")
    print("  %s / %s: %.2f%s (server CPU per unit: %.2f)%s" % (
        project_label, baseline_label, ratio, " " + goal if goal else "",
        project.server_us / baseline.server_us, extra))
    return ratio


def print_port(port: int) -> None:
    """What a server child prints once it listens (see :class:`Child`)."""
    print("PORT %d" % port, flush=True)


def raise_fd_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: thousands of sockets per process."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# -- results ------------------------------------------------------------------

class Results:
    """A bench's figures: printed as ``BENCH-RESULT {json}`` for bench/all.py.

    Each row is twisted_aleph's figure and its raw-Twisted (or PyPI) baseline's
    in one unit; ``better`` says which way is good ("higher" for rates,
    "lower" for latency and CPU per request). ``baseline`` may be None (no
    baseline on this interpreter); ``note`` flags what the numbers do not say
    (e.g. "4998/5000 answered").
    """

    def __init__(self, bench: str, args: argparse.Namespace) -> None:
        self.bench = bench
        self.args = args
        self.rows: List[Dict[str, Any]] = []

    def add(self, name: str, project: Optional[float], baseline: Optional[float], unit: str,
            better: str = "higher", note: str = "") -> None:
        ratio = project / baseline if project is not None and baseline else None
        self.rows.append({"name": name, "project": project, "baseline": baseline,
                          "unit": unit, "ratio": ratio, "better": better, "note": note})

    def compare(self, name: str, project: Outcome, baseline: Outcome, unit: str,
                per: str) -> None:
        """Two rows from measured figures: the rate and the server's CPU per
        unit. Either server's core under :data:`BUSY_MIN` busy makes both
        ratios None, noted "load-bound: ..."; each row carries both windows."""
        note = load_bound_note(project, baseline)
        shared = [o.window.shared for o in (project, baseline) if o.window.shared]
        if not note and shared:
            note = "noisy: other processes kept a server off its core %.0f%% of the window" % (
                max(shared) * 100)  # type: ignore[type-var]
        cpu = {"project": project.window.as_dict(), "baseline": baseline.window.as_dict(),
               "runs": len(project.runs)}
        self.add(name, project.rate, baseline.rate, unit, note=note)
        self.rows[-1]["cpu"] = cpu
        self.add(name + " server CPU", project.server_us, baseline.server_us, "us/" + per,
                 better="lower", note=note)
        self.rows[-1]["cpu"] = cpu
        if note.startswith("load-bound"):
            self.rows[-1]["ratio"] = self.rows[-2]["ratio"] = None

    def emit(self) -> None:
        """Print the result line (only with ``--json``)."""
        if not self.args.json:
            return
        print(RESULT_PREFIX + json.dumps({
            "bench": self.bench, "python": self.args.python_label,
            "warmup": self.args.warmup, "seconds": self.args.seconds,
            "rows": self.rows}, separators=(",", ":")), flush=True)


def report_rate_after(reactor: Any, counter: List[int], warmup: float, seconds: float,
                      server_pid: int) -> None:
    """In a Python load process: after ``warmup`` s print ``window-start``,
    count ``counter[0]`` for ``seconds`` s, then print ``RATE <per second>
    <server CPU us per count>`` and stop the reactor. :func:`read_rate` parses
    it; :func:`run_load` samples CPU times at the two lines."""
    import time

    marks: List[Any] = []

    def start() -> None:
        print(WINDOW_START, flush=True)
        marks.append((time.perf_counter(), counter[0], cpu_seconds(server_pid)))
        reactor.callLater(seconds, stop)

    def stop() -> None:
        t0, c0, cpu0 = marks[0]
        n = counter[0] - c0
        cpu_us = (cpu_seconds(server_pid) - cpu0) * 1e6 / max(n, 1)
        print(f"RATE {n / (time.perf_counter() - t0):.1f} {cpu_us:.3f}", flush=True)
        reactor.stop()

    reactor.callLater(warmup, start)


def read_rate(out: str) -> Any:
    """(per second, server CPU us per count) from a load process's output."""
    rate, cpu_us = last_line(out, "RATE ").split()
    return float(rate), float(cpu_us)


HELLO = b"hello world!"


def quiet_site(root: Any) -> Any:
    """A twisted.web Site that writes no access log (the baselines' site)."""
    from twisted.web.server import Site

    class QuietSite(Site):
        def log(self, request: Any) -> None:
            pass
    return QuietSite(root)


def hello_resource() -> Any:
    """The raw twisted.web baseline's leaf: GET answers ``hello world!``."""
    from twisted.web import resource

    class Hello(resource.Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> bytes:
            request.setHeader(b"content-type", b"text/plain")
            return HELLO
    return Hello()
