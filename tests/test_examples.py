"""Every example in examples/ runs as a script and prints what Aleph's annotated examples show
after each ``;=>`` (tcp, udp, websocket, http_demo: the seed's four demonstrations)."""

from __future__ import annotations

import os
import sys
from typing import Tuple

from twisted.internet import utils
from twisted.trial import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


async def run_example(name: str) -> Tuple[str, str, int]:
    """Run ``python examples/<name>`` from the examples directory (so that its own
    directory is first on sys.path, as for a user): (stdout, stderr, exit status)."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out, err, code = await utils.getProcessOutputAndValue(
        sys.executable, [name], env=env, path=os.path.join(ROOT, "examples"))
    return out.decode("utf-8"), err.decode("utf-8", "replace"), code


class ExampleTests(unittest.TestCase):
    timeout = 120

    async def test_tcp(self) -> None:
        out, err, code = await run_example("tcp.py")
        self.assertEqual(code, 0, err[-2000:])
        self.assertEqual(out.count("@(s/put! c 1)  ; => true\n"), 3)
        self.assertEqual(out.count("@(s/take! c)   ; => 2\n"), 3)

    async def test_udp(self) -> None:
        out, err, code = await run_example("udp.py")
        self.assertEqual(code, 0, err[-2000:])
        self.assertIn("{'a': 1, 'b': 2}\n", out)

    async def test_websocket(self) -> None:
        out, err, code = await run_example("websocket.py")
        self.assertEqual(code, 0, err[-2000:])
        self.assertIn(repr([str(i) for i in range(10)]) + "\n", out)
        self.assertEqual(out.count("Alice: hello\n"), 2)
        self.assertEqual(out.count("Bob: hi!\n"), 2)

    async def test_http_demo(self) -> None:
        """It shadows no standard library module (the examples directory is first on sys.path)
        and ends with the seed's TLS client-auth demonstration."""
        out, err, code = await run_example("http_demo.py")
        self.assertEqual(code, 0, err[-2000:])
        self.assertIn("'hello world!'\n(beat) 'hello world!'\n", out)
        self.assertIn("[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n", out)
        self.assertIn("(mutual TLS) 'hello world!'\n", out)
        self.assertIn("(no client certificate) refused: TLS with https://localhost:", out)

    def test_no_example_shadows_the_standard_library(self) -> None:
        stdlib = getattr(sys, "stdlib_module_names", None)
        if stdlib is None:
            raise unittest.SkipTest("sys.stdlib_module_names is Python 3.10+")
        names = {f[:-3] for f in os.listdir(os.path.join(ROOT, "examples")) if f.endswith(".py")}
        self.assertEqual(names & set(stdlib), set())
