"""What the edge renders for browsers (edge/envoy_browser.py): CORS origins as the operator lists them, and the
console's routes from a build directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentok_server.edge.envoy_browser import console_routes, cors_origins, cors_policy


def test_origins_are_read_and_checked() -> None:
    assert cors_origins("") == ()
    assert cors_origins(" https://a.example , http://b.example:5173 ") == ("https://a.example", "http://b.example:5173")
    for wrong in ("https://a.example/", "a.example", "https://a.example/app", "ftp://a.example"):
        with pytest.raises(ValueError, match="scheme://host"):
            cors_origins(wrong)


def test_no_origin_no_policy() -> None:
    assert cors_policy(()) == ""
    policy = json.loads(cors_policy(["https://a.example"]).split(":", 1)[1])["envoy.filters.http.cors"]
    assert policy["allow_origin_string_match"] == [{"exact": "https://a.example"}]
    assert "grpc-status-details-bin" in policy["expose_headers"]


def _routes(rendered: str) -> list[dict[str, object]]:
    return [json.loads(line.strip()[2:]) for line in rendered.splitlines()]


def test_console_routes_serve_each_built_file_without_a_key(tmp_path: Path) -> None:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "assets" / "index-abc.js").write_text("")
    routes = _routes(console_routes(tmp_path))
    paths = [r["match"] for r in routes]
    assert paths[:4] == [
        {"path": "/console"},
        {"path": "/console/"},
        {"path": "/console/assets/index-abc.js"},
        {"path": "/console/index.html"},
    ]
    assert paths[-1] == {"prefix": "/console/"}  # anything else: 404, without a key
    assert all(r["typed_per_filter_config"]["envoy.filters.http.ext_authz"]["disabled"] for r in routes)  # type: ignore[index]


def test_an_unbuilt_console_says_how_to_build_it(tmp_path: Path) -> None:
    routes = _routes(console_routes(tmp_path))
    body = routes[-1]["direct_response"]["body"]["inline_string"]  # type: ignore[index]
    assert "make run" in body
