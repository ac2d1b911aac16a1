#!/usr/bin/env bash
# Regenerate the Python modules of the .proto files beside this script; run from anywhere.
# The output is committed, so only whoever edits a .proto needs grpcio-tools.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"

cd "$here"
"$python" -m grpc_tools.protoc \
    --proto_path=. \
    --python_out=. \
    --pyi_out=. \
    --grpc_python_out=. \
    order_service.proto account_service.proto

for grpc_module in *_pb2_grpc.py; do
    # protoc writes `import x_pb2 as ...`, which only works with this folder on sys.path.
    sed -i -E 's/^import ([A-Za-z0-9_]+_pb2) as /from . import \1 as /' "$grpc_module"
done

for generated in *_pb2.py *_pb2.pyi *_pb2_grpc.py; do
    # Generated code is neither annotated nor linted; protobuf and grpcio ship no type hints.
    if ! head -n 1 "$generated" | grep -q '^# mypy: ignore-errors'; then
        sed -i '1i # mypy: ignore-errors' "$generated"
    fi
done
