"""Regenerate the Python code of every .proto under proto/layotto/proto.

    python proto/scripts/generate.py          # rewrite the committed code
    python proto/scripts/generate.py --check  # exit 1 when the committed code differs

Generated files (*_pb2.py, *_pb2_grpc.py, *.pyi) are committed so that installing
layotto-proto needs no protoc; the --check mode is what `tox -e proto` runs.

The modules of Dapr's contract (layotto/proto/dapr/**/*_pb2.py) are rewritten after protoc
to build their descriptors in the private pool of layotto.proto.dapr.pool instead of the
default one, so that they coexist in one process with Dapr's own SDK, which registers the
same names (see that module).
"""

from __future__ import annotations

import argparse
import difflib
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIR = PROTO_ROOT / "layotto" / "proto"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi", "_pb2_grpc.pyi")
PRIVATE_POOL_PACKAGE = Path("layotto") / "proto" / "dapr"
DEFAULT_POOL_CALL = "_descriptor_pool.Default().AddSerializedFile("
PRIVATE_POOL_CALL = "_dapr_pool.add_serialized_file("
IMPORTS_END = "# @@protoc_insertion_point(imports)\n"
PRIVATE_POOL_IMPORT = "from layotto.proto.dapr import pool as _dapr_pool  # added by proto/scripts/generate.py\n"


def _include_dirs() -> list[str]:
    import google.rpc
    import grpc_tools

    bundled = Path(grpc_tools.__file__).parent / "_proto"
    common_protos = Path(next(iter(google.rpc.__path__))).parent.parent
    return [str(PROTO_ROOT), str(bundled), str(common_protos)]


def _generate(out_dir: Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in SOURCE_DIR.rglob("*.proto"))
    args = [sys.executable, "-m", "grpc_tools.protoc"]
    args += [f"-I{d}" for d in _include_dirs()]
    args += [
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *protos,
    ]
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))
    done = subprocess.run(args, check=False, cwd=PROTO_ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(done.returncode)
    _use_private_pool(out_dir / PRIVATE_POOL_PACKAGE)


def _use_private_pool(package_dir: Path) -> None:
    """Make every *_pb2.py under ``package_dir`` add its file to the private pool of Dapr's contract."""
    for module in sorted(package_dir.rglob("*_pb2.py")):
        code = module.read_text()
        if code.count(DEFAULT_POOL_CALL) != 1 or code.count(IMPORTS_END) != 1:
            raise SystemExit(f"{module}: protoc's output changed shape, cannot move it to the private pool")
        code = code.replace(DEFAULT_POOL_CALL, PRIVATE_POOL_CALL)
        code = code.replace(IMPORTS_END, IMPORTS_END + PRIVATE_POOL_IMPORT)
        module.write_text(code)


def _generated_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name.endswith(GENERATED_SUFFIXES)}


def _check(fresh: Path) -> int:
    committed = _generated_files(PROTO_ROOT / "layotto")
    regenerated = _generated_files(fresh / "layotto")
    problems = [f"missing from the repo: layotto/{p}" for p in sorted(regenerated - committed)]
    problems += [f"stale, no .proto makes it: layotto/{p}" for p in sorted(committed - regenerated)]
    for rel in sorted(committed & regenerated):
        new, old = fresh / "layotto" / rel, PROTO_ROOT / "layotto" / rel
        if not filecmp.cmp(new, old, shallow=False):
            diff = difflib.unified_diff(old.read_text().splitlines(), new.read_text().splitlines(), lineterm="", n=1)
            problems.append(f"differs: layotto/{rel}\n" + "\n".join(list(diff)[:20]))
    for problem in problems:
        sys.stderr.write(problem + "\n")
    if problems:
        sys.stderr.write("generated code drifted: run `python proto/scripts/generate.py`\n")
        return 1
    sys.stdout.write(f"generated code matches the .proto sources ({len(committed)} files)\n")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        _generate(fresh)
        if ns.check:
            return _check(fresh)
        for rel in _generated_files(PROTO_ROOT / "layotto"):
            os.remove(PROTO_ROOT / "layotto" / rel)
        for rel in _generated_files(fresh / "layotto"):
            target = PROTO_ROOT / "layotto" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fresh / "layotto" / rel, target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
