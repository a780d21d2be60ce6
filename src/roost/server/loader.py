"""Which modules a server loads, in what order, with what options (``[modules]``).

Each module may declare ``depends`` (names of modules it needs loaded before it) and an
``Options`` dataclass, built from its ``[modules.NAME]`` table by the same validator as the
rest of the config. A module whose options predate ``[modules]`` names its top-level table
in ``config_section`` instead (``[roster]``, ``[offline]``...), so documented keys keep
working. Every problem is a ``ConfigError`` that names the key.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from pathlib import Path

from roost.server.api import Module
from roost.server.config import Config, ConfigError, build_section

__all__ = ["LoadedModule", "depends_of", "resolve_modules"]


@dataclasses.dataclass(frozen=True, slots=True)
class LoadedModule:
    module: Module
    options: object


def depends_of(module: Module) -> tuple[str, ...]:
    return tuple(getattr(module, "depends", ()))


def resolve_modules(config: Config, available: Sequence[Module]) -> list[LoadedModule]:
    """The enabled modules, each after those it depends on, with their options built."""
    by_name: dict[str, Module] = {}
    for module in available:
        if module.name in by_name:
            raise ValueError(f"two modules are named {module.name!r}")
        by_name[module.name] = module
    names = sorted(by_name)
    disabled = set()
    for i, name in enumerate(config.modules.disabled):
        if name not in by_name:
            hint = difflib.get_close_matches(name, names, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"modules.disabled[{i}]", f"no module named {name!r}{extra}")
        disabled.add(name)
    for name in config.modules.options:
        if name not in by_name:
            hint = difflib.get_close_matches(name, names, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"modules.{name}", f"no module named {name!r}{extra}")
    for module in available:
        if module.name in disabled:
            continue
        for dep in depends_of(module):
            if dep in disabled:
                raise ConfigError(
                    "modules.disabled",
                    f"{dep!r} is needed by {module.name!r}; disable {module.name!r} too",
                )
            if dep not in by_name:
                raise ValueError(f"module {module.name!r} depends on unknown {dep!r}")
    order: list[Module] = []
    placed: set[str] = set()

    def place(module: Module, path: tuple[str, ...]) -> None:
        if module.name in placed:
            return
        if module.name in path:
            raise ValueError(f"modules depend on each other in a circle: {path}")
        for dep in depends_of(module):
            place(by_name[dep], (*path, module.name))
        placed.add(module.name)
        order.append(module)

    for module in available:  # the given order, except where a dependency comes later
        if module.name not in disabled:
            place(module, ())
    base_dir = config.source.parent if config.source is not None else Path.cwd()
    loaded = []
    for module in order:
        options_cls = getattr(module, "Options", None)
        table = config.modules.options.get(module.name, {})
        section = getattr(module, "config_section", None)
        if section is not None:
            # options that predate [modules]: a top-level table, already validated
            if table:
                raise ConfigError(f"modules.{module.name}", f"set these options in [{section}]")
            options = getattr(config, section)
        elif options_cls is None:
            if table:
                key = next(iter(table))
                raise ConfigError(f"modules.{module.name}.{key}", "this module takes no options")
            options = None
        else:
            options = build_section(options_cls, table, base_dir, f"modules.{module.name}.")
        loaded.append(LoadedModule(module, options))
    return loaded
