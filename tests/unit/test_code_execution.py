"""Code blocks run in a subprocess in a scratch directory, with a time limit and an output cap."""

from __future__ import annotations

from agentok_server.engine.code_execution import CodeBlock, CodeExecutor, extract_code_blocks


def test_blocks_are_extracted_with_their_language() -> None:
    text = "Run this:\n```python\nprint(1)\n```\nthen\n```sh\necho hi\n```\nand\n```\nx = 2\n```"
    assert extract_code_blocks(text) == [
        CodeBlock("python", "print(1)"),
        CodeBlock("sh", "echo hi"),
        CodeBlock("python", "x = 2"),
    ]
    assert extract_code_blocks("no code here") == []


async def test_success_failure_and_unknown_language() -> None:
    run = CodeExecutor(timeout_seconds=10, output_limit=10_000).run
    assert await run([CodeBlock("python", "print(6 * 7)")]) == "exitcode: 0 (execution succeeded)\nCode output: \n42\n"
    failed = await run([CodeBlock("python", "raise SystemExit(3)"), CodeBlock("python", "print('never')")])
    assert failed.startswith("exitcode: 3 (execution failed)") and "never" not in failed
    unknown = await run([CodeBlock("cobol", "x")])
    assert unknown == "exitcode: 1 (execution failed)\nCode output: \nunknown language cobol"


async def test_code_runs_in_a_fresh_scratch_directory_without_the_servers_environment() -> None:
    run = CodeExecutor(timeout_seconds=10, output_limit=10_000).run
    out = await run([CodeBlock("sh", 'pwd; ls | wc -l; echo "key=${AGENTOK_LLM_API_KEY:-unset}"')])
    assert "agentok-code-" in out and "\n1\n" in out and "key=unset" in out


async def test_time_limit_and_output_cap() -> None:
    slow = CodeExecutor(timeout_seconds=0.5, output_limit=10_000)
    assert "Timeout" in await slow.run([CodeBlock("python", "import time; time.sleep(30)")])
    chatty = CodeExecutor(timeout_seconds=10, output_limit=100)
    out = await chatty.run([CodeBlock("python", "while True: print('x' * 50)")])
    assert "[output truncated at 100 bytes]" in out and len(out) < 300
