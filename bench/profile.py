"""`make bench-profile`: py-spy records the server while wrk loads GetChat through Envoy (auth on), and prints
where the samples went: the frames that hold the most of them, by their own time and including callees.

  python bench/profile.py [--seconds N] [--auth off] [--path messages] [--out DIR]

py-spy needs ptrace rights over the server (root, or kernel.yama.ptrace_scope = 0); the collapsed stacks land
in --out (any flame graph tool draws them).
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import threading
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.reads import wrk
from bench.run import chat_with_page
from bench.stack import BIN, stack


def summary(collapsed: Path, top: int = 25) -> str:
    """Self and total sample counts per frame, from py-spy's collapsed stacks (`a;b;c count` per line)."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack_text.split(";")
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    lines = [f"{samples} samples", "", "by own time:"]
    lines += [f"  {100 * n / samples:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "including callees:"]
    lines += [f"  {100 * n / samples:5.1f}%  {frame}" for frame, n in total.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--auth", choices=("on", "off"), default="on")
    parser.add_argument("--path", choices=("chat", "messages"), default="chat", help="GetChat or a ListMessages page")
    parser.add_argument("--out", type=Path, default=Path(".bench"))
    args = parser.parse_args()
    args.out.mkdir(exist_ok=True)
    with stack(auth=args.auth == "on") as s:
        chat_id = chat_with_page(s)
        url = f"http://{s.edge}/chats/{chat_id}" + ("/messages?page_size=50" if args.path == "messages" else "")
        collapsed = args.out / "profile.txt"
        record = [str(BIN / "py-spy"), "record", "--pid", str(s.server_pid), "--duration", str(args.seconds)]
        load = threading.Thread(target=wrk, args=(url, s.key if args.auth == "on" else None, args.seconds + 2))
        load.start()
        subprocess.run([*record, "--format", "raw", "--output", str(collapsed), "--nonblocking"], check=True)
        load.join()
    print(summary(collapsed))
    print(f"\ncollapsed stacks (flamegraph.pl, speedscope and inferno read them): {collapsed}")


if __name__ == "__main__":
    main()
