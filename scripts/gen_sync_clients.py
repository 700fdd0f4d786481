"""Regenerate the synchronous clients from the asynchronous ones (the only way they are made).

    python scripts/gen_sync_clients.py          # write the generated modules
    python scripts/gen_sync_clients.py --check  # fail if the committed ones are stale

For each asynchronous client (IdentityClient in cmk_trio/client/identity.py, ...) this writes
a module beside it (sync_identity.py, ...) with its synchronous twin (SyncIdentityClient, ...):
every public method written out with the same parameters, defaults, annotations and
docstring, so that a type checker in a project that calls us sees each one. A coroutine
method blocks until its result is there (-> its awaited type), an async generator method
becomes a plain iterator (AsyncIterator[X] -> Iterator[X]), a plain method is called as it is.
The bodies run the asynchronous call on the client's LoopThread (cmk_trio.client.blocking).

The methods are found by inspecting the classes (inspect.getmembers and inspect.signature);
annotations and defaults are taken as written in their source, and each name in them is
imported in the generated module as the asynchronous client's module imports it. One module
per client: the three would not fit in one under the line cap, and so each keeps the import
names of its asynchronous original (`pb`, `res`: each client's own protos) unchanged.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import filecmp
import inspect
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "services" / "client" / "cmk_trio" / "client"
CLIENTS = {"identity": "IdentityClient", "keyvault": "KeyVaultClient", "speech": "SpeechClient"}
"""The asynchronous clients: module (under cmk_trio.client) -> class; each gets sync_<module>.py."""
COMMAND = "python scripts/gen_sync_clients.py"
ASYNC_ITERATORS = {"AsyncIterator", "AsyncIterable", "AsyncGenerator"}


@dataclass
class Source:
    """One asynchronous client's module: where each name it binds at the top level comes from."""

    module: ModuleType
    tree: ast.Module
    imports: dict[str, ast.stmt] = field(default_factory=dict)
    """name -> the import statement binding it, reduced to that one name"""
    defined: set[str] = field(default_factory=set)
    """names the module itself defines (classes, functions, assignments)"""

    @classmethod
    def of(cls, module: ModuleType) -> Source:
        source = cls(module, ast.parse(inspect.getsource(module)))
        for node in source.tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                for alias in node.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    if isinstance(node, ast.Import):
                        source.imports[bound] = ast.Import(names=[alias])
                    else:
                        source.imports[bound] = ast.ImportFrom(module=node.module, names=[alias], level=node.level)
            elif isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                source.defined.add(node.name)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                source.defined |= {t.id for t in targets if isinstance(t, ast.Name)}
        return source

    def import_of(self, name: str) -> str | None:
        """The import line that binds `name` as this module binds it (None for a builtin)."""
        if name in self.imports:
            return ast.unparse(self.imports[name])
        if name in self.defined:
            return f"from {self.module.__name__} import {name}"
        if hasattr(builtins, name):
            return None
        raise SystemExit(f"{self.module.__name__}: cannot tell where {name!r} comes from")


def _names(expression: str) -> set[str]:
    """The top-level names an expression (an annotation, a default) uses."""
    return {n.id for n in ast.walk(ast.parse(expression, mode="eval")) if isinstance(n, ast.Name)}


def _iterator(annotation: str, where: str) -> str:
    """An async generator method's return annotation, as its synchronous twin returns it."""
    tree = ast.parse(annotation, mode="eval").body
    if not (isinstance(tree, ast.Subscript) and isinstance(tree.value, ast.Name) and tree.value.id in ASYNC_ITERATORS):
        raise SystemExit(f"{where}: an async generator should return AsyncIterator[...], not {annotation}")
    item = tree.slice.elts[0] if isinstance(tree.slice, ast.Tuple) else tree.slice  # AsyncGenerator[Y, S]: Y
    return f"Iterator[{ast.unparse(item)}]"


def _docstring(function: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, extra: str = "") -> str | None:
    """The docstring of `function` (+ `extra`) as a literal, for the twin to say the same."""
    text = ast.get_docstring(function, clean=False)
    if text is None:
        return None
    text += extra
    if '"""' in text or "\\" in text:  # written back as a plain triple-quoted literal
        raise SystemExit(f"{function.name}: a docstring with a backslash or triple quotes; write it more plainly")
    return f'"""{text}"""'


