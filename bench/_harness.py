"""What every bench script shares: options, interpreters, pinned child processes, results.

A bench script is an orchestrator (run by any Python) that starts its server and
load processes under ``--python`` with this checkout first on ``PYTHONPATH``,
servers pinned to CPU 0 and load to CPU 1 with ``taskset`` when it exists, and
prints its figures; with ``--json`` its last line is ``BENCH-RESULT {json}``,
which ``bench/all.py`` collects into one table. Nothing here is timed: the cost
is a few process starts per figure.

Usage, in a script::

    args = _harness.parse_args(parser)          # adds --python --seconds --warmup --json
    with _harness.Child.server(args.python, __file__, "--role", "server") as server:
        ... server.port, server.cpu_seconds(), server.peak_rss_mb() ...
    results = _harness.Results("http", args)
    results.add("/hello", project=..., baseline=..., unit="req/s")
    results.emit()
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import subprocess
import sys
from typing import Any, Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SERVER_CPU = 0
LOAD_CPU = 1
HAS_TASKSET = shutil.which("taskset") is not None
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
    if not HAS_TASKSET:
        pinning = "not pinned (no taskset)"
    elif not pinning:
        pinning = "server on CPU %d, load on CPU %d (taskset)" % (SERVER_CPU, LOAD_CPU)
    print("%s: %s (%s); %g s per measurement after %g s of warm-up load; %s" % (
        title, args.python_label, args.python, args.seconds, args.warmup, pinning), flush=True)


# -- child processes ------------------------------------------------------------

def pinned(cpu: int, argv: Sequence[str]) -> List[str]:
    """``argv`` run on one CPU with taskset (unchanged where there is none)."""
    return (["taskset", "-c", str(cpu)] if HAS_TASKSET else []) + list(argv)


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


class Child:
    """A long-running child (a server) pinned to one CPU; a context manager.

    It must print ``PORT <n>`` once it listens; ``port`` holds the number.
    ``control=True`` gives it a stdin pipe (``proc.stdin``) for a line
    protocol of the script's own; closing it is how such a child is stopped.
    """

    def __init__(self, argv: Sequence[str], cpu: int = SERVER_CPU,
                 ready_timeout: float = 60.0, control: bool = False) -> None:
        self.proc = subprocess.Popen(pinned(cpu, argv), stdout=subprocess.PIPE, text=True,
                                     stdin=subprocess.PIPE if control else None,
                                     env=child_env())
        try:
            self.port = int(self._read_line(ready_timeout, "PORT "))
        except BaseException:
            self.stop()
            raise

    @classmethod
    def server(cls, python: str, script: str, *args: Any, control: bool = False) -> "Child":
        return cls(script_argv(python, script, *args), control=control)

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

    def emit(self) -> None:
        """Print the result line (only with ``--json``)."""
        if not self.args.json:
            return
        print(RESULT_PREFIX + json.dumps({
            "bench": self.bench, "python": self.args.python_label,
            "warmup": self.args.warmup, "seconds": self.args.seconds,
            "rows": self.rows}, separators=(",", ":")), flush=True)


def hello_keepalive_factory(counter: List[int], host: str = "localhost") -> Any:
    """A Twisted client factory for wrk's stand-in: each connection pipelines
    ``GET /hello`` and sends one more for every ``hello world!`` answer,
    counting answers in ``counter[0]``. Wrap it in TLSMemoryBIOFactory for TLS."""
    import re

    from twisted.internet import protocol

    request = b"GET /hello HTTP/1.1\r\nHost: " + host.encode("ascii") + b"\r\n\r\n"
    body = b"hello world!"
    end_of_response = re.compile(rb"\r\n\r\n" + re.escape(body))

    class KeepAlive(protocol.Protocol):
        buf = b""

        def connectionMade(self) -> None:
            self.transport.write(request)

        def dataReceived(self, data: bytes) -> None:
            self.buf += data
            n = len(end_of_response.findall(self.buf))
            if n:
                self.buf = self.buf[self.buf.rfind(body) + len(body):]
                counter[0] += n
                self.transport.write(request * n)

    return protocol.ClientFactory.forProtocol(KeepAlive)


def report_rate_after(reactor: Any, counter: List[int], warmup: float, seconds: float,
                      server_pid: int) -> None:
    """In a load process: after ``warmup`` s, count ``counter[0]`` for
    ``seconds`` s, then print ``RATE <per second> <server CPU us per count>``
    and stop the reactor. :func:`read_rate` parses it."""
    import time

    marks: List[Any] = []

    def start() -> None:
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
