"""Generate the Python stubs (and .pyi types) for the wire API from protos/.

Run by setup.py on every install (`pip install .` or `-e .`) and by
tests/test_protos.py, which fails when the installed stubs drift from protos/.
Output: <out>/milo/<service>/v1/*_pb2.py, *_pb2.pyi, *_pb2_grpc.py, *_pb2_grpc.pyi.
Never edit the output by hand.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = PROTO_ROOT / "gen"


def proto_files(root: Path = PROTO_ROOT) -> list[Path]:
    return sorted(p for p in (root / "milo").rglob("*.proto"))


def _mypy_grpc_plugin() -> str:
    exe = Path(sys.executable).parent / "protoc-gen-mypy_grpc"
    found = str(exe) if exe.exists() else shutil.which("protoc-gen-mypy_grpc")
    if not found:
        raise RuntimeError("protoc-gen-mypy_grpc not found: pip install mypy-protobuf")
    return found


def generate(out: Path = DEFAULT_OUT) -> list[Path]:
    """Write the stubs under `out` (replacing what was there); return the files written."""
    import grpc_tools
    from grpc_tools import protoc  # build-time dependency, pinned in pyproject.toml

    out = Path(out)
    if (out / "milo").exists():
        shutil.rmtree(out / "milo")
    out.mkdir(parents=True, exist_ok=True)
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    files = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        f"--plugin=protoc-gen-mypy_grpc={_mypy_grpc_plugin()}",
        f"--mypy_grpc_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on " + " ".join(files))
    for pkg in [out / "milo", *(d for d in (out / "milo").rglob("*") if d.is_dir())]:
        (pkg / "__init__.py").touch()
    return sorted(p for p in out.rglob("*") if p.is_file())


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT):
        print(path)
