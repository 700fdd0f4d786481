"""The shape of the house, checked on the sources: storage details stay in the storage
modules, services do not reach into each other or into the CLI, and every module is short
enough to hold in one's head."""

from __future__ import annotations

import re
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


LAYERS = [{"proto"}, {"rpckit"}, {"client"}, {"platform"}, {"identity", "keyvault", "speech"},
          {"launcher", "loadgen"}, {"testing"}, {"cli"}]  # fmt: skip
"""The packages from the bottom up: each imports only from the layers below it (and a layer
of several packages has none importing another): the plumbing, the clients, what the services
share, the services, what starts them (and loads them), the pytest plugin, the command."""


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
