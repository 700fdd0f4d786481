"""Regenerate the Python code for every .proto under protos/ (the only way it is made).

    python scripts/gen_protos.py          # write the generated files
    python scripts/gen_protos.py --check  # fail if the committed files are stale

The .proto files and the generated modules beside them live in `cmk_trio.proto`, so that
everything we install sits under our one import package: `protos/cmk_trio/proto/identity/v1/`
holds the proto package `cmk.identity.v1` (the names on the wire) and the Python package
`cmk_trio.proto.identity.v1`. The .proto files import each other by that path, so protoc's
output needs no import rewriting. `cmk_trio` itself stays a namespace package (no
`__init__.py`): the services' folders hold the rest of it.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
NAMESPACE = "cmk_trio"
MARK = '"""Generated from the .proto files beside it by scripts/gen_protos.py. Do not edit."""\n'
THIRD_PARTY = PROTOS / NAMESPACE / "proto" / "third_party"
"""Others' protos shipped beside ours for other languages (google/rpc: what our errors carry);
Python has them from googleapis-common-protos, so no code is generated for them here."""


def generate(out: Path) -> None:
    import grpc_tools  # the proto include path that ships with grpcio-tools

    protos = sorted(p.relative_to(PROTOS).as_posix() for p in PROTOS.rglob("*.proto") if THIRD_PARTY not in p.parents)
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    bindir = Path(sys.executable).parent  # mypy-protobuf's plugins sit beside this Python
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *protos,
    ]
    done = subprocess.run(cmd, cwd=PROTOS, capture_output=True, text=True)
    if done.returncode != 0:  # the plugins chatter on stderr; show it only when it matters
        sys.stderr.write(done.stderr)
        raise SystemExit(f"protoc failed with exit code {done.returncode}")
    # Every directory on the way to a generated module is a package, but for the namespace
    # package cmk_trio, which the services' folders share.
    for module in list(out.rglob("*_pb2.py")):
        for parent in module.relative_to(out).parents:
            if parent not in {Path("."), Path(NAMESPACE)}:
                (out / parent / "__init__.py").write_text(MARK)


def generated_files(root: Path) -> set[Path]:
    found = {p.relative_to(root) for p in root.rglob("*") if p.name.endswith(GENERATED_SUFFIXES)}
    return found | {p.relative_to(root) for p in (root / NAMESPACE / "proto").rglob("__init__.py")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if generated code is stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generate(out)
        fresh = generated_files(out)
        if args.check:
            committed = generated_files(PROTOS)
            stale = sorted(
                str(p)
                for p in fresh | committed
                if p not in fresh or p not in committed or not filecmp.cmp(out / p, PROTOS / p, shallow=False)
            )
            if stale:
                print("generated code is stale; run: python scripts/gen_protos.py", file=sys.stderr)
                for p in stale:
                    print(f"  {p}", file=sys.stderr)
                return 1
            print(f"generated code is fresh ({len(fresh)} files)")
            return 0
        for gone in generated_files(PROTOS) - fresh:
            (PROTOS / gone).unlink()
        for made in fresh:
            (PROTOS / made).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out / made, PROTOS / made)
        print(f"wrote {len(fresh)} generated files under {PROTOS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
