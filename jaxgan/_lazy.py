"""Package namespaces whose names import their modules on first use."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: dict[str, Any], exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`(__getattr__, __dir__)` for a package whose public names live in its modules.

    Args:
      package: the package's `globals()`; a name, once loaded, is stored there.
      exports: each public name and the module that defines it.
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package['__name__']!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        package[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*package, *exports})

    return __getattr__, __dir__
