"""A tamper screen on a task's change: the Python a task changed or created, screened for what lets code under test
subvert a verdict given inside its own process.

Every acceptance re-run runs the code under test inside the process whose result is the verdict: its exit code (a
plain script, make, npm) or the body's pytest reporter (`shared_protocol.verdict`). That process is the code's to do
with as it likes (`atexit.register(os._exit, 0)`, patching the reporter it finds in `sys.modules`, a profile hook
that swaps the test function): an in-process verdict is forgeable by construction. This screen raises the bar: it
reads the files the change holds (never runs them) and names each use of a primitive such a forgery needs

- ending or replacing the process (`os._exit`, `os.exec*`, `os.spawn*`, `os.posix_spawn`, `os.abort`, `os.kill` of
  its own pid or group, signal handlers), exit hooks (`atexit`), a `sys.exit`/`SystemExit` at import;
- reaching the interpreter's machinery: trace and profile hooks, audit hooks, `sys.modules`, import hooks
  (`sys.meta_path`), `gc`, frames and tracebacks (`sys._getframe`, `inspect`, `f_back`, `tb_frame`…), `ctypes`/
  `cffi`, `builtins`/`__builtins__`, dunder attributes outside a small list of everyday ones;
- looking names up or making code at run time: `__import__`, `importlib` (its `metadata` and `resources` are fine),
  `exec`/`eval`/`compile`, `getattr`/`setattr`/`delattr` with a name that is not a constant, `globals()`/
  `locals()`, `operator.attrgetter`, `pickle`/`marshal`/`shelve`, `string.Formatter`, `pydoc.locate`,
  `pkgutil` (beyond `iter_modules`, `get_data`), `vars()` of an import, `types.CodeType`/`FunctionType`;
- the test harness from code that is not a test: `pytest`, `_pytest`, `pluggy`, `unittest`, a test module;
  patching an imported module or class at run time (`json.loads = …`);
- writing to file descriptors (`os.write`, `os.dup2`, `os.fdopen`, `open(3, "w")`, `pass_fds`) and any string that
  names `/proc/`, `/dev/fd`, `SWARM_VERDICT`/`swarm_verdict` or `_exit`;

and holds, as unscreenable, a changed file that is native or compiled code (`.so`, `.pyd`, `.pyc`, `.pth`, ELF)
or Python that does not parse.

A hit is no failure: the verification is held for a reviewer (`held_reason`). What it does not stop: code that
reaches the same primitives by a path the screen does not follow (a module passed through a container, names
decoded at run time): the screen is name-based and flow-insensitive. The reviewer panel on the diff is the backstop.

    hits = screen_change({"app.py": b"import atexit, os\\natexit.register(os._exit, 0)\\n"})
    held_reason(hits)   # "held for review: app.py:1 imports atexit, app.py:2 uses os._exit, which can forge …"
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import PurePosixPath

MAX_SCREENED_BYTES = 2 * 1024 * 1024
"""A Python file larger than this is not screened: it is held."""

NATIVE_SUFFIXES = (".so", ".pyd", ".pyc", ".pyo", ".pth", ".dll", ".dylib")
"""Files no screen can read the behaviour of (native or compiled code), or that Python runs at start-up (`.pth`)."""
_NATIVE_MAGIC = (b"\x7fELF", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xcf", b"\xfe\xed\xfa\xce")

TEST_FILE_PATTERNS = ("test_*.py", "*_test.py", "conftest.py")
TEST_DIRECTORIES = frozenset(("tests", "test", "testing"))

SAFE_DUNDERS = frozenset(
    (
        # names and documentation
        "__name__",
        "__qualname__",
        "__module__",
        "__doc__",
        "__file__",
        "__all__",
        "__version__",
        "__annotations__",
        "__slots__",
        # construction and the type (every way on from a type needs a dunder not listed here)
        "__init__",
        "__new__",
        "__post_init__",
        "__init_subclass__",
        "__class__",
        # protocols ordinary code calls by hand (`super().__eq__(other)`, `cm.__enter__()`)
        "__enter__",
        "__exit__",
        "__aenter__",
        "__aexit__",
        "__repr__",
        "__str__",
        "__format__",
        "__hash__",
        "__bool__",
        "__eq__",
        "__ne__",
        "__lt__",
        "__le__",
        "__gt__",
        "__ge__",
        "__len__",
        "__iter__",
        "__next__",
        "__contains__",
        "__getitem__",
        "__setitem__",
        "__delitem__",
        "__call__",
        "__reversed__",
        "__missing__",
        "__length_hint__",
        "__await__",
        "__aiter__",
        "__anext__",
        *(
            f"__{op}__"
            for op in [
                "add",
                "sub",
                "mul",
                "matmul",
                "truediv",
                "floordiv",
                "mod",
                "divmod",
                "pow",
                "lshift",
                "rshift",
                "and",
                "or",
                "xor",
                "neg",
                "pos",
                "abs",
                "invert",
                "int",
                "float",
                "complex",
                "index",
                "round",
                "trunc",
                "floor",
                "ceil",
                "bytes",
                "copy",
                "deepcopy",
                "sizeof",
            ]
        ),
        # what ordinary code reads of enums, dataclasses, models, typing and exceptions
        "__members__",
        "__fields__",
        "__dataclass_fields__",
        "__match_args__",
        "__args__",
        "__origin__",
        "__parameters__",
        "__orig_bases__",
        "__abstractmethods__",
        "__isabstractmethod__",
        "__path__",
        "__package__",
        "__cause__",
        "__context__",
        "__suppress_context__",
        "__notes__",
    )
)
"""Dunder attributes the screen lets pass: they name, construct or use an object through its own protocols, or
read what ordinary code reads of enums, dataclasses, typing and exceptions, and reach nothing else. `__class__`
gives only the object's type: going on from a type (`__subclasses__`, `__mro__`, `__bases__`, `__dict__`,
`__globals__` of a method) needs a dunder that is not here. Not here on purpose:
`__dict__` (a module's namespace, written with computed names), `__globals__`, `__code__`, `__closure__`,
`__builtins__`, `__subclasses__`, `__traceback__`, `__self__`, `__func__`, `__wrapped__`, `__loader__`, `__spec__`,
`__reduce__`. `__getattr__`, `__getattribute__`, `__setattr__` and `__delattr__` pass when called with a constant
name, as `getattr` does."""

_NAMED_LOOKUPS = frozenset(("__getattr__", "__getattribute__", "__setattr__", "__delattr__"))

_FORGE = "can end the check's process with an exit code of its choosing"
_HOOK = "runs code where the check's result is decided"
_REACH = "reaches into the check's process (its modules, frames or objects)"
_DYNAMIC = "looks names up or makes code at run time, where no screen can read it"
_NATIVE = "runs native code"
_HARNESS = "reaches the test harness from code under test"
_FDS = "writes to file descriptors (the verdict's pipe is one)"

_RULES: dict[str, str] = {
    # ending or replacing the process
    "os._exit": _FORGE,
    "posix": _FORGE,
    "nt": _FORGE,
    "_posixsubprocess": _FORGE,
    "os.abort": _FORGE,
    **{f"os.exec{s}": _FORGE for s in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")},
    **{f"os.spawn{s}": _FORGE for s in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")},
    "os.posix_spawn": _FORGE,
    "os.posix_spawnp": _FORGE,
    "signal.signal": _FORGE,
    "signal.set_wakeup_fd": _FORGE,
    "signal.raise_signal": _FORGE,
    "signal.pthread_kill": _FORGE,
    "atexit": _FORGE,
    # hooks
    "sys.setprofile": _HOOK,
    "sys.settrace": _HOOK,
    "sys.call_tracing": _HOOK,
    "sys.monitoring": _HOOK,
    "sys.addaudithook": _HOOK,
    "sys.meta_path": _HOOK,
    "sys.path_hooks": _HOOK,
    "sys.path_importer_cache": _HOOK,
    "threading.setprofile": _HOOK,
    "threading.settrace": _HOOK,
    "threading.setprofile_all_threads": _HOOK,
    "threading.settrace_all_threads": _HOOK,
    # reaching into the process
    "sys.modules": _REACH,
    "gc": _REACH,
    "inspect": _REACH,
    "traceback.walk_stack": _REACH,
    "traceback.walk_tb": _REACH,
    "types.CodeType": _REACH,
    "types.FunctionType": _REACH,
    "ctypes": _NATIVE,
    "_ctypes": _NATIVE,
    "cffi": _NATIVE,
    "_cffi_backend": _NATIVE,
    "builtins": _REACH,
    "__builtin__": _REACH,
    # dynamic lookup and code
    "importlib": _DYNAMIC,
    "operator.attrgetter": _DYNAMIC,
    "operator.methodcaller": _DYNAMIC,
    "pickle": _DYNAMIC,
    "_pickle": _DYNAMIC,
    "cPickle": _DYNAMIC,
    "marshal": _DYNAMIC,
    "shelve": _DYNAMIC,
    "dill": _DYNAMIC,
    "cloudpickle": _DYNAMIC,
    "copyreg": _DYNAMIC,
    "string.Formatter": _DYNAMIC,
    "pydoc": _DYNAMIC,
    "pkgutil": _DYNAMIC,
    "zipimport": _DYNAMIC,
    "runpy": _DYNAMIC,
    "code": _DYNAMIC,
    "codeop": _DYNAMIC,
    # the test harness, from anywhere
    "_pytest": _HARNESS,
    "pluggy": _HARNESS,
    "xdist": _HARNESS,
    # file descriptors
    "os.write": _FDS,
    "os.writev": _FDS,
    "os.pwrite": _FDS,
    "os.pwritev": _FDS,
    "os.sendfile": _FDS,
    "os.dup": _FDS,
    "os.dup2": _FDS,
    "os.fdopen": _FDS,
    "os.set_inheritable": _FDS,
    "fcntl.fcntl": _FDS,
}
"""Qualified names (as the file imports them) and what each lets code under test do; a rule names a module or an
attribute and covers everything under it."""

_EXCEPTIONS = frozenset(
    (
        "gc.collect",
        "gc.enable",
        "gc.disable",
        "gc.isenabled",
        "pkgutil.iter_modules",
        "pkgutil.get_data",
        "importlib.metadata",
        "importlib.resources",
        *(
            f"inspect.{name}"
            for name in (
                "signature",
                "Signature",
                "Parameter",
                "BoundArguments",
                "isclass",
                "isfunction",
                "ismethod",
                "iscoroutinefunction",
                "isasyncgenfunction",
                "isgeneratorfunction",
                "isawaitable",
                "iscoroutine",
                "isabstract",
                "cleandoc",
                "getdoc",
            )
        ),
    )
)
"""Under a rule, and harmless: collecting garbage, reading a distribution's metadata or a package's resources,
reading a callable's signature."""

_HARNESS_OUTSIDE_TESTS = frozenset(("pytest", "unittest"))
"""The test harness a test may import, and code under test has no business with."""

_RUNTIME_MODULES = frozenset(("os", "sys", "signal", "threading", "_thread"))
"""Modules whose private attributes (`sys._getframe`, `threading._register_atexit`) are the interpreter's machinery."""

_ATTRIBUTES: dict[str, str] = {
    "_exit": _FORGE,
    "_getframe": _REACH,
    "_current_frames": _REACH,
    "f_back": _REACH,
    "f_globals": _REACH,
    "f_locals": _REACH,
    "f_builtins": _REACH,
    "f_code": _REACH,
    "f_trace": _HOOK,
    "tb_frame": _REACH,
    "tb_next": _REACH,
    "gi_frame": _REACH,
    "cr_frame": _REACH,
    "ag_frame": _REACH,
    "setprofile": _HOOK,
    "settrace": _HOOK,
    "add_signal_handler": _FORGE,
}
"""Attribute names that are the machinery whatever object they are taken from (an alias the screen cannot follow
still has to spell them)."""

_BUILTINS: dict[str, str] = {
    "__import__": _DYNAMIC,
    "exec": _DYNAMIC,
    "eval": _DYNAMIC,
    "compile": _DYNAMIC,
    "globals": _DYNAMIC,
    "locals": _DYNAMIC,
    "__builtins__": _REACH,
}
"""Built-in names screened when the file does not bind them itself (`from re import compile` is re's)."""

_STRINGS = (
    (re.compile(r"swarm[_-]?verdict", re.IGNORECASE), "names Swarm's verdict (its reporter or its pipe)"),
    (re.compile(r"(?<![A-Za-z0-9_])_exit(?![A-Za-z0-9_])"), "names _exit"),
    (re.compile(r"/proc/"), "names /proc/ (the process's own descriptors and memory)"),
    (re.compile(r"/dev/fd"), "names /dev/fd (the process's file descriptors)"),
)
_FIELD = re.compile(r"\{([^{}]*)\}")
_REDIRECTS = frozenset(("sys.stdin", "sys.stdout", "sys.stderr", "sys.argv", "sys.path"))
"""Attributes of an imported module ordinary code sets (a redirected stream, a script's arguments, the import
path): no way to the verdict (its pipe is none of the streams)."""
_BUILTIN = "<builtins>"
"""The prefix of a built-in name the file does not bind (`<builtins>.exec`), apart from `builtins.exec` (an import)."""
_EXITS = frozenset(("sys.exit", f"{_BUILTIN}.exit", f"{_BUILTIN}.quit"))


@dataclass(frozen=True, order=True)
class Hit:
    """One use of a screened primitive: where (`path`, `line`; 0: the whole file) and what (`what`, `why`)."""

    path: str
    line: int
    what: str
    why: str = ""

    def __str__(self) -> str:
        return f"{self.path}:{self.line} {self.what}" if self.line else f"{self.path} {self.what}"


def is_test_path(path: str, patterns: Sequence[str] = TEST_FILE_PATTERNS) -> bool:
    """A test file by the usual conventions: its name matches `patterns` (pytest's `python_files`, `conftest.py`),
    or it is under a `tests`/`test`/`testing` directory."""
    parts = PurePosixPath(path).parts
    if not parts:
        return False
    name = parts[-1]
    return (
        name == "conftest.py"
        or any(fnmatchcase(name, p) for p in patterns)
        or any(part in TEST_DIRECTORIES for part in parts[:-1])
    )


def is_native(path: str, data: bytes) -> bool:
    name = PurePosixPath(path).name.lower()
    return name.endswith(NATIVE_SUFFIXES) or ".so." in name or data.startswith(_NATIVE_MAGIC)


def is_python(path: str, data: bytes) -> bool:
    if path.lower().endswith((".py", ".pyw")):
        return True
    first = data[:200].split(b"\n", 1)[0]
    return first.startswith(b"#!") and b"python" in first


def screen_change(files: Mapping[str, bytes]) -> list[Hit]:
    """The hits in a change (`files`: workspace-relative path -> content), sorted; files that are neither Python
    nor native code are not screened."""
    hits: list[Hit] = []
    for path, data in sorted(files.items()):
        hits += screen_file(path, data)
    return sorted(set(hits))


def screened(files: Iterable[tuple[str, bytes]]) -> int:
    """How many of `files` the screen reads (Python or native code)."""
    return sum(1 for path, data in files if is_native(path, data) or is_python(path, data))


def screen_file(path: str, data: bytes) -> list[Hit]:
    """The hits in one file: a native or compiled file, a Python file too large to screen or that does not parse,
    each use of a screened primitive in a Python file; [] for any other file."""
    if is_native(path, data):
        return [Hit(path, 0, "is native or compiled code", "no screen can read what it does")]
    if not is_python(path, data):
        return []
    if len(data) > MAX_SCREENED_BYTES:
        return [Hit(path, 0, f"is larger than {MAX_SCREENED_BYTES} bytes", "too large to screen")]
    try:
        tree = ast.parse(data, filename=path)
    except (SyntaxError, ValueError) as exc:
        line = exc.lineno if isinstance(exc, SyntaxError) and exc.lineno else 0
        return [Hit(path, line, "does not parse as Python", f"it cannot be screened ({type(exc).__name__})")]
    except (RecursionError, MemoryError):
        return [Hit(path, 0, "is nested too deeply to parse", "it cannot be screened")]
    try:
        return _Screen(path, tree).run()
    except RecursionError:
        return [Hit(path, 0, "is nested too deeply to screen", "it cannot be screened")]


class _Screen:
    def __init__(self, path: str, tree: ast.Module) -> None:
        self.path = path
        self.tree = tree
        self.test = is_test_path(path)
        self.hits: list[Hit] = []
        self.aliases: dict[str, str] = {}
        """A name the file binds -> the qualified name it stands for (`o` -> `os`, `_exit` -> `os._exit`)."""
        self.imported: set[str] = set()
        """Names bound by an import (or an alias of one): an attribute stored on one patches a module at run time."""
        self.bound: set[str] = set()
        self.parents: dict[ast.AST, ast.AST] = {}

    def hit(self, node: ast.AST, what: str, why: str) -> None:
        self.hits.append(Hit(self.path, getattr(node, "lineno", 0), what, why))

    def run(self) -> list[Hit]:
        nodes = list(ast.walk(self.tree))
        for node in nodes:
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
        self.bound = _module_bindings(self.tree)
        self._bindings(nodes)
        for node in nodes:
            self._node(node)
        self._import_time_exits()
        return self.hits

    # -- what names stand for ---------------------------------------------------------------------------------

    def _bindings(self, nodes: list[ast.AST]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname is not None:
                        self.aliases[alias.asname] = alias.name
                        self.imported.add(alias.asname)
                    else:
                        top = alias.name.split(".")[0]
                        self.aliases[top] = top
                        self.imported.add(top)
            elif isinstance(node, ast.ImportFrom):
                base = "." * node.level + (node.module or "")
                for alias in node.names:
                    if alias.name == "*":
                        continue
                    name = alias.asname or alias.name
                    joined = f"{base}.{alias.name}" if base and not base.endswith(".") else base + alias.name
                    self.aliases[name] = joined
                    self.imported.add(name)
        # `m = os`, `hook = sys.settrace`: the name stands for what it was given (flow-insensitive, to a fixpoint)
        assigns = [n for n in nodes if isinstance(n, ast.Assign | ast.AnnAssign | ast.NamedExpr)]
        for _ in range(4):
            grew = False
            for node in assigns:
                value = node.value
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if value is None:
                    continue
                qualified = self.qualified(value)
                if qualified is None:
                    continue
                for target in targets:
                    if isinstance(target, ast.Name) and self.aliases.get(target.id) != qualified:
                        self.aliases[target.id] = qualified
                        grew = True
                        if self._root_imported(value):
                            self.imported.add(target.id)
            if not grew:
                break

    def _root_imported(self, node: ast.expr) -> bool:
        while isinstance(node, ast.Attribute):
            node = node.value
        return isinstance(node, ast.Name) and node.id in self.imported

    def qualified(self, node: ast.AST) -> str | None:
        """The dotted name an expression stands for (`os.path.join`), or None (not a name the file imported or a
        screened built-in)."""
        if isinstance(node, ast.Name):
            if node.id in self.aliases:
                return self.aliases[node.id]
            if node.id not in self.bound:
                return f"{_BUILTIN}.{node.id}"
            return None
        if isinstance(node, ast.Attribute):
            base = self.qualified(node.value)
            return None if base is None else f"{base}.{node.attr}"
        return None

    # -- each node ----------------------------------------------------------------------------------------------

    def _node(self, node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                self._harness(node, alias.name)
                if not any(e.startswith(alias.name + ".") for e in _EXCEPTIONS):  # (`import inspect`: its uses say)
                    self._name(node, alias.name, "imports")
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                self._harness(node, node.module)
                names = [a.name for a in node.names if a.name != "*"]
                if len(names) < len(node.names):
                    self._name(node, node.module, "imports")
                for name in names:
                    self._name(node, f"{node.module}.{name}", "imports")
        elif isinstance(node, ast.Name):
            self._name_node(node)
        elif isinstance(node, ast.Attribute):
            self._attribute(node)
        elif isinstance(node, ast.Call):
            self._call(node)
        elif isinstance(node, ast.Constant):
            self._constant(node)
        elif isinstance(node, ast.JoinedStr | ast.BinOp):
            self._folded(node)

    def _harness(self, node: ast.AST, module: str) -> None:
        """Code that is not a test importing the test harness or a test module."""
        if self.test:
            return
        top, last = module.split(".")[0], module.split(".")[-1]
        if top in _HARNESS_OUTSIDE_TESTS:
            self.hit(node, f"imports {module}", _HARNESS)
        elif top in TEST_DIRECTORIES or any(fnmatchcase(f"{last}.py", p) for p in TEST_FILE_PATTERNS):
            self.hit(node, f"imports the test module {module}", _HARNESS)

    def _name(self, node: ast.AST, qualified: str, verb: str) -> bool:
        """Hit `qualified` if a rule covers it; True if one did."""
        if qualified.startswith(f"{_BUILTIN}."):
            short = qualified.removeprefix(f"{_BUILTIN}.")
            if short in _BUILTINS:
                self.hit(node, f"{verb} {short}", _BUILTINS[short])
                return True
            return False
        if any(qualified == e or qualified.startswith(e + ".") for e in _EXCEPTIONS):
            return False
        parts = qualified.split(".")
        for i in range(len(parts), 0, -1):
            rule = ".".join(parts[:i])
            if rule in _RULES:
                self.hit(node, f"{verb} {rule}", _RULES[rule])
                return True
        private = len(parts) >= 2 and parts[1].startswith("_") and not parts[1].endswith("__")
        if private and parts[0] in _RUNTIME_MODULES:
            self.hit(node, f"{verb} {parts[0]}.{parts[1]}", _REACH)
            return True
        return False

    def _name_node(self, node: ast.Name) -> None:
        parent = self.parents.get(node)
        if isinstance(parent, ast.Attribute) and parent.value is node:
            return  # (the attribute decides: `os.path` is no hit, `os._exit` is)
        qualified = self.qualified(node)
        if qualified is not None and node.id not in ("exit", "quit"):
            self._name(node, qualified, "uses")

    def _attribute(self, node: ast.Attribute) -> None:
        parent = self.parents.get(node)
        named = False
        if not (isinstance(parent, ast.Attribute) and parent.value is node):
            qualified = self.qualified(node)
            if qualified is not None:
                named = self._name(node, qualified, "uses")
        if not named:
            self._attribute_name(node, node.attr)
        if isinstance(node.ctx, ast.Store | ast.Del) and self._root_imported(node.value):
            shown = self.qualified(node) or node.attr
            if shown in _REDIRECTS:
                return
            self.hit(node, f"assigns {shown}", "patches an imported module or class at run time")

    def _attribute_name(self, node: ast.AST, attr: str) -> None:
        if attr in _ATTRIBUTES:
            self.hit(node, f"uses the attribute {attr}", _ATTRIBUTES[attr])
        elif attr.startswith("__") and attr.endswith("__") and len(attr) > 4 and attr not in SAFE_DUNDERS:
            if attr in _NAMED_LOOKUPS:
                parent = self.parents.get(node)
                if (
                    isinstance(parent, ast.Call)
                    and parent.func is node
                    and any(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in parent.args)
                ):
                    return
                self.hit(node, f"uses {attr} without a constant name", _DYNAMIC)
            else:
                self.hit(node, f"uses the attribute {attr}", _REACH)

    def _call(self, node: ast.Call) -> None:
        qualified = self.qualified(node.func)
        for keyword in node.keywords:
            if keyword.arg == "pass_fds":
                self.hit(node, "passes file descriptors to a child process (pass_fds)", _FDS)
        if qualified in {f"{_BUILTIN}.{f}" for f in ("getattr", "setattr", "delattr", "hasattr")}:
            self._lookup(node, qualified.removeprefix(f"{_BUILTIN}."))
        elif qualified == f"{_BUILTIN}.vars" and not node.args:
            self.hit(node, "calls vars() (the caller's namespace)", _DYNAMIC)
        elif qualified == f"{_BUILTIN}.vars" and self._root_imported(node.args[0]):
            self.hit(node, f"calls vars() on {self.qualified(node.args[0]) or 'an import'} (its namespace)", _DYNAMIC)
        elif qualified in ("os.kill", "os.killpg") and node.args and self._own_process(node.args[0]):
            self.hit(node, f"calls {qualified} on its own process", _FORGE)
        elif qualified in (f"{_BUILTIN}.open", "io.open", "io.FileIO", "os.fdopen") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, int) and first.value not in (0, 1, 2):
                self.hit(node, f"opens file descriptor {first.value}", _FDS)
            elif isinstance(first, ast.Call) and self.qualified(first.func) == f"{_BUILTIN}.int":
                self.hit(node, "opens a file descriptor", _FDS)
        elif (
            isinstance(node.func, ast.Attribute)
            and node.func.attr == "join"
            and isinstance(node.func.value, ast.Constant)
            and isinstance(node.func.value.value, str)
            and len(node.args) == 1
            and isinstance(node.args[0], ast.List | ast.Tuple)
        ):
            parts = [e.value for e in node.args[0].elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            self._string(node, node.func.value.value.join(parts))

    def _lookup(self, node: ast.Call, function: str) -> None:
        if len(node.args) < 2:
            return
        target, name = node.args[0], node.args[1]
        if function == "hasattr":  # (a yes or no: it hands nothing over)
            return
        if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
            self.hit(node, f"calls {function} with a name computed at run time", _DYNAMIC)
            return
        base = self.qualified(target)
        if base is None or not self._name(node, f"{base}.{name.value}", "uses"):
            self._attribute_name(node, name.value)
        if function in ("setattr", "delattr") and self._root_imported(target):
            patched = "patches an imported module or class at run time"
            self.hit(node, f"calls {function} on {base or 'an import'}", patched)

    def _own_process(self, pid: ast.expr) -> bool:
        if isinstance(pid, ast.Call):
            return self.qualified(pid.func) in ("os.getpid", "os.getppid", "os.getpgrp", "os.getpgid")
        if isinstance(pid, ast.UnaryOp) and isinstance(pid.op, ast.USub):
            return True
        return isinstance(pid, ast.Constant) and isinstance(pid.value, int) and pid.value <= 0

    # -- strings ------------------------------------------------------------------------------------------------

    def _constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(value, str):
            self._string(node, value)

    def _folded(self, node: ast.JoinedStr | ast.BinOp) -> None:
        parent = self.parents.get(node)
        if isinstance(parent, ast.BinOp | ast.JoinedStr):
            return  # (the outermost fold reads the whole)
        folded = _fold(node)
        if folded is not None:
            self._string(node, folded)

    def _string(self, node: ast.AST, value: str) -> None:
        for pattern, what in _STRINGS:
            if pattern.search(value):
                self.hit(node, f"has a string that {what}", "a forgery of the verdict needs it")
        for field in _FIELD.findall(value):
            for attr in re.split(r"[.\[\]!:]", field)[1:]:
                if attr in _ATTRIBUTES or (
                    attr.startswith("__") and attr.endswith("__") and len(attr) > 4 and attr not in SAFE_DUNDERS
                ):
                    self.hit(node, f"has a format string that reaches the attribute {attr}", _REACH)

    # -- at import ----------------------------------------------------------------------------------------------

    def _import_time_exits(self) -> None:
        """`sys.exit()`, `exit()`, `raise SystemExit` in what runs when the module is imported (its body and its
        classes' bodies, outside `if __name__ == "__main__":`): a plain check that imports it exits as it says.
        A package's `__main__.py` is only ever run as the program (`python -m pkg`): its exit is the program's."""
        pending: list[ast.stmt] = [] if PurePosixPath(self.path).name == "__main__.py" else list(self.tree.body)
        while pending:
            statement = pending.pop()
            if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if isinstance(statement, ast.If) and _is_main_guard(statement.test):
                pending += statement.orelse
                continue
            if isinstance(statement, ast.Raise) and statement.exc is not None:
                raised = statement.exc.func if isinstance(statement.exc, ast.Call) else statement.exc
                if self.qualified(raised) == f"{_BUILTIN}.SystemExit":
                    self.hit(statement, "raises SystemExit at import", _FORGE)
            call = statement.value if isinstance(statement, ast.Expr) else None
            if isinstance(call, ast.Call) and self.qualified(call.func) in _EXITS:
                self.hit(statement, "exits at import", _FORGE)
            for name in ("body", "orelse", "finalbody", "handlers", "cases"):
                for child in getattr(statement, name, []):
                    if isinstance(child, ast.stmt):
                        pending.append(child)
                    elif isinstance(child, ast.ExceptHandler | ast.match_case):
                        pending += child.body


def _module_bindings(tree: ast.Module) -> set[str]:
    """The names the module's own scope binds (not a function's or a class's: `def exec(self)` in a class leaves
    the built-in `exec` the module's)."""
    bound: set[str] = set()
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
            pending += node.decorator_list
            continue
        if isinstance(node, ast.Lambda | ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            bound.add(node.id)
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
            bound.add(node.name)
        pending += ast.iter_child_nodes(node)
    return bound


def _is_main_guard(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    mains = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(mains) == 1


def _fold(node: ast.expr) -> str | None:
    """The constant text of a `+` of strings or an f-string (its placeholders left out), or None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _fold(node.left), _fold(node.right)
        return None if left is None or right is None else left + right
    return None


def held_reason(hits: Sequence[Hit], *, shown: int = 5) -> str:
    """Why a verification is held for review ("" with no hit): the first hits, by file and line, and what they
    could do."""
    if not hits:
        return ""
    listed = ", ".join(str(h) for h in hits[:shown])
    more = f" (and {len(hits) - shown} more)" if len(hits) > shown else ""
    return (
        f"held for review: {listed}{more}, which can forge an in-process check; a reviewer must confirm the change "
        "before it counts as verified"
    )


__all__ = [
    "MAX_SCREENED_BYTES",
    "NATIVE_SUFFIXES",
    "SAFE_DUNDERS",
    "TEST_FILE_PATTERNS",
    "Hit",
    "held_reason",
    "is_native",
    "is_python",
    "is_test_path",
    "screen_change",
    "screen_file",
    "screened",
]
