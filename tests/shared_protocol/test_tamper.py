"""The tamper screen on a task's change (`shared_protocol.tamper`): each primitive that lets code under test subvert
a verdict given inside its own process is named by file and line, and everyday project code passes."""

from __future__ import annotations

import pytest

from shared_protocol.tamper import MAX_SCREENED_BYTES, Hit, held_reason, is_test_path, screen_change, screen_file


def hits(source: str, path: str = "app.py") -> list[Hit]:
    return screen_file(path, source.encode())


def whats(source: str, path: str = "app.py") -> list[str]:
    return [h.what for h in hits(source, path)]


FLAGGED = [
    # ending or replacing the process
    ("import os\nos._exit(0)\n", "uses os._exit"),
    ("from os import _exit\n_exit(0)\n", "imports os._exit"),
    ("import os as o\no._exit(0)\n", "uses os._exit"),
    ("import posix\nposix._exit(0)\n", "imports posix"),
    ("import os\nos.execv('/bin/true', ['true'])\n", "uses os.execv"),
    ("import os\nos.execlp('true', 'true')\n", "uses os.execlp"),
    ("import os\nos.spawnv(os.P_WAIT, '/bin/true', ['true'])\n", "uses os.spawnv"),
    ("import os\nos.posix_spawn('/bin/true', ['true'], {})\n", "uses os.posix_spawn"),
    ("import os\nos.abort()\n", "uses os.abort"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n", "calls os.kill on its own process"),
    ("import os\nos.killpg(0, 9)\n", "calls os.killpg on its own process"),
    ("import signal\nsignal.signal(signal.SIGTERM, lambda *a: None)\n", "uses signal.signal"),
    ("import signal\nsignal.raise_signal(signal.SIGINT)\n", "uses signal.raise_signal"),
    ("import atexit\n", "imports atexit"),
    ("from atexit import register\nregister(print)\n", "imports atexit"),
    ("import threading\nthreading._register_atexit(print)\n", "uses threading._register_atexit"),
    ("import asyncio\nloop = asyncio.new_event_loop()\nloop.add_signal_handler(2, print)\n", "add_signal_handler"),
    ("import sys\nsys.exit(0)\n", "exits at import"),
    ("raise SystemExit(0)\n", "raises SystemExit at import"),
    ("if True:\n    exit()\n", "exits at import"),
    ("class A:\n    quit(0)\n", "exits at import"),
    # hooks
    ("import sys\nsys.setprofile(print)\n", "uses sys.setprofile"),
    ("import sys\nsys.settrace(print)\n", "uses sys.settrace"),
    ("from sys import settrace\n", "imports sys.settrace"),
    ("import threading\nthreading.settrace(print)\n", "uses threading.settrace"),
    ("import threading\nthreading.setprofile_all_threads(print)\n", "uses threading.setprofile_all_threads"),
    ("import sys\nsys.addaudithook(print)\n", "uses sys.addaudithook"),
    ("import sys\nsys.monitoring.use_tool_id(1, 'x')\n", "uses sys.monitoring"),
    ("import sys\nsys.meta_path.insert(0, object())\n", "uses sys.meta_path"),
    ("def f(t):\n    t.settrace(None)\n", "uses the attribute settrace"),
    # reaching into the process
    ("import sys\nm = sys.modules['x']\n", "uses sys.modules"),
    ("import sys\nfor k, v in list(sys.modules.items()):\n    pass\n", "uses sys.modules"),
    ("from sys import modules\n", "imports sys.modules"),
    ("import sys\ns = sys\ns.modules\n", "uses sys.modules"),
    ("import gc\ngc.get_objects()\n", "uses gc"),
    ("import gc\ng = gc\n", "uses gc"),
    ("import sys\nsys._getframe(1)\n", "uses sys._getframe"),
    ("import sys\nsys._current_frames()\n", "uses sys._current_frames"),
    ("import inspect\ninspect.currentframe()\n", "uses inspect"),
    ("import inspect\ninspect.stack()\n", "uses inspect"),
    ("from inspect import getmembers\n", "imports inspect"),
    ("def f(frame):\n    return frame.f_back\n", "uses the attribute f_back"),
    ("def f(frame):\n    frame.f_globals['x'] = 1\n", "uses the attribute f_globals"),
    ("def f(frame):\n    return frame.f_locals\n", "uses the attribute f_locals"),
    ("try:\n    1 / 0\nexcept Exception as e:\n    e.__traceback__.tb_frame\n", "uses the attribute tb_frame"),
    ("def g():\n    yield\nx = g().gi_frame\n", "uses the attribute gi_frame"),
    ("async def c():\n    pass\nx = c().cr_frame\n", "uses the attribute cr_frame"),
    ("import traceback\ntraceback.walk_stack(None)\n", "uses traceback.walk_stack"),
    ("import types\ntypes.FunctionType(compile('', '', 'exec'), {})\n", "uses types.FunctionType"),
    ("import ctypes\n", "imports ctypes"),
    ("from cffi import FFI\n", "imports cffi"),
    ("import builtins\nbuiltins.print = None\n", "imports builtins"),
    ("x = __builtins__\n", "uses __builtins__"),
    # dunder attributes
    ("def f(g):\n    return g.__globals__\n", "uses the attribute __globals__"),
    ("def f(g, h):\n    g.__code__ = h.__code__\n", "uses the attribute __code__"),
    ("x = object.__subclasses__()\n", "uses the attribute __subclasses__"),
    ("import json\njson.__dict__['loads'] = None\n", "uses the attribute __dict__"),
    ("def f(g, h):\n    g.__wrapped__ = h\n", "uses the attribute __wrapped__"),
    ("def f(o, n):\n    return o.__getattribute__(n)\n", "uses __getattribute__ without a constant name"),
    ("def f(o, n, v):\n    object.__setattr__(o, n, v)\n", "uses __setattr__ without a constant name"),
    # dynamic lookup and code
    ("m = __import__('os')\n", "uses __import__"),
    ("import importlib\nimportlib.import_module('os')\n", "uses importlib"),
    ("from importlib import import_module\n", "imports importlib"),
    ("import importlib.util\n", "imports importlib"),
    ("exec('x = 1')\n", "uses exec"),
    ("eval('1')\n", "uses eval"),
    ("c = compile('1', 'f', 'eval')\n", "uses compile"),
    ("e = exec\n", "uses exec"),
    ("def f(o, n):\n    return getattr(o, n)\n", "calls getattr with a name computed at run time"),
    ("def f(o, v):\n    setattr(o, 'x' + v, 1)\n", "calls setattr with a name computed at run time"),
    ("def f(o, n):\n    delattr(o, n)\n", "calls delattr with a name computed at run time"),
    ("import os\ngetattr(os, '_exit')(0)\n", "uses os._exit"),
    ("def f(o):\n    return getattr(o, '__globals__')\n", "uses the attribute __globals__"),
    ("g = globals()\n", "uses globals"),
    ("def f():\n    return locals()\n", "uses locals"),
    ("def f():\n    return vars()\n", "calls vars()"),
    ("import operator\noperator.attrgetter('x')\n", "uses operator.attrgetter"),
    ("from operator import methodcaller\n", "imports operator.methodcaller"),
    ("import pickle\n", "imports pickle"),
    ("import marshal\n", "imports marshal"),
    ("import shelve\n", "imports shelve"),
    ("import string\nstring.Formatter().format('{0}', 1)\n", "uses string.Formatter"),
    ("import pydoc\npydoc.locate('os._exit')\n", "imports pydoc"),
    ("import pkgutil\npkgutil.resolve_name('os:x')\n", "uses pkgutil"),
    ("import pkgutil\nlist(pkgutil.walk_packages(['.']))\n", "uses pkgutil"),
    ("import os\nvars(os)['_ex' + 'it'](0)\n", "calls vars() on os"),
    ("import runpy\n", "imports runpy"),
    ("x = '{0.__globals__}'.format(print)\n", "has a format string that reaches the attribute __globals__"),
    # the test harness, from code that is no test
    ("import pytest\n", "imports pytest"),
    ("import _pytest.reports\n", "imports _pytest"),
    ("import unittest\n", "imports unittest"),
    ("from unittest import mock\n", "imports unittest"),
    ("import tests.test_app\n", "imports the test module tests.test_app"),
    ("from tests import helpers\n", "imports the test module tests"),
    ("import test_app\n", "imports the test module test_app"),
    ("import pluggy\n", "imports pluggy"),
    # patching an imported module or class
    ("import json\njson.loads = None\n", "assigns json.loads"),
    ("import subprocess\nsubprocess.CompletedProcess.returncode = 0\n", "assigns subprocess.CompletedProcess"),
    ("from subprocess import CompletedProcess\nCompletedProcess.returncode = 0\n", "assigns"),
    ("import json\nsetattr(json, 'loads', None)\n", "calls setattr on json"),
    ("import json\nj = json\nj.loads = None\n", "assigns json.loads"),
    ("import sys\nsys.excepthook = print\n", "assigns sys.excepthook"),
    # file descriptors
    ("import os\nos.write(3, b'x')\n", "uses os.write"),
    ("import os\nos.dup2(1, 3)\n", "uses os.dup2"),
    ("import os\nf = os.fdopen(3, 'w')\n", "uses os.fdopen"),
    ("f = open(3, 'w')\n", "opens file descriptor 3"),
    ("f = open(int('3'), 'w')\n", "opens a file descriptor"),
    ("import subprocess\nsubprocess.run(['x'], pass_fds=[3])\n", "passes file descriptors"),
    # strings
    ("x = 'SWARM_VERDICT_FD'\n", "names Swarm's verdict"),
    ("x = 'swarm_' + 'verdict_'\n", "names Swarm's verdict"),
    ("p = 'swarm'\nx = f'{p}swarm_verdict'\n", "names Swarm's verdict"),
    ("x = ''.join(['swarm', '_verdict'])\n", "names Swarm's verdict"),
    ("x = '_exit'\n", "names _exit"),
    ("x = open('/proc/self/fd/3', 'w')\n", "names /proc/"),
    ("x = b'/dev/fd/3'\n", "names /dev/fd"),
]


@pytest.mark.parametrize(("source", "expected"), FLAGGED, ids=[f"{i}:{e}" for i, (_, e) in enumerate(FLAGGED)])
def test_each_primitive_is_named_with_its_line(source: str, expected: str) -> None:
    found = hits(source)
    assert any(expected in h.what for h in found), found
    assert all(h.path == "app.py" and h.line >= 1 and h.why for h in found), found


EVERYDAY = '''"""An ordinary module: what a task's change usually holds."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.metadata
import inspect
import json
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger(__name__)
T = TypeVar("T")
__all__ = ["Point", "main"]
__version__ = "1.0"
PATTERN = re.compile(r"(?P<name>\\w+)=(?P<value>.*)")


class Color(Enum):
    RED = "red"


class Sized(Protocol):
    def __len__(self) -> int: ...


@dataclass(frozen=True)
class Point(Generic[T]):
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)
    registry: ClassVar[dict[str, int]] = {}

    def __post_init__(self) -> None:
        object.__setattr__(self, "x", abs(self.x))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.x!r}, {self.y})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and super().__eq__(other)

    def moved(self, dx: int) -> Point[T]:
        return dataclasses.replace(self, x=self.x + dx)


class Base:
    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.options = dict(kwargs)
        self.lock = threading.Lock()

    def compile(self, text: str) -> re.Pattern[str]:
        return re.compile(text)

    def eval(self) -> int:
        return 1

    def __enter__(self) -> Base:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


@functools.lru_cache(maxsize=32)
def version() -> str:
    try:
        return importlib.metadata.version("swarm")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as f:
        yield from (line.rstrip("\\n") for line in f)


def describe(obj: object) -> str:
    name = getattr(obj, "__name__", type(obj).__name__)
    doc = getattr(obj, "__doc__", None) or ""
    if hasattr(obj, "__call__") and inspect.isfunction(obj):
        return f"{name}{inspect.signature(obj)}: {doc}"
    return "{0} ({1})".format(name, ", ".join(sorted(vars(obj)) if hasattr(obj, "__dict__") else []))


def run(argv: list[str]) -> int:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    os.environ.setdefault("LANG", "C.UTF-8")
    if done.returncode != 0:
        log.error("%s failed: %s", argv[0], done.stderr)
    return done.returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="app")
    parser.add_argument("--config", type=Path, default=Path(__file__).with_name("config.json"))
    args = parser.parse_args(argv)
    try:
        config = json.loads(args.config.read_text())
    except (OSError, ValueError) as exc:
        log.exception("cannot read %s: %s", args.config, exc)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    data = resources.files(__package__ or "app")
    with Base(**config) as base:
        print(base.compile("a+").pattern, data, vars(args), sys.argv[0], os.path.join("a", "b"))
    if config.get("exit"):
        sys.exit(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def test_everyday_project_code_passes() -> None:
    """Classes, dataclasses, f-strings, typing, logging, `getattr` with a constant name, `inspect.signature`,
    `importlib.metadata`, methods named like built-ins, `sys.exit` in a function and under the main guard."""
    assert hits(EVERYDAY) == []


@pytest.mark.parametrize(
    "source",
    [
        "from re import compile\nPATTERN = compile('a')\n",
        "def exec():\n    return 1\n\n\nexec()\n",
        "import gc\ngc.collect()\n",
        "import pkgutil\nnames = [m.name for m in pkgutil.iter_modules(['.'])]\n",
        "def f(args):\n    return vars(args)\n",
        "import sys\nprint(sys.argv, sys.version_info, sys.platform, sys.path)\n",
        "import os\nos.kill(child_pid, 15)\n",
        "import traceback\ntraceback.print_exc()\n",
        "x = '{0.__class__.__name__}'.format(1)\n",
        "on_exit = 'on_exit'\nhandler = '__exit__'\n",
        "import sys\nsys.path.insert(0, 'src')\n",
        "import os\nos.environ['X'] = '1'\n",
        "import io, sys\nsys.stdout = io.StringIO()\nsys.argv = ['app']\nout = open(1, 'w', closefd=False)\n",
        "from enum import Enum\n\n\nclass C(Enum):\n    A = 1\n\n\nnames = list(C.__members__)\n",
        "def f(tp, exc):\n    return tp.__origin__, tp.__args__, exc.__cause__, super().__add__(1)\n",
    ],
)
def test_near_misses_pass(source: str) -> None:
    assert hits(source) == [], hits(source)


def test_a_packages_main_module_exits_as_the_program() -> None:
    assert hits("import sys\n\nfrom .cli import main\n\nsys.exit(main())\n", "pkg/__main__.py") == []
    assert whats("import sys\n\nsys.exit(0)\n", "pkg/cli.py") == ["exits at import"]


def test_a_test_file_may_import_the_harness() -> None:
    source = "import pytest\nimport unittest\nfrom tests.helpers import make\n"
    assert hits(source, "tests/test_app.py") == []
    assert len(hits(source, "app.py")) == 3


def test_an_unparsable_or_oversized_file_is_held() -> None:
    (broken,) = screen_file("app.py", b"def main(:\n")
    assert (broken.line, broken.what) == (1, "does not parse as Python")
    (nul,) = screen_file("app.py", b"x = 1\x00\n")
    assert nul.what == "does not parse as Python"
    (big,) = screen_file("app.py", b"#" * (MAX_SCREENED_BYTES + 1))
    assert "larger than" in big.what


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("_speedups.so", b"anything"),
        ("lib/_native.cpython-311-x86_64-linux-gnu.so", b"\x7fELF..."),
        ("libfoo.so.1", b""),
        ("app.pyd", b"MZ"),
        ("app.pyc", b"\xa7\x0d\x0d\x0a"),
        ("zz.pth", b"import os; os._exit(0)\n"),
        ("bin/tool", b"\x7fELF\x02\x01\x01"),
    ],
)
def test_native_or_compiled_code_is_held(path: str, data: bytes) -> None:
    (hit,) = screen_file(path, data)
    assert (hit.line, hit.what) == (0, "is native or compiled code")


def test_other_files_are_not_screened_and_python_scripts_without_a_suffix_are() -> None:
    assert screen_file("README.md", b"os._exit(0) SWARM_VERDICT") == []
    assert screen_file("data.json", b'{"x": "_exit"}') == []
    (hit,) = screen_file("bin/tool", b"#!/usr/bin/env python3\nimport atexit\n")
    assert hit.what == "imports atexit"


def test_a_deeply_nested_file_is_held_not_a_crash() -> None:
    source = "x = " + "(" * 5000 + "1" + ")" * 5000 + "\n"
    (hit,) = screen_file("app.py", source.encode())
    assert "cannot be screened" in hit.why


def test_a_change_is_screened_file_by_file_and_the_reason_names_each_hit() -> None:
    found = screen_change(
        {
            "app.py": b"import atexit\nimport os\n\natexit.register(os._exit, 0)\n",
            "README.md": b"nothing",
            "lib/ok.py": b"def f():\n    return 1\n",
        }
    )
    assert [str(h) for h in found] == [
        "app.py:1 imports atexit",
        "app.py:4 uses atexit",
        "app.py:4 uses os._exit",
    ]
    reason = held_reason(found)
    assert reason.startswith("held for review: app.py:1 imports atexit, app.py:4 uses atexit, app.py:4 uses os._exit")
    assert "which can forge an in-process check; a reviewer must confirm" in reason
    assert held_reason([]) == ""
    many = [Hit("a.py", n, "uses gc") for n in range(1, 9)]
    assert "(and 3 more)" in held_reason(many)


@pytest.mark.parametrize(
    ("path", "test"),
    [
        ("tests/test_app.py", True),
        ("test_app.py", True),
        ("pkg/app_test.py", True),
        ("conftest.py", True),
        ("pkg/tests/helpers.py", True),
        ("testing/util.py", True),
        ("app.py", False),
        ("src/pkg/testing_utils.py", False),
        ("contest.py", False),
    ],
)
def test_test_files_are_known_by_the_usual_conventions(path: str, test: bool) -> None:
    assert is_test_path(path) is test
