"""Generate Python stubs, the Envoy descriptor set and the OpenAPI document (tools/openapi_doc.py) from proto/.

Usage: python tools/gen.py [OUT_DIR]   (default: gen/; then also the TypeScript client's code, see below)
       python tools/gen.py --typescript BASE_DIR   (only the TypeScript code, under BASE_DIR/clients/typescript/src/gen)
The staleness test runs it into a temporary directory and compares with gen/ (and clients/typescript/src/gen).
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


TYPESCRIPT_TEMPLATE = ROOT / "clients" / "typescript" / "buf.gen.yaml"
TYPESCRIPT_GEN = Path("clients") / "typescript" / "src" / "gen"


def generate_typescript(base: Path) -> None:
    """The TypeScript client's messages and service descriptors (protoc-gen-es, npm-installed in
    clients/typescript: `make install`), by buf from the repository's buf.yaml, into base/clients/typescript/src/gen."""
    import subprocess

    buf = ROOT / "node_modules" / ".bin" / "buf"
    plugin = ROOT / "clients" / "typescript" / "node_modules" / ".bin" / "protoc-gen-es"
    for tool in (buf, plugin):
        if not tool.exists():
            raise SystemExit(f"{tool} is missing: `make install` installs it")
    cmd = [str(buf), "generate", "--template", str(TYPESCRIPT_TEMPLATE), "-o", str(base)]
    subprocess.run(cmd, cwd=ROOT, check=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--typescript"]:
        generate_typescript(Path(sys.argv[2]))
    elif len(sys.argv) > 1:
        generate(Path(sys.argv[1]))
    else:
        generate(ROOT / "gen")
        generate_typescript(ROOT)
