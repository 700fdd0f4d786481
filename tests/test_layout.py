"""The shape of the house, checked on the sources: storage details stay in the storage
modules, services do not reach into each other or into the CLI, the CLI does not reach into
the services, classes grow by holding their parts, an import inside a function says why it
is there, and every module is short enough to hold in one's head."""

from __future__ import annotations

import abc
import ast
import dataclasses
import enum
import importlib
import inspect
import io
import re
import tokenize
import typing
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[1] / "services"
MAX_LINES = 500


def _modules() -> list[Path]:
    return sorted(SERVICES.rglob("*.py"))


def _is_storage(path: Path) -> bool:
    return "storage" in path.parts or path.name == "storage.py"


def test_no_module_is_over_500_lines():
    long = {str(p.relative_to(SERVICES)): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_only_storage_modules_touch_the_database():
    leak = re.compile(r"aiosqlite|execute\(|fetch_all\(|fetch_one\(")
    found = [
        f"{p.relative_to(SERVICES)}:{n}"
        for p in _modules()
        if not _is_storage(p)
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if leak.search(line)
    ]
    assert found == []


def _imports(path: Path) -> set[str]:
    return set(re.findall(r"^\s*(?:from|import) (cmk_trio\.[\w.]+)", path.read_text(), re.M))


def test_services_use_each_other_only_through_the_clients():
    services = {"identity", "keyvault", "speech"}
    wrong = []
    for service in services:
        for path in (SERVICES / service).rglob("*.py"):
            for module in _imports(path):
                top = module.split(".")[1]
                if top in services - {service} or top in {"cli", "testing", "loadgen"}:
                    wrong.append(f"{path.relative_to(SERVICES)} imports {module}")
    assert wrong == []


def test_the_services_use_the_client_package_only_through_its_public_names():
    """The client package is for the platform's users (and the services' calls to each other
    through it); what the services share among themselves (role checks, the link to the
    directory, key names) lives in cmk_trio.platform. A service imports from the client only
    what the package exports (`cmk_trio.client.__all__`)."""
    import cmk_trio.client

    public = set(cmk_trio.client.__all__)
    imported = re.compile(r"^\s*from (cmk_trio\.client(?:\.\w+)?) import \(?([\w, \n]+?)\)?$", re.M)
    wrong = []
    for service in ("identity", "keyvault", "speech"):
        for path in (SERVICES / service).rglob("*.py"):
            text = path.read_text()
            if re.search(r"^\s*import cmk_trio\.client", text, re.M):
                wrong.append(f"{path.relative_to(SERVICES)} imports the client package whole")
            for module, names in imported.findall(text):
                for name in (n.strip().split(" as ")[0] for n in names.replace("\n", ",").split(",")):
                    if name and name not in public:
                        wrong.append(f"{path.relative_to(SERVICES)} imports {name} from {module}")
    assert wrong == []


LAYERS = [{"proto"}, {"rpckit"}, {"client"}, {"platform"}, {"identity", "keyvault", "speech", "arm"},
          {"launcher", "loadgen"}, {"testing"}, {"cli"}]  # fmt: skip
"""The packages from the bottom up: each imports only from the layers below it (and a layer
of several packages has none importing another): the plumbing, the clients, what the services
share, the services (and Azure Resource Manager's door, which calls them through the clients),
what starts them (and loads them), the pytest plugin, the command."""


def _package_imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in _modules():
        package = path.relative_to(SERVICES).parts[0]
        found.setdefault(package, set()).update(m.split(".")[1] for m in _imports(path) if m.split(".")[1] != package)
    return found


def test_packages_import_only_the_layers_below_them():
    layer = {package: n for n, packages in enumerate(LAYERS) for package in packages}
    graph = _package_imports()
    assert set(graph) <= set(layer), f"a package with no place in LAYERS: {set(graph) - set(layer)}"
    wrong = [f"{p} imports {q}" for p, targets in graph.items() for q in targets if layer[q] >= layer[p]]
    assert wrong == []


def test_the_package_import_graph_has_no_cycle():
    graph = _package_imports()
    done: set[str] = set()

    def visit(package: str, path: tuple[str, ...]) -> None:
        assert package not in path, f"an import cycle: {' -> '.join((*path, package))}"
        if package in done:
            return
        for target in sorted(graph.get(package, ())):
            visit(target, (*path, package))
        done.add(package)

    for package in sorted(graph):
        visit(package, ())


# --- classes grow by holding their parts --------------------------------------------------


def _module_name(path: Path) -> str:
    """services/<folder>/cmk_trio/a/b.py -> cmk_trio.a.b (a package's __init__ is the package)."""
    parts = path.relative_to(SERVICES).with_suffix("").parts[1:]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _splits_nothing(base: type) -> bool:
    """A base that is a contract or a kind, not the other half of a class: a Protocol, an
    abstract class, an exception, an enum, a dataclass (whose fields a subclass extends) or a
    generic class (a template that several classes fill in: the client's Blocking[C] under
    each generated synchronous client)."""
    return bool(
        getattr(base, "_is_protocol", False)
        or typing.Generic in base.__mro__
        or inspect.isabstract(base)
        or abc.ABC in base.__mro__
        or issubclass(base, BaseException | enum.Enum)
        or dataclasses.is_dataclass(base)
    )


def _bases_that_split(cls: type) -> list[type]:
    """The bases of `cls` from its own package (cmk_trio.<package>) that split it: see
    test_no_class_is_split_across_modules_by_inheritance."""
    package = _package(cls.__module__)
    return [b for b in cls.__bases__ if _package(b.__module__) == package and not _splits_nothing(b)]


def test_no_class_is_split_across_modules_by_inheritance():
    """A class of services/ inherits from a class of its own package (cmk_trio.identity,
    cmk_trio.keyvault, ..., cmk_trio.rpckit) only if that base is a Protocol, abstract, an
    exception, an enum or a dataclass. A concrete base of one's own package is, in practice,
    half a class cut off to meet the line cap (Keys(KeysBase) was, and Directory(Principals,
    ClientSecrets, RoleAssignments)): a class that grows holds its parts, objects given what
    they need, instead. Bases from other packages (rpckit's SqlStore under each service's
    store, grpc's servicers) are the plumbing's, not a split file, and stay allowed."""
    found = []
    for path in _modules():
        if path.name == "__main__.py":  # (cli's runs `cmk` when imported; a __main__ defines no class)
            continue
        module = importlib.import_module(_module_name(path))
        for cls in vars(module).values():
            if isinstance(cls, type) and cls.__module__ == module.__name__:
                found += [
                    f"{module.__name__}.{cls.__name__}({b.__module__}.{b.__name__})" for b in _bases_that_split(cls)
                ]
    assert found == []


def test_the_rule_on_split_classes_finds_a_split():
    """The rule above is not vacuous: a class whose concrete base sits in another module of its
    package is found, and one whose base is a contract or a kind is not."""

    def made(name: str, module: str, *bases: type, **body: object) -> type:
        return type(name, bases, {"__module__": module, **body})

    half = made("KeysBase", "cmk_trio.keyvault.key_checks")
    assert _bases_that_split(made("Keys", "cmk_trio.keyvault.keys", half)) == [half]
    assert _bases_that_split(made("Keys", "cmk_trio.speech.keys", half)) == []  # another package's
    protocol = made("Store", "cmk_trio.keyvault.storage", typing.Protocol)
    failure = made("Refused", "cmk_trio.keyvault.errors", Exception)
    settings: type = dataclasses.dataclass(made("Settings", "cmk_trio.keyvault.config"))
    for base in (protocol, failure, settings):
        assert _bases_that_split(made("Child", "cmk_trio.keyvault.child", base)) == []


# --- an import inside a function says why -------------------------------------------------

DEFERRED_IMPORTS = "# Imports inside functions:"
"""How a module-level comment starts that gives the reason for every import inside its
functions at once (a `cmk` command module: what the commands import, `cmk --help` need not)."""
PRAGMA = re.compile(r"noqa(:\s*[A-Z]+[0-9]+(,\s*[A-Z]+[0-9]+)*)?|type:\s*ignore(\[[\w, -]*\])?|fmt:\s*\w+")
"""What a comment may hold that is not a reason: a linter's, type checker's or formatter's word."""


def _generated(path: Path) -> bool:
    """Code a script writes (the protos' *_pb2*, the client's sync_*): it states no reasons."""
    return "_pb2" in path.name or (path.parent.name == "client" and path.name.startswith("sync_"))


def _imports_without_reason(source: str) -> list[int]:
    """The lines of the imports inside functions of `source` that do not say why they are not
    at the top: no comment (beyond a pragma) on the import's lines or the line above it, and no
    module-level comment starting with DEFERRED_IMPORTS."""
    comments = {
        token.start: token.string.lstrip("#").strip()
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }
    if any(col == 0 and f"# {text}".startswith(DEFERRED_IMPORTS) for (_, col), text in comments.items()):
        return []
    reasons = {line for (line, _), text in comments.items() if PRAGMA.sub("", text).strip(" ,;:()")}
    found = set()
    for function in ast.walk(ast.parse(source)):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(function):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    lines = range(node.lineno - 1, (node.end_lineno or node.lineno) + 1)
                    if reasons.isdisjoint(lines):
                        found.add(node.lineno)
    return sorted(found)


def test_every_import_inside_a_function_says_why():
    """An import belongs at the top of its module. One inside a function says why it is not
    (an import cycle, an optional or heavy dependency few callers need, `cmk --help`'s
    start-up, the pytest plugin every project that installs cmk-trio loads): in a comment on
    its line or the line above, or once for the module in a comment that starts with
    `# Imports inside functions:`."""
    found = [
        f"{path.relative_to(SERVICES)}:{line}"
        for path in _modules()
        if not _generated(path)
        for line in _imports_without_reason(path.read_text())
    ]
    assert found == []


def test_the_rule_on_imports_inside_functions_finds_one_without_reason():
    """The rule above is not vacuous: an import inside a function with no reason is found, at
    any depth and in an async function too; a reason beside it, above it or for the whole
    module is enough, and a pragma, a comment elsewhere or the marker in a string is not."""
    bare = "import json\n\n\ndef f():\n    import grpc\n\n    return grpc, json\n"
    assert _imports_without_reason(bare) == [5]
    nested = "async def f():\n    def g():\n        from grpc import aio\n\n        return aio\n\n    return g\n"
    assert _imports_without_reason(nested) == [3]
    for unsaid, line in (
        ("def f():\n    import grpc  # noqa: F401\n", 2),
        ("def f():\n    import grpc  # type: ignore[import-untyped]\n", 2),
        ("def f():\n    x = 1  # a comment about x\n\n    import grpc\n", 4),
        ("def f():\n    # Imports inside functions: (not at the module's level)\n    x = 1\n\n    import grpc\n", 5),
        ('MARK = "# Imports inside functions: (a string)"\n\n\ndef f():\n    import grpc\n', 5),
    ):
        assert _imports_without_reason(unsaid) == [line], unsaid
    for said in (
        "def f():\n    import grpc  # (heavy: only f needs it)\n",
        "def f():\n    import grpc  # noqa: F401  (checked before the run)\n",
        "def f():\n    # Imported here: the module imports this one.\n    import grpc\n",
        "def f():\n    from grpc import (  # (heavy: only f needs it)\n        aio,\n    )\n",
        "import json\n\n# Imports inside functions: `cmk --help` stays fast.\n\n\ndef f():\n    import grpc\n",
    ):
        assert _imports_without_reason(said) == [], said


# --- the CLI is a client ------------------------------------------------------------------

CLI_BUILDS_ON = {"cli", "client", "proto", "rpckit", "loadgen"}
"""What every module of the `cmk` command may import: itself, the clients, the generated
code, the plumbing, and the load generator (itself built on the clients)."""

CLI_STARTS_SERVICES = {
    "serve_commands.py": {"launcher", "identity", "keyvault", "speech", "arm"},
    "demo_commands.py": {"launcher"},
    "load_commands.py": {"launcher"},
}
"""The exception: commands that start services in their own process rather than call them
(`cmk serve ...` and `cmk up`, with each service's configuration and server; `cmk demo
--private` and `cmk load --private`, with the launcher's private trio)."""

CLI_WORKS_ON_FILES = {("speech_commands.py", "cmk_trio.speech.envelope")}
"""The other exception, one module each: `cmk speech rotate-master-key` rewrites the master key
ring file of a speech service on this machine (offline: the service rewraps its data keys to
the new version at its next start), so it needs the ring file's format and no API could do it
for a service that is not running."""


def test_the_cli_calls_services_through_their_api():
    """No module under services/cli imports a service's internals: what it asks of a service
    goes through the clients (cmk_trio.client) and the generated code over gRPC. Only the
    commands above that start services, or work on a service's files, import more, and only
    what they name."""
    wrong = []
    for path in (SERVICES / "cli").rglob("*.py"):
        allowed = CLI_BUILDS_ON | CLI_STARTS_SERVICES.get(path.name, set())
        for module in _imports(path):
            if module.split(".")[1] not in allowed and (path.name, module) not in CLI_WORKS_ON_FILES:
                wrong.append(f"{path.relative_to(SERVICES)} imports {module}")
    assert wrong == []
