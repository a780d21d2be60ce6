"""The server's seams, checked by parsing the source (issue 9, acceptance 1 and 2).

Feature modules see only the module API: no server object, no connection, no other
module's file. Exactly one function writes stanzas to local sessions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import roost.server

SERVER = Path(roost.server.__file__).parent
MODULES = SERVER / "modules"
#: what a feature module must not import: the server lifecycle and the stream drivers
FORBIDDEN = ("roost.server.app", "roost.server.streams", "roost.transport")


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def _module_files() -> list[Path]:
    """Every file of every module: a module is one file, or a package when one file is too
    much for it (``muc``: rooms in ``__init__``, their archives in ``archive``)."""
    files = sorted(p for p in MODULES.glob("*.py") if p.name != "__init__.py")
    files += sorted(MODULES.glob("*/*.py"))
    assert len(files) >= 15, files  # the check looks at the real modules
    return files


def _own(path: Path) -> str:
    """The module a file belongs to, as an import name."""
    name = path.parent.name if path.parent != MODULES else path.stem
    return f"roost.server.modules.{name}"


def test_modules_import_neither_the_server_nor_connections_nor_each_other() -> None:
    problems = []
    for path in _module_files():
        for name in _imports(path):
            if name.startswith(FORBIDDEN) or "Connection" in name.rsplit(".", 1)[-1]:
                problems.append(f"{path.name} imports {name}")
            elif name.startswith("roost.server.modules") and not (
                path.parent != MODULES and (name + ".").startswith(_own(path) + ".")
            ):
                problems.append(f"{path.name} imports another module: {name}")
        # a relative import may stay inside its own package, never reach out of it
        reach = 1 if path.parent != MODULES else 0
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level > reach:
                problems.append(f"{path.name} imports relatively beyond its module")
    assert problems == []


def test_modules_never_touch_a_server_attribute() -> None:
    problems = []
    for path in _module_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("server", "_host"):
                problems.append(f"{path.name}:{node.lineno} uses .{node.attr}")
    assert problems == []


def test_the_module_api_has_no_server_attribute() -> None:
    from roost.server.api import ModuleContext

    assert not hasattr(ModuleContext, "server")
    assert "server" not in ModuleContext.__slots__


def test_one_function_writes_stanzas_to_sessions() -> None:
    """Every write to a session's stream is in ``roost.server.delivery``: ``deliver``
    (its common case), ``_write`` (which only ``deliver`` calls) and ``resume``."""
    writers = []
    for path in sorted(SERVER.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(func):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "write"
                    and "stream" in ast.unparse(node.func.value)
                ):
                    writers.append(f"{path.relative_to(SERVER)}:{func.name}")
    assert writers == ["delivery.py:deliver", "delivery.py:_write", "delivery.py:resume"]
    callers = []
    for path in sorted(SERVER.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef):
                for call in ast.walk(node):
                    if (
                        isinstance(call, ast.Call)
                        and isinstance(call.func, ast.Name)
                        and call.func.id == "_write"
                    ):
                        callers.append(f"{path.relative_to(SERVER)}:{node.name}")
    assert set(callers) == {"delivery.py:deliver"}


def test_streams_and_router_do_not_import_the_server_lifecycle() -> None:
    for path in [
        SERVER / "router.py",
        SERVER / "api.py",
        SERVER / "sessions.py",
        SERVER / "session.py",
        SERVER / "delivery.py",
        *(SERVER / "streams").glob("*.py"),
    ]:
        assert "roost.server.app" not in _imports(path), path.name


def test_transport_knows_bytes_only() -> None:
    transport = SERVER.parent / "transport"
    for path in transport.glob("*.py"):
        assert not [n for n in _imports(path) if n.startswith("roost.server")], path.name


def test_the_load_generator_is_a_client() -> None:
    """``roost.bench`` may use core, transport and storage, never the server package."""
    bench = SERVER.parent / "bench"
    for path in bench.glob("*.py"):
        assert not [n for n in _imports(path) if n.startswith("roost.server")], path.name


def test_the_client_library_does_not_import_the_server() -> None:
    """``roost.client`` sits on core and transport only (ARCHITECTURE: dependencies)."""
    client = SERVER.parent / "client"
    for path in client.glob("*.py"):
        assert not [n for n in _imports(path) if n.startswith("roost.server")], path.name
