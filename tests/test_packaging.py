"""
Packaging and architecture checks: what a `pip install` gives a user, and the layering rules.

- importing any twisted_aleph module never installs a reactor (a library must let the application
  choose its reactor: twistd, trial and asyncio-reactor users install their own first);
- the floors rule: a module imports only from its own floor or lower ones (checked with `ast` over the
  source, so an import inside a function counts too);
- no import circle among twisted_aleph's modules, counting imports made at import time and those
  inside functions alike (not those under `if TYPE_CHECKING:`, which never run);
- only `tap/` (the twistd commands) imports `twisted.python.usage`;
- one exception to the floors and circles rules: a deprecated-alias shim, a module-level
  `__getattr__` (PEP 562) that warns with DeprecationWarning, may import a name's new home lazily,
  even from a higher floor. It runs only when someone uses an old name (e.g.
  `twisted_aleph.tls.ServerTLSOptions`, now in `tap/`), never when the library runs, and goes away
  with the alias; any other upward or circular import still fails;
- transports and faces build on streams through `twisted_aleph.stream` (the facade) and
  `twisted_aleph.stream.core` (the interface for implementers) only, never through the modules
  behind them (`default`, `graph`, `operators`...), as Manifold's transports build on
  `manifold.stream.core`;
- every source file parses as Python 3.9 (PyPy) and has `from __future__ import annotations` wherever
  it annotates;
- `twistd --help` lists the aleph-* plugins whose files exist in twisted/plugins/.

Subprocess checks run with the current interpreter, so the suite checks CPython and PyPy alike.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional, Set, Tuple

from twisted.trial import unittest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "twisted_aleph"
PLUGINS = ROOT / "twisted" / "plugins"

# The floors (lowest first). A module may import from its floor or below, never above.
# Sub-packages take their top-level name's floor (twisted_aleph.http.server -> "http").
FLOORS: Dict[str, float] = {
    # 1: pure, sans-IO: codecs and parsers
    "edn": 1,
    "codec": 1,
    "statsd_protocol": 1,
    "resp": 1,
    # 2: the Manifold-style primitives
    "deferred": 2,
    "stream": 2,
    "bus": 2,
    "peerlog": 2,
    "bytestreams": 2,
    # 3: transports and servers
    "tcp": 3,
    "udp": 3,
    "statsd": 3,
    "http": 3,
    "tls": 3,
    "server": 3,
    "redisbus": 3,
    "workers": 3,
    # 3.5: the seed's handlers, used by plugins, examples, bench and tests only
    "demo": 3.5,
    # 3.75: the twistd commands' options and services; only the plugin files import it
    "tap": 3.75,
}

# Outside it, modules use only its facade and `core` (see StreamInterfaceTests).
STREAM_PACKAGE = "twisted_aleph.stream"

PLUGIN_NAMES = {
    "aleph_tcp.py": "aleph-tcp",
    "aleph_http.py": "aleph-http",
    "aleph_statsd.py": "aleph-statsd",
}

FLOOR_ONE_MODULES = ["edn", "codec", "statsd_protocol", "resp"]


def floor_name(module: str) -> str:
    """'twisted_aleph.http.server' -> 'http'; '' for the package root itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def source_files(*roots: Path) -> Iterator[Path]:
    for root in roots:
        if root.is_file():
            yield root
        elif root.is_dir():
            for path in sorted(root.rglob("*.py")):
                if "__pycache__" not in path.parts and "_trial_temp" not in str(path):
                    yield path


def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> List[str]:
    return [module_name(p) for p in source_files(PACKAGE)]


def resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    """Absolute name of the module a `from ... import` refers to."""
    if node.level == 0:
        return node.module or ""
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


class Import(NamedTuple):
    """One import statement: `import module` (names empty) or `from module import names`."""

    module: str
    names: Tuple[str, ...]
    line: int
    at_import_time: bool
    in_alias_shim: bool


def is_alias_shim(node: ast.AST) -> bool:
    """A module-level `def __getattr__` that warns with DeprecationWarning (PEP 562 aliases)."""
    return (
        isinstance(node, ast.FunctionDef)
        and node.name == "__getattr__"
        and any(isinstance(n, ast.Name) and n.id == "DeprecationWarning" for n in ast.walk(node))
    )