class _Written:
    """Source text that inspect.Signature prints as it is (an annotation or a default)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _method(cls: type, name: str, used: set[str]) -> list[str]:
    """The synchronous twin of `cls.name`, as lines of source; the names it uses go to `used`."""
    member = vars(cls)[name]
    where = f"{cls.__name__}.{name}"
    if not inspect.isfunction(member):
        raise SystemExit(f"{where} is not a plain method: say in scripts/gen_sync_clients.py what its twin does")
    node = ast.parse(textwrap.dedent(inspect.getsource(member))).body[0]
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node.decorator_list:
        raise SystemExit(f"{where} is decorated: say in scripts/gen_sync_clients.py what its twin does")
    # Defaults as written (res.RSA_OAEP_256, not 1), from the source, by parameter name.
    arguments = node.args
    positional = [*arguments.posonlyargs, *arguments.args]
    written = dict(zip([a.arg for a in positional[len(positional) - len(arguments.defaults) :]],
                       map(ast.unparse, arguments.defaults), strict=True))  # fmt: skip
    written |= {
        a.arg: ast.unparse(d) for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True) if d is not None
    }
    signature = inspect.signature(member)
    if signature.return_annotation is inspect.Signature.empty:
        raise SystemExit(f"{where}: no return annotation")
    returns = str(signature.return_annotation)  # a string: the clients use `from __future__ import annotations`
    if inspect.isasyncgenfunction(member):
        returns = _iterator(returns, where)
    self, *rest = signature.parameters.values()
    parameters, passed = [self], []
    for parameter in rest:
        if parameter.annotation is inspect.Parameter.empty:
            raise SystemExit(f"{where}: parameter {parameter.name} has no annotation")
        used |= _names(parameter.annotation)
        if parameter.default is not inspect.Parameter.empty:
            used |= _names(written[parameter.name])
            parameter = parameter.replace(default=_Written(written[parameter.name]))
        parameters.append(parameter.replace(annotation=_Written(parameter.annotation)))
        if parameter.kind is parameter.VAR_POSITIONAL:
            passed.append(f"*{parameter.name}")
        elif parameter.kind is parameter.VAR_KEYWORD:
            passed.append(f"**{parameter.name}")
        elif parameter.kind is parameter.KEYWORD_ONLY:
            passed.append(f"{parameter.name}={parameter.name}")
        else:
            passed.append(parameter.name)
    used |= _names(returns)
    inner = f"self._inner.{name}({', '.join(passed)})"
    result = "" if returns == "None" else "return "
    if inspect.isasyncgenfunction(member):
        body = f"yield from self._iterate({inner})"
    elif inspect.iscoroutinefunction(member):
        body = f"{result}self._runner.run({inner})"
    else:  # a plain method (forget_tokens, with_token): called as it is
        body = f"{result}{inner}"
    written_signature = signature.replace(parameters=parameters, return_annotation=_Written(returns))
    lines = [f"    def {name}{written_signature}:"]
    if (doc := _docstring(node)) is not None:
        lines.append(f"        {doc}")
    return [*lines, f"        {body}", ""]


def _public_methods(cls: type) -> list[str]:
    """The public methods, in the order the class defines them; any inherited one (but
    object's) would be left out, so there must be none."""
    inherited = {
        name
        for base in cls.__mro__[1:-1]
        for name, member in vars(base).items()
        if not name.startswith("_") and callable(member)
    }
    if inherited:
        raise SystemExit(f"{cls.__name__} inherits {sorted(inherited)}: the generator copies a class's own methods")
    return [n for n, m in vars(cls).items() if not n.startswith("_") and (callable(m) or isinstance(m, property))]


def render(module_name: str, class_name: str) -> str:
    """The source of sync_<module_name>.py, before ruff orders its imports and formats it."""
    import importlib

    module = importlib.import_module(f"cmk_trio.client.{module_name}")
    cls = getattr(module, class_name)
    source = Source.of(module)
    class_node = next(n for n in source.tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    used: set[str] = {class_name}
    body: list[str] = []
    for name in _public_methods(cls):
        body += _method(cls, name, used)
    for name, annotation in vars(cls).get("__annotations__", {}).items():
        if annotation == "TokenSource" and not name.startswith("_"):  # (a token source is called as a method is)
            body += [f"    def {name}(self, audience: str) -> str:",
                     f'        """A valid token for `audience` (the client\'s `{name}`)."""',
                     f"        return self._runner.run(self._inner.{name}(audience))", ""]  # fmt: skip
    imports = {line for name in sorted(used - {"Iterator"}) if (line := source.import_of(name))}
    if "Iterator" in used:
        imports.add("from collections.abc import Iterator")
    doc = _docstring(class_node, "\n\n    (Synchronous: each call blocks.)")
    header = (
        f'"""The synchronous {class_name}: generated from cmk_trio.client.{module_name} by\n'
        f'scripts/gen_sync_clients.py. Do not edit; `{COMMAND}` makes it again."""\n\n'
        "# @generated\n\n"
        "from __future__ import annotations\n\n"
        f"{chr(10).join(sorted(imports))}\n"
        "from cmk_trio.client.blocking import Blocking\n\n\n"
        f"class Sync{class_name}(Blocking[{class_name}]):\n"
    )
    return header + (f"    {doc}\n\n" if doc else "") + "\n".join(body)


def _ruff(text: str, path: Path) -> str:
    """`text` with its imports ordered and formatted by the project's ruff (its settings)."""
    ruff = Path(sys.executable).parent / "ruff"  # installed beside this Python with the dev tools
    for args in (["check", "--select", "I", "--fix", "--quiet", "--exit-zero"], ["format"]):
        done = subprocess.run(
            [str(ruff), *args, "--stdin-filename", str(path), "-"],
            input=text, capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            raise SystemExit(f"ruff {args[0]} failed on the generated {path.name}")
        text = done.stdout
    return text


def generate(out: Path) -> set[str]:
    """Write every generated module into `out`; returns their file names."""
    for module_name, class_name in CLIENTS.items():
        name = f"sync_{module_name}.py"
        (out / name).write_text(_ruff(render(module_name, class_name), PACKAGE / name))
    return {f"sync_{module_name}.py" for module_name in CLIENTS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the generated modules are stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        fresh = generate(out)
        committed = {p.name for p in PACKAGE.glob("sync_*.py")}
        if args.check:
            stale = sorted(
                name
                for name in fresh | committed
                if name not in fresh
                or name not in committed
                or not filecmp.cmp(out / name, PACKAGE / name, shallow=False)
            )
            if stale:
                print(f"the synchronous clients are stale; run: {COMMAND}", file=sys.stderr)
                for name in stale:
                    print(f"  {(PACKAGE / name).relative_to(ROOT)}", file=sys.stderr)
                return 1
            print(f"the synchronous clients are fresh ({len(fresh)} files)")
            return 0
        for name in committed - fresh:
            (PACKAGE / name).unlink()
        for name in sorted(fresh):
            shutil.copyfile(out / name, PACKAGE / name)
        print(f"wrote {len(fresh)} synchronous clients under {PACKAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
