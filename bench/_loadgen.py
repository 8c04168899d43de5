"""The load generators: found or built at bench time, each faster than the server.

A Python load generator on one core tops out near the rate of the Python
server it drives, so a comparison made with it measures the generator. The
benches use instead:

* ``tcp_frames`` and ``udp_blast``: small event-driven C programs whose
  sources are ``bench/loadgen/*.c``, compiled with ``cc -O2`` (``$CC`` if
  set) into ``bench/.build/`` the first time they are needed (again whenever
  the source changes: the binary's name carries the source's hash);
* ``ws_load.js``: node with the npm package ``ws``, installed by ``npm`` into
  ``bench/.build/node/`` the first time it is needed;
* ``wrk`` for HTTP (Debian's ``wrk``).

Each missing tool is a :class:`Unavailable` error saying what to install.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from typing import Callable, Dict, List, Optional, Tuple

import _harness

SOURCES = os.path.join(_harness.HERE, "loadgen")
BUILD = os.path.join(_harness.HERE, ".build")
#: the ws release line ws_load.js is written against
WS_PACKAGE = "ws@8"


class Unavailable(RuntimeError):
    """A load generator cannot run here; the message says what to install."""


def c_generator(name: str) -> str:
    """The path of ``bench/loadgen/<name>.c`` compiled, built now if needed."""
    source = os.path.join(SOURCES, name + ".c")
    with open(source, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    binary = os.path.join(BUILD, "%s-%s" % (name, digest))
    if os.path.exists(binary):
        return binary
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        raise Unavailable("bench/loadgen/%s.c needs a C compiler to build: no %r on PATH "
                          "(apt-get install gcc, or set CC)" % (name, cc))
    os.makedirs(BUILD, exist_ok=True)
    sys.stderr.write("building bench/loadgen/%s.c (%s -O2) into bench/.build/\n" % (name, cc))
    partial = binary + ".tmp%d" % os.getpid()
    proc = subprocess.run([cc, "-O2", "-Wall", "-o", partial, source],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise Unavailable("building bench/loadgen/%s.c with %s failed:\n%s"
                          % (name, cc, proc.stderr.strip()))
    os.replace(partial, binary)
    return binary


def node_ws() -> Tuple[List[str], Dict[str, str]]:
    """(argv prefix, environment) to run ``bench/loadgen/ws_load.js`` with node,
    the npm package ``ws`` installed into ``bench/.build/node`` if needed."""
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        raise Unavailable("the WebSocket load needs node and npm (apt-get install nodejs npm)")
    prefix = os.path.join(BUILD, "node")
    modules = os.path.join(prefix, "node_modules")
    if not os.path.exists(os.path.join(modules, "ws", "package.json")):
        npm = shutil.which("npm")
        if npm is None:
            raise Unavailable("the WebSocket load needs the npm package ws and npm to "
                              "install it (apt-get install npm)")
        os.makedirs(prefix, exist_ok=True)
        sys.stderr.write("installing the npm package %s into bench/.build/node/\n" % WS_PACKAGE)
        proc = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--no-save",
                               "--prefix", prefix, WS_PACKAGE], capture_output=True, text=True)
        if proc.returncode != 0:
            raise Unavailable("npm install %s failed:\n%s" % (WS_PACKAGE, proc.stderr.strip()))
    env = dict(_harness.child_env(), NODE_PATH=modules)
    return [node, os.path.join(SOURCES, "ws_load.js")], env


def wrk() -> Tuple[List[str], Optional[str]]:
    """(argv prefix running ``wrk``, the line starting its measured window).

    With coreutils' ``stdbuf`` its output is line-buffered, so its "Running"
    line marks the start of its window as it happens; without, the window is
    taken from its start (a few connections' set-up more)."""
    path = shutil.which("wrk")
    if path is None:
        raise Unavailable("the HTTP load needs wrk (apt-get install wrk)")
    stdbuf = shutil.which("stdbuf")
    if stdbuf is None:
        return [path], None
    return [stdbuf, "-oL", path], "Running"


def run_main(main: Callable[[], None]) -> None:
    """Run a bench's ``main``; a missing load generator ends it with its message
    (exit status 2), not a traceback."""
    try:
        main()
    except Unavailable as e:
        sys.stderr.write("%s: %s\n" % (os.path.basename(sys.argv[0]), e))
        sys.exit(2)