def imports(path: Path, root: Path = ROOT) -> Iterator[Import]:
    """Every import statement in the file, with its absolute module name.

    Imports under `if TYPE_CHECKING:` are type-only and skipped; imports inside a function are
    marked lazy (not at import time), and those inside a deprecated-alias shim marked as such.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    current = module_name(path, root)
    is_package = path.name == "__init__.py"

    def visit(node: ast.AST, lazy: bool, shim: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.dump(child.test):
                for sub in child.orelse:
                    yield from visit(sub, lazy, shim)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(alias.name, (), child.lineno, not lazy, shim)
            elif isinstance(child, ast.ImportFrom):
                names = tuple(alias.name for alias in child.names)
                yield Import(resolve(current, is_package, child), names, child.lineno, not lazy,
                             shim)
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from visit(child, inner, shim or (node is tree and is_alias_shim(child)))

    yield from visit(tree, False, False)


def imported_modules(path: Path, root: Path = ROOT) -> Iterator[Tuple[str, int, bool]]:
    """(absolute module, line, at_import_time) for every import in the file, deprecated-alias
    shims included. `from twisted_aleph import edn` yields twisted_aleph and twisted_aleph.edn."""
    for imp in imports(path, root):
        yield imp.module, imp.line, imp.at_import_time
        for name in imp.names:
            yield imp.module + "." + name, imp.line, imp.at_import_time


def import_graph(paths: List[Path], root: Path = ROOT) -> Dict[str, Set[str]]:
    """{twisted_aleph module: the twisted_aleph modules it imports}, at import time or lazily,
    without deprecated-alias shims. `from package import name` imports package.name when that is a
    module (Python imports the submodule, whether or not the package has finished importing),
    else package."""
    modules = {module_name(p, root) for p in paths}

    def owner(name: str) -> Optional[str]:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: Dict[str, Set[str]] = {m: set() for m in modules}
    for path in paths:
        me = module_name(path, root)
        for imp in imports(path, root):
            if imp.in_alias_shim:
                continue
            targets = [imp.module + "." + n for n in imp.names] if imp.names else [imp.module]
            for target in targets:
                found = owner(target) if target.startswith("twisted_aleph") else None
                if found is not None and found != me:
                    graph[me].add(found)
    return graph


def import_circles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The import circles of `graph`: its strongly connected components of more than one module
    (Tarjan's algorithm), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    circles: List[List[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(circles)


def stream_internals() -> Set[str]:
    """The stream package's modules behind its facade and its core."""
    return {p.stem for p in (PACKAGE / "stream").glob("*.py")} - {"__init__", "core"}


def stream_internal_uses(path: Path, root: Path = ROOT) -> List[Tuple[str, int]]:
    """(what, line) for each use of the stream package's internals in ``path``: an import of
    ``twisted_aleph.stream.<internal>`` (or of ``<internal>`` from ``twisted_aleph.stream``), or an
    attribute ``<stream>.<internal>`` on a name the module bound to ``twisted_aleph.stream``."""
    internals = stream_internals()
    found = []
    for target, line, _ in imported_modules(path, root):
        if target.startswith(STREAM_PACKAGE + "."):
            if target.split(".")[2] in internals:
                found.append((target, line))
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "twisted_aleph" and node.level == 0:
            names.update(a.asname or a.name for a in node.names if a.name == "stream")
        elif isinstance(node, ast.Import):
            names.update(a.asname for a in node.names if a.name == STREAM_PACKAGE and a.asname)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr in internals
                and isinstance(node.value, ast.Name) and node.value.id in names):
            found.append((f"{node.value.id}.{node.attr}", node.lineno))
    return found


def run_python(code: str, timeout: float = 120) -> "subprocess.CompletedProcess[str]":
    """Run code with this interpreter, from the checkout root, seeing the same sys.path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=str(ROOT),
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# Run in a fresh interpreter: import each module in turn and report the first one whose import
# installs the reactor, with the file and line that imported twisted.internet.reactor.
# Modules in `tolerated` (third-party code known to import the reactor itself) are imported
# first, then the reactor is removed again so the project's own modules are still checked.
IMPORT_CHECK = """
import importlib, sys, traceback
modules, tolerated = %r, %r
seen = []

class ReactorImportSpy:
    def find_spec(self, name, path=None, target=None):
        if name == "twisted.internet.reactor" and not seen:
            frames = [f for f in traceback.extract_stack()[:-1] if "<frozen" not in f.filename]
            seen.append("%%s:%%s" %% (frames[-1].filename, frames[-1].lineno))
        return None

