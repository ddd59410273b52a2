"""The seed document's own client code (docs/agentok-api.md), read from the document and run as its readers
would against the real stack: the Python snippet (with an httpx and with a requests client), the TypeScript
snippet under Node with its built-in fetch, and the six curl steps piped into jq.

Only the seed's base URL, API key and ids are filled in. The TypeScript snippet has no type annotations, so
Node runs it as it is, as an ES module (top-level await), with no transpiling. The curl steps also get the
seed's typos mended (listed at _mend): as printed, bash cannot run them against any server."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from ..support.api import Rest, two_agent_flow
from ..support.stack import Stack, create_key

SEED = (Path(__file__).resolve().parents[2] / "docs" / "agentok-api.md").read_text().splitlines()
SEED_URL = "https://api.agentok.ai"
SEED_KEY = "<api-key>"
REPLY = "Hello! I am a fixed-reply agent."
# A person asked every turn (ALWAYS), a fixed-reply agent (no model), as in the README's Hello flow.
HELLO_FLOW = two_agent_flow(
    a={"human_input_mode": "ALWAYS"}, b={"disable_llm": True, "default_auto_reply": REPLY}, b_type="conversable"
)


def _lines(first: str, last: str) -> str:
    """The seed's lines from the one starting with `first` to the next one starting with `last`."""
    start = next(i for i, line in enumerate(SEED) if line.startswith(first))
    end = next(i for i in range(start, len(SEED)) if SEED[i].startswith(last))
    return "\n".join(SEED[start : end + 1]) + "\n"


def _curl_step(n: int) -> str:
    """Step n's curl command as the seed prints it: from `curl` through its option lines and quoted body."""
    i = next(i for i, line in enumerate(SEED) if line.startswith(f"Step {n}:"))
    i = next(j for j in range(i, len(SEED)) if SEED[j].startswith("curl "))
    command, quoted = [SEED[i]], False
    for line in SEED[i + 1 :]:
        if not quoted and not line.startswith("--"):
            break
        command.append(line)
        quoted ^= line.count("'") % 2 == 1
    return "\n".join(command)


def _mend(command: str) -> str:
    """The seed's typos mended, and only those: steps 1 and 4 have a `--header` line after a line without its
    `\\`; step 4's last line ends in a `\\` that continues into nothing; step 1's JSON body has a `\\` at each
    line's end (inside single quotes, part of the body) and a trailing comma."""
    lines = command.splitlines()
    out = []
    for n, line in enumerate(lines):
        is_last = n == len(lines) - 1
        if not is_last and lines[n + 1].startswith("--") and not line.endswith("\\"):
            line += " \\"  # a line continuation left out (steps 1 and 4)
        if is_last:
            line = line.removesuffix(" \\")  # a continuation into nothing (step 4)
        out.append(line)
    mended = "\n".join(out)
    # Step 1's body: backslashes inside the single quotes are not line continuations but part of the JSON,
    # and JSON has no trailing comma.
    return re.sub(
        r"'\{ \\\n(.*?), \\\n\}'", lambda m: "'{\n" + m.group(1).replace(" \\\n", "\n") + "\n}'", mended, flags=re.S
    )


def _fill(text: str, base_url: str, key: str, ids: dict[str, str]) -> str:
    """The seed's base URL, key and id placeholders ("flow_id", "{chat_id}") replaced by real ones."""
    text = text.replace(SEED_URL, base_url).replace(SEED_KEY, key)
    for placeholder, value in ids.items():
        text = text.replace(placeholder, value)
    return text


@pytest.fixture()
def owner(stack: Stack) -> tuple[Rest, str]:
    """A fresh owner (so GET /chats lists only what the test made) and its key."""
    name = f"seed-reader-{uuid.uuid4().hex[:8]}"
    _, key = create_key(stack.env, name, name)
    return Rest(stack.rest_url, key), key


def _run(args: list[str]) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


@pytest.mark.parametrize("client", ["httpx.Client()", "requests.Session()"])
def test_the_python_snippet(stack: Stack, owner: tuple[Rest, str], client: str) -> None:
    rest, key = owner
    chat = rest.create_chat(rest.create_flow(HELLO_FLOW)["id"], name="for python")
    snippet = _lines("response = self.client.get(", "get_result = response.json()")
    # The seed's lines have lost their indentation; at module level, with `self` a plain object, Python runs
    # them as they are (the call's arguments sit inside its parentheses).
    program = (
        f"import json, types, httpx, requests\n"
        f"self = types.SimpleNamespace(client={client}, base_url={stack.rest_url!r})\n"
        f"api_key = {key!r}\n" + snippet + "print(json.dumps(get_result))\n"
    )
    get_result = json.loads(_run([sys.executable, "-c", program]))
    assert get_result == [chat]  # the chats themselves, as a JSON array


def test_the_typescript_snippet_with_nodes_fetch(stack: Stack, owner: tuple[Rest, str], tmp_path: Path) -> None:
    rest, key = owner
    chat = rest.create_chat(rest.create_flow(HELLO_FLOW)["id"], name="for node")
    snippet = _lines("const res = await fetch(", "const chat = await res.json();")
    module = tmp_path / "seed.mjs"
    module.write_text(
        f"const NEXT_PUBLIC_BACKEND_URL = {json.dumps(stack.rest_url)};\n"
        f"const token = {json.dumps(key)};\n" + snippet + "console.log(JSON.stringify(chat));\n"
    )
    node = shutil.which("node")
    assert node, "Node.js is needed (it also runs buf): apt-get install nodejs"
    assert json.loads(_run([node, str(module)])) == [chat]


def test_the_six_curl_steps_with_jq(stack: Stack, owner: tuple[Rest, str]) -> None:
    rest, key = owner
    assert shutil.which("jq"), "jq is needed: tools/jq.sh installs it (make test runs it)"
    flow_id = rest.create_flow(HELLO_FLOW)["id"]

    def jq(command: str, jq_filter: str) -> Any:
        return json.loads(_run(["bash", "-c", f"{command.rstrip()} | jq -c {jq_filter}"]))

    def step(n: int, jq_filter: str, ids: dict[str, str]) -> Any:
        return jq(_fill(_mend(_curl_step(n)), stack.rest_url, key, ids), jq_filter)

    # The authentication section's Bash example first: GET /chats, a JSON array (this owner has no chat yet).
    example = _lines("curl --request GET \\", "--header 'X-API-KEY: <api-key>'")
    assert jq(_fill(example, stack.rest_url, key, {}), "'[type, length]'") == ["array", 0]

    assert step(1, ".status", {"flow_id": flow_id}) == "ready"
    (chat,) = rest.chats()  # the one chat this owner has: the one step 1 made
    chat_id = {"{chat_id}": chat["id"]}
    assert step(2, ".status", chat_id) == "running"
    rest.wait_status(chat["id"], 0, {"wait_for_human_input"})
    assert step(3, ".status", chat_id) == "wait_for_human_input"
    assert step(4, "'[.[].content]'", chat_id) == ["Hello, Agentok Studio!", REPLY]
    assert step(5, ".status", chat_id) == "running"
    assert step(6, ".status", chat_id) is None  # DELETE answers {}
    assert rest.chats() == []
