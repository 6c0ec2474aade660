"""The messaging apps' declarations, read without importing their modules.

Each messaging app is one module of the `channels` package (a file of channels/, or of a
`channels/` folder on sys.path: the package extends its path like a namespace package)
that declares, as plain literals near its top:

    KIND = "TELEGRAM"          # its member of models.ChannelKind (GraphQL's ChannelKind)
    KIND_ORDER = 4             # its place among the kinds
    SETTINGS = [("INBOX_TELEGRAM_API_BASE", "https://api.telegram.org", "Telegram Bot API base")]

The models (ChannelKind) and the settings (server/config.py) are built from these before
any app module can be imported: an app's module imports the models, so they must not
import it. Hence the source is read (`ast`), never run; only literals count."""
from __future__ import annotations

import ast
import importlib.util
import pkgutil
import re
from dataclasses import dataclass

PACKAGE = "channels"
KIND_MAX_LENGTH = 16  # the channel.kind column is varchar(16)
_KIND = re.compile(r"^[A-Z][A-Z0-9_]*$")
_SETTING = re.compile(r"^INBOX_[A-Z0-9_]+$")


@dataclass(frozen=True)
class Declared:
    """One messaging app's module as it declares itself."""

    module: str  # its name in the package, e.g. "telegram"
    kind: str
    order: int
    settings: tuple[tuple[str, str, str], ...]  # (environment variable, default, help)


class BadDeclaration(RuntimeError):
    pass


_path: list[str] | None = None
_declared: list[Declared] | None = None


def package_path() -> list[str]:
    """The folders of the `channels` package: its own, then every `channels/` folder of
    sys.path (as pkgutil.extend_path finds them), fixed the first time it is asked."""
    global _path
    if _path is None:
        spec = importlib.util.find_spec(PACKAGE)  # a top-level package: found, not imported
        if spec is None or not spec.submodule_search_locations:
            raise BadDeclaration(f"no {PACKAGE} package on sys.path")
        _path = pkgutil.extend_path(list(spec.submodule_search_locations), PACKAGE)
    return _path


def declared() -> list[Declared]:
    """Every messaging app of the package, in the order of their KIND_ORDER (then kind)."""
    global _declared
    if _declared is None:
        found: dict[str, Declared] = {}
        for module in pkgutil.iter_modules(package_path()):
            if module.ispkg or module.name.startswith("_") or module.name in found:
                continue
            spec = module.module_finder.find_spec(module.name)
            source = spec.loader.get_source(spec.name) if spec and spec.loader else None
            app = _read(module.name, spec.origin if spec else module.name, source) if source else None
            if app is not None:
                found[module.name] = app
        apps = sorted(found.values(), key=lambda app: (app.order, app.kind))
        kinds = [app.kind for app in apps]
        if len(set(kinds)) != len(kinds):
            raise BadDeclaration(f"two messaging apps declare the same KIND: {kinds}")
        names = [name for app in apps for name, _, _ in app.settings]
        if len(set(names)) != len(names):
            raise BadDeclaration(f"two messaging apps declare the same setting: {names}")
        _declared = apps
    return _declared


def _read(module: str, origin: str, source: str) -> Declared | None:
    """The module's declaration; None when it declares no KIND (shared plumbing)."""
    values: dict[str, object] = {}
    for node in ast.parse(source, origin).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in ("KIND", "KIND_ORDER", "SETTINGS"):
            try:
                values[target.id] = ast.literal_eval(value)
            except ValueError:
                raise BadDeclaration(f"{origin}: {target.id} must be a literal") from None
    if "KIND" not in values:
        return None
    kind, order, settings = values["KIND"], values.get("KIND_ORDER"), values.get("SETTINGS", [])
    if not isinstance(kind, str) or not _KIND.match(kind) or len(kind) > KIND_MAX_LENGTH:
        raise BadDeclaration(f"{origin}: KIND must be an upper-case name of at most {KIND_MAX_LENGTH} characters")
    if isinstance(order, bool) or not isinstance(order, int):
        raise BadDeclaration(f"{origin}: KIND_ORDER must be a number (its place among the kinds)")
    if not isinstance(settings, (list, tuple)) or not all(
            isinstance(item, tuple) and len(item) == 3 and all(isinstance(part, str) for part in item)
            and _SETTING.match(item[0]) for item in settings):
        raise BadDeclaration(f"{origin}: SETTINGS must be a list of (INBOX_ name, default, help) string tuples")
    return Declared(module, kind, order, tuple(settings))
