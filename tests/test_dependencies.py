"""The server runs from a plain `pip install -e .` (README's first command): every
third-party module its code imports comes with the runtime dependencies, not only
with the test extras."""
from __future__ import annotations

import ast
import importlib.metadata as metadata
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUNTIME_PACKAGES = ("inbox", "models", "schema", "resolvers", "subscriptions", "server", "channels", "borrowed")


def imported_modules() -> set[str]:
    names = set()
    for package in RUNTIME_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - set(RUNTIME_PACKAGES) - {"__future__"}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def runtime_closure() -> set[str]:
    """Distributions installed by `pip install -e .`: the project's requirements without
    the test extra, and theirs (extras they name included, markers of extras otherwise
    left out), transitively."""
    wanted = [(req, ()) for req in metadata.requires("inbox") or [] if "extra ==" not in req]
    seen: set[str] = set()
    while wanted:
        requirement, _ = wanted.pop()
        name = _name(requirement)
        extras = re.search(r"\[([^\]]+)\]", requirement.split(";")[0])
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        chosen = {e.strip() for e in extras.group(1).split(",")} if extras else set()
        for sub in requires:
            marker = sub.split(";", 1)[1] if ";" in sub else ""
            needed_extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
            if needed_extra and needed_extra.group(1) not in chosen:
                continue
            wanted.append((sub, ()))
    return seen


def test_every_module_the_server_imports_comes_with_its_runtime_dependencies():
    providers = metadata.packages_distributions()
    closure = runtime_closure()
    missing = {module: providers.get(module) for module in imported_modules()
               if not any(_name(dist) in closure for dist in providers.get(module, []))}
    assert missing == {}, f"add to [project] dependencies: {missing}"
