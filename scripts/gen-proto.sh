#!/usr/bin/env bash
# Regenerate the Python stubs of the project's own gRPC APIs (proto/) into runtime/src.
# The stubs (and the messages' .pyi type stubs, which mypy reads) are committed (the wheel
# cannot see proto/); runtime/tests/unit/test_proto_stubs.py regenerates them into a
# temporary directory and fails if they differ.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/runtime/src}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
cd "$ROOT/proto"
# shellcheck disable=SC2046
"$PY" -m grpc_tools.protoc -I . --python_out="$OUT" --pyi_out="$OUT" --grpc_python_out="$OUT" $(find . -name '*.proto' | sort)