sys.meta_path.insert(0, ReactorImportSpy())
for name in tolerated:
    try:
        importlib.import_module(name)
    except ImportError:
        continue
    if "twisted.internet.reactor" in sys.modules:
        import twisted.internet
        del sys.modules["twisted.internet.reactor"]
        del twisted.internet.reactor
    del seen[:]
for name in modules:
    importlib.import_module(name)
    if "twisted.internet.reactor" in sys.modules:
        print("REACTOR-INSTALLED-BY %%s (imported at %%s)" %% (name, seen and seen[0]))
        sys.exit(3)
print("OK")
"""

# Third-party modules that install the default reactor when imported: klein/_app.py does
# `from twisted.internet import reactor` at module level. Library modules importing them are
# tolerated; twistd plugin files are not (see TwistdPluginTests.test_plugin_files_import_no_reactor).
TOLERATED_REACTOR_IMPORTERS = ["klein"]


def check_imports(modules: List[str], tolerated: List[str]) -> "subprocess.CompletedProcess[str]":
    return run_python(IMPORT_CHECK % (modules, tolerated))


class ImportSideEffectTests(unittest.TestCase):
    """Importing the library never installs a reactor (the application picks its reactor)."""

    def assert_imports_cleanly(self, modules: List[str], tolerated: List[str]) -> None:
        result = check_imports(modules, tolerated)
        self.assertEqual(
            result.returncode,
            0,
            f"importing {modules} failed or installed a reactor:\n"
            f"{result.stdout}{result.stderr[-3000:]}",
        )
        self.assertIn("OK", result.stdout)

    def test_floor_one_modules(self) -> None:
        """edn, codec, statsd_protocol (and resp) import without a reactor, strictly."""
        present = [
            "twisted_aleph." + name
            for name in FLOOR_ONE_MODULES
            if (PACKAGE / (name + ".py")).exists() or (PACKAGE / name).is_dir()
        ]
        if not present:
            raise unittest.SkipTest("no floor-1 module exists yet")
        self.assert_imports_cleanly(present, tolerated=[])

    def test_every_module(self) -> None:
        """Every module under twisted_aleph imports, lowest floors first, and installs no reactor."""
        modules = sorted(all_modules(), key=lambda m: (FLOORS.get(floor_name(m), 0), m))
        self.assertIn("twisted_aleph.stream", modules)
        self.assert_imports_cleanly(modules, TOLERATED_REACTOR_IMPORTERS)

    def test_check_names_the_importer(self) -> None:
        """The check can fail, and says which file imported the reactor."""
        result = check_imports(["twisted.internet.reactor"], [])
        self.assertEqual(result.returncode, 3, result.stderr)
        self.assertIn("REACTOR-INSTALLED-BY twisted.internet.reactor", result.stdout)

    def test_tolerated_importer_does_not_hide_later_ones(self) -> None:
        """After a tolerated third-party import, a reactor import by a module is still caught."""
        result = check_imports(["twisted.internet.reactor"], TOLERATED_REACTOR_IMPORTERS)
        self.assertEqual(result.returncode, 3, result.stderr)


class FloorsTests(unittest.TestCase):
    """No module imports from a higher floor (demo and tap: nothing in the library imports them),
    and no import runs in a circle; deprecated-alias shims excepted (see the module docstring)."""

    def violations(self, root: Path = ROOT) -> List[str]:
        found = []
        for path in source_files(root / "twisted_aleph"):
            me = module_name(path, root)
            my_floor_name = floor_name(me)
            if my_floor_name == "":
                continue  # the package root's __init__ only carries the version
            my_floor = FLOORS[my_floor_name]
            for imp in imports(path, root):
                if imp.in_alias_shim:
                    continue
                for target in [imp.module] + [imp.module + "." + n for n in imp.names]:
                    problem = self.upward(me, my_floor, target)
                    if problem:
                        found.append(f"{path.relative_to(root)}:{imp.line}: {problem}")
        return sorted(set(found))

    @staticmethod
    def upward(me: str, my_floor: float, target: str) -> str:
        """Why importing `target` from `me` breaks the floors rule, or ''."""
        if not target.startswith("twisted_aleph."):
            return ""
        their_floor_name = floor_name(target)
        their_floor = FLOORS.get(their_floor_name)
        if their_floor is None or their_floor <= my_floor:
            return ""  # unknown names here are attributes (checked via module list)
        return f"{me} (floor {my_floor}) imports {target} (floor {their_floor})"

    def test_every_module_has_a_floor(self) -> None:
        """A new top-level module must be given a floor in FLOORS (this file)."""
        missing = sorted(
            {floor_name(m) for m in all_modules() if floor_name(m) and floor_name(m) not in FLOORS}
        )
        self.assertEqual(missing, [], "add these to FLOORS in tests/test_packaging.py")

    def test_no_module_imports_from_a_higher_floor(self) -> None:
        self.assertEqual(self.violations(), [])

    def test_checker_sees_upward_imports(self) -> None:
        """The ast walk finds module-level, relative and in-function imports."""
        sample = PACKAGE / "codec.py"
        src = (
            "from __future__ import annotations\n"
            "from twisted_aleph import tcp\n"
            "from .stream import Stream\n"
            "def f():\n"
            "    import twisted_aleph.demo\n"
        )
        tmp = Path(self.mktemp())
        tmp.mkdir()
        fake = tmp / "twisted_aleph" / sample.name
        fake.parent.mkdir()
        fake.write_text(src, encoding="utf-8")
        found = list(imported_modules(fake, root=tmp))
        self.assertIn(("twisted_aleph.tcp", 2, True), found)
        self.assertIn(("twisted_aleph.stream", 3, True), found)
        self.assertIn(("twisted_aleph.demo", 5, False), found)

    def write_package(self, files: Dict[str, str]) -> Tuple[Path, List[Path]]:
        """A throwaway twisted_aleph package made of `files` ({name: source})."""
        tmp = Path(self.mktemp())
        (tmp / "twisted_aleph").mkdir(parents=True)
        paths = []
        for name, text in files.items():
            path = tmp / "twisted_aleph" / name
            path.write_text(text, encoding="utf-8")
            paths.append(path)
        return tmp, paths

    def test_only_a_warning_module_getattr_is_an_alias_shim(self) -> None:
        """A module-level __getattr__ that warns with DeprecationWarning is an alias shim; one that
        does not warn, or a __getattr__ elsewhere, is an ordinary function."""
        tmp, [path] = self.write_package({"tls.py": (
            "import warnings\n"
            "def __getattr__(name):\n"
            "    from twisted_aleph.tap import options\n"
            "    warnings.warn('moved', DeprecationWarning)\n"
            "    return getattr(options, name)\n"
            "class C:\n"
            "    def __getattr__(self, name):\n"
            "        from twisted_aleph.tap import http\n"
            "        raise DeprecationWarning(name)\n"
        )})
        shim = {(imp.module, imp.in_alias_shim, imp.at_import_time)
                for imp in imports(path, root=tmp) if imp.module.startswith("twisted_aleph")}
        self.assertEqual(shim, {("twisted_aleph.tap", True, False),
                                ("twisted_aleph.tap", False, False)})
        tmp, [path] = self.write_package({"server.py": (
            "def __getattr__(name):\n"
            "    from twisted_aleph.tap import options\n"
            "    return getattr(options, name)\n"
        )})
        self.assertEqual([imp.in_alias_shim for imp in imports(path, root=tmp)], [False])

    def test_only_tap_parses_command_lines(self) -> None:
        """Option parsing stays in twisted_aleph.tap: no other library module imports
        twisted.python.usage (a transport takes plain arguments)."""
        found = sorted(
            f"{path.relative_to(ROOT)}:{line}"
            for path in source_files(PACKAGE)
            if floor_name(module_name(path)) != "tap"
            for target, line, _ in imported_modules(path)
            if target == "twisted.python.usage" or target.startswith("twisted.python.usage.")
        )
        self.assertEqual(found, [])
        self.assertTrue(any(target == "twisted.python.usage"
                            for target, _, _ in imported_modules(PACKAGE / "tap" / "tcp.py")))

    def test_no_import_circle(self) -> None:
        """No twisted_aleph module imports, even lazily, one that imports it back."""
        self.assertEqual(import_circles(import_graph(list(source_files(PACKAGE)))), [])

    def test_circle_checker_sees_lazy_circles_only(self) -> None:
        """A circle closed by a lazy import is found; one through an alias shim or a
        TYPE_CHECKING import is not; `from package import submodule` leads to the submodule."""
        tmp, paths = self.write_package({
            "a.py": "from twisted_aleph import b\n",
            "b.py": "def f():\n    from twisted_aleph.a import x\n",
            "c.py": ("import warnings\nfrom typing import TYPE_CHECKING\n"
                     "if TYPE_CHECKING:\n    from twisted_aleph import d\n"
                     "def __getattr__(name):\n    from twisted_aleph import d\n"
                     "    warnings.warn('moved', DeprecationWarning)\n"),
            "d.py": "from twisted_aleph.c import y\n",
        })
        graph = import_graph(paths, root=tmp)
        self.assertEqual(graph["twisted_aleph.a"], {"twisted_aleph.b"})
        self.assertEqual(graph["twisted_aleph.c"], set())
        self.assertEqual(import_circles(graph), [["twisted_aleph.a", "twisted_aleph.b"]])

    def test_only_an_alias_shim_may_import_up_lazily(self) -> None:
        """No whitelist: a lazy upward import is a violation unless it is in an alias shim
        (codec.decode_stream's, for one)."""
        tmp, _ = self.write_package({
            "codec.py": ("import warnings\n"
                         "def __getattr__(name):\n"
                         "    warnings.warn('moved', DeprecationWarning)\n"
                         "    from twisted_aleph.stream import decode_stream\n"
                         "    return decode_stream\n"),
            "edn.py": ("def __getattr__(name):\n"
                       "    from twisted_aleph.stream import Stream\n"
                       "    return Stream\n"
                       "def helper():\n"
                       "    from twisted_aleph import tcp\n"),
        })
        found = self.violations(tmp)
        self.assertEqual(sorted({tuple(v.split(":")[:2]) for v in found}),
                         [("twisted_aleph/edn.py", "2"), ("twisted_aleph/edn.py", "5")])


class StreamInterfaceTests(unittest.TestCase):
    """Outside the stream package, code builds on `stream` and `stream.core` only (Manifold's
    transports build on `manifold.stream.core`, never on `stream.default` or `stream.graph`)."""

    roots = (PACKAGE, PLUGINS, ROOT / "examples", ROOT / "bench")

    def test_no_module_outside_the_stream_package_uses_its_internals(self) -> None:
        found = []
        for path in source_files(*self.roots):
            if (PACKAGE / "stream") in path.parents:
                continue
            for what, line in stream_internal_uses(path):
                found.append(f"{path.relative_to(ROOT)}:{line}: {what}")
        self.assertEqual(found, [], "use twisted_aleph.stream or twisted_aleph.stream.core")

    def test_check_sees_every_way_in(self) -> None:
        tmp = Path(self.mktemp())
        (tmp / "twisted_aleph").mkdir(parents=True)
        sample = tmp / "twisted_aleph" / "sample.py"
        sample.write_text(
            "from twisted_aleph import stream as s\n"
            "from twisted_aleph.stream import Stream, map, core\n"
            "from twisted_aleph.stream.core import Edge, attach\n"
            "from twisted_aleph.stream.default import Stream as S\n"
            "from twisted_aleph.stream import graph\n"
            "import twisted_aleph.stream.operators\n"
            "def f():\n"
            "    from .stream.xforms import Reducer\n"
            "    return s.default.Stream, s.graph, s.Stream, s.core.Edge\n",
            encoding="utf-8")
        lines = sorted({line for _, line in stream_internal_uses(sample, root=tmp)})
        self.assertEqual(lines, [4, 5, 6, 8, 9])
        what = [w for w, line in stream_internal_uses(sample, root=tmp) if line == 9]
        self.assertEqual(sorted(what), ["s.default", "s.graph"])

    def test_core_is_an_interface_not_a_forwarder(self) -> None:
        """stream/core.py defines what implementers use; the other modules import it from there."""
        from twisted_aleph.stream import core, default, graph
        for name in ("Edge", "Closeable", "attach", "release", "offer_all"):
            self.assertEqual(getattr(core, name).__module__, "twisted_aleph.stream.core", name)
        self.assertIs(default.Edge, core.Edge)
        self.assertIs(graph.attach, core.attach)


class SourceCompatibilityTests(unittest.TestCase):
    """Every line must run on Python 3.9 (PyPy) as well as 3.11."""

    roots = (PACKAGE, PLUGINS, ROOT / "tests", ROOT / "examples", ROOT / "bench")

    def test_parses_as_python_3_9(self) -> None:
        bad = []
        for path in source_files(*self.roots):
            try:
                ast.parse(path.read_text(encoding="utf-8"), str(path), feature_version=(3, 9))
            except SyntaxError as e:
                bad.append(f"{path.relative_to(ROOT)}:{e.lineno}: {e.msg}")
        self.assertEqual(bad, [])

    def test_annotations_are_postponed(self) -> None:
        """A module that annotates has `from __future__ import annotations` (X | Y on 3.9)."""
        bad = []
        for path in source_files(*self.roots):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            annotates = any(
                isinstance(n, ast.AnnAssign)
                or (isinstance(n, ast.arg) and n.annotation is not None)
                or (isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.returns is not None)
                for n in ast.walk(tree)
            )
            future = any(
                isinstance(n, ast.ImportFrom)
                and n.module == "__future__"
                and any(a.name == "annotations" for a in n.names)
                for n in tree.body
            )
            if annotates and not future:
                bad.append(str(path.relative_to(ROOT)))
        self.assertEqual(bad, [])

    def test_plugins_directory_is_not_a_package(self) -> None:
        """An __init__.py in twisted/plugins/ would shadow Twisted's own plugins package."""
        self.assertFalse((PLUGINS / "__init__.py").exists())


class TwistdPluginTests(unittest.TestCase):
    """`twistd --help` lists our plugins once the project is installed (pip install . or -e .)."""

    def test_twistd_lists_existing_plugins(self) -> None:
        """Run from an empty directory: only the installed package can supply the plugins."""
        present = existing_plugins()
        if not present:
            raise unittest.SkipTest("no aleph_*.py plugin file exists yet in twisted/plugins/")
        workdir = self.mktemp()
        os.makedirs(workdir)

        def run_here(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, *args],
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=120,
            )

        if run_here("-c", "import twisted_aleph").returncode != 0:
            raise unittest.SkipTest("twisted_aleph is not installed here (./test installs it)")
        result = run_here("-c", "from twisted.scripts.twistd import run; run()", "--help")
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        listed = result.stdout
        self.assertTrue(plugin_listed(listed, "web"))  # Twisted's own plugins are still there
        missing = [name for name in present.values() if not plugin_listed(listed, name)]
        self.assertEqual(missing, [], "twistd --help output:\n" + listed + result.stderr)

    def test_plugin_files_import_no_reactor(self) -> None:
        """twistd imports every plugin file to list them, before it installs the reactor the user
        chose (`twistd --reactor=asyncio ...`): a plugin file must import its library lazily,
        in makeService."""
        present = existing_plugins()
        if not present:
            raise unittest.SkipTest("no aleph_*.py plugin file exists yet in twisted/plugins/")
        for filename in sorted(present):
            module = "twisted.plugins." + filename[:-3]
            result = check_imports([module], tolerated=[])
            self.assertEqual(
                result.returncode, 0, f"{module}:\n{result.stdout}{result.stderr[-3000:]}"
            )

    def test_plugin_files_are_one_service_maker_each(self) -> None:
        """A plugin file is one ServiceMaker naming a twisted_aleph.tap module (Twisted's pattern:
        twisted/plugins/twisted_web.py); the options and the service live in that module."""
        present = existing_plugins()
        if not present:
            raise unittest.SkipTest("no aleph_*.py plugin file exists yet in twisted/plugins/")
        for filename, command in sorted(present.items()):
            tree = ast.parse((PLUGINS / filename).read_text(encoding="utf-8"))
            body = [n for n in tree.body if not isinstance(n, (ast.Import, ast.ImportFrom))]
            self.assertTrue(ast.get_docstring(tree), filename)
            self.assertEqual(len(body), 2, f"{filename}: a docstring and one ServiceMaker")
            call = getattr(body[1], "value", None)
            self.assertIsInstance(call, ast.Call, filename)
            assert isinstance(call, ast.Call)
            self.assertEqual(ast.unparse(call.func), "ServiceMaker", filename)
            name, module, _, tapname = [ast.literal_eval(a) for a in call.args]
            self.assertEqual((name, tapname), (command, command))
            self.assertTrue(module.startswith("twisted_aleph.tap."), module)
            self.assertTrue((ROOT / (module.replace(".", "/") + ".py")).exists(), module)

    def test_plugin_listed_parser(self) -> None:
        text = "Commands:\n    aleph-http       HTTP server\n    web              A web server\n"
        self.assertTrue(plugin_listed(text, "aleph-http"))
        self.assertFalse(plugin_listed(text, "aleph-tcp"))


def existing_plugins() -> Dict[str, str]:
    """{file name: twistd command} for the plugin files present in this checkout."""
    return {f: name for f, name in PLUGIN_NAMES.items() if (PLUGINS / f).exists()}


def plugin_listed(help_text: str, name: str) -> bool:
    """True if twistd's command list has a line starting with `name`."""
    for line in help_text.splitlines():
        words = line.split()
        if words and words[0] == name:
            return True
    return False
