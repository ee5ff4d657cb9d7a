"""Generate saga_pb2.py from schemas/saga.proto with protoc (Debian:
protobuf-compiler). Used by setup.py when the package is built, and by the
project's CMake build for its tests.

usage: python3 build_proto.py OUT_DIR [PROTO]"""
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO = os.path.join(HERE, "..", "..", "schemas", "saga.proto")


def find_proto():
    """schemas/saga.proto: $SAGA_PROTO, else the one two levels up."""
    path = os.environ.get("SAGA_PROTO") or DEFAULT_PROTO
    if not os.path.isfile(path):
        raise SystemExit(f"build_proto: {path} not found: build the package "
                         "from the project's tree (client/python) or set "
                         "SAGA_PROTO to schemas/saga.proto")
    return os.path.abspath(path)


def generate(out_dir, proto=None):
    """Write out_dir/saga_pb2.py. Raises SystemExit saying what failed."""
    proto = proto or find_proto()
    protoc = os.environ.get("PROTOC") or shutil.which("protoc")
    if not protoc:
        raise SystemExit("build_proto: protoc not found: install Debian's "
                         "protobuf-compiler (scripts/deps.sh does) or set "
                         "PROTOC")
    os.makedirs(out_dir, exist_ok=True)
    cmd = [protoc, f"-I{os.path.dirname(proto)}", f"--python_out={out_dir}",
           proto]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"build_proto: {' '.join(cmd)} failed "
                         f"({r.returncode}): {r.stderr.strip()}")
    return os.path.join(out_dir, "saga_pb2.py")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__.strip().splitlines()[-1])
    generate(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else None)
