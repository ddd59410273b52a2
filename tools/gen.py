"""Generate Python stubs, the Envoy descriptor set and the OpenAPI document (tools/openapi_doc.py) from proto/.

Usage: python tools/gen.py [OUT_DIR]   (default: gen/)
The staleness test runs it into a temporary directory and compares with gen/.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
THIRD_PARTY = ROOT / "third_party"
DESCRIPTOR_NAME = "agentok_descriptor.pb"
OPENAPI_NAME = "openapi.json"


def _protoc(args: list[str]) -> None:
    wkt = Path(grpc_tools.__file__).parent / "_proto"
    full = ["grpc_tools.protoc", f"-I{PROTO}", f"-I{THIRD_PARTY}", f"-I{wkt}", *args]
    if protoc.main(full) != 0:
        raise SystemExit(f"protoc failed: {' '.join(args)}")


def generate(out: Path) -> None:
    sources = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    pkg = out / "agentok"
    if pkg.exists():
        shutil.rmtree(pkg)
    out.mkdir(parents=True, exist_ok=True)
    _protoc([f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", *sources])
    for d in [pkg, *[p for p in pkg.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").write_text("")
    # Envoy's transcoder needs the google.rpc error types in the descriptor to print error bodies.
    _protoc(
        [
            "--include_imports",
            f"--descriptor_set_out={out / DESCRIPTOR_NAME}",
            *sources,
            "google/rpc/status.proto",
            "google/rpc/error_details.proto",
        ]
    )
    _strip_response_bodies(out / DESCRIPTOR_NAME)
    _openapi(out, sources)


def _strip_response_bodies(descriptor_path: Path) -> None:
    """Envoy's transcoder refuses to start on a `response_body` naming a message field (it takes only
    google.api.HttpBody), so its descriptor goes without them; the Lua filter in envoy/envoy.yaml.tmpl does that
    unwrapping instead. The OpenAPI document, made from the proto itself, keeps them."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_path.read_bytes())
    for file in files.file:
        for service in file.service:
            for method in service.method:
                if not method.options.HasExtension(annotations_pb2.http):
                    continue
                rule: http_pb2.HttpRule = method.options.Extensions[annotations_pb2.http]
                for binding in [rule, *rule.additional_bindings]:
                    binding.ClearField("response_body")
    descriptor_path.write_bytes(files.SerializeToString())


def _openapi(out: Path, sources: list[str]) -> None:
    """The OpenAPI document, from a descriptor with comments (source info); that descriptor itself is not kept:
    Envoy's has no comments and stays small."""
    from openapi_doc import openapi_json  # beside this script

    with tempfile.TemporaryDirectory() as tmp:
        described = Path(tmp) / "described.pb"
        _protoc(["--include_imports", "--include_source_info", f"--descriptor_set_out={described}", *sources])
        (out / OPENAPI_NAME).write_text(openapi_json(described.read_bytes()))


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "gen")
