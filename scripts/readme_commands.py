"""The README's `unike` commands, and which of them the test suite ran.

    .venv/bin/python scripts/readme_commands.py                 # list them
    .venv/bin/python scripts/readme_commands.py --check LOG     # each one ran? exit 1 if one did not

`make test` records every `unike` command line the suite runs (in-process or as a subprocess)
into `.pytest_cache/unike-argv.jsonl` (`UNIKE_ARGV_LOG`, set by `tests/conftest.py`). A README
command counts as run when a logged command of the same subcommand (not `--help`) ended with
status 0 and gave every option the README command gives (`--set KEY` counted by key) and as many
values of a multi-valued argument (`unike report A B`: two runs); values may
differ, since the suite runs on tiny inputs (`--cases 4` for `--cases 100`, a temporary folder for
`runs/b1`). The full `unike demo` is `make demo`'s; the suite runs it on 8 cases.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands(path: Path = ROOT / "README.md") -> list[list[str]]:
    """Every `unike` command line of ``path``'s bash blocks, as words after `unike`
    (continued lines joined; comments and leading VAR=value assignments dropped)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.split(" #", 1)[0].strip()
            words = shlex.split(line) if line else []
            while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                words = words[1:]
            if words and words[0].endswith("unike") and "..." not in words:
                out.append(words[1:])
    return out


def _subcommand(words: list[str]) -> tuple[str, ...]:
    """The command path: ``("bench",)``, ``("data", "validate")``."""
    path = []
    for w in words:
        if w.startswith("-") or (path and path[0] not in ("data", "world")) or len(path) == 2:
            break
        path.append(w)
    return tuple(path)


def _options(words: list[str]) -> set[str]:
    """Option names, ``--set``/``--judge-option`` counted with their key (``--set modality_aware``)."""
    opts = set()
    for i, w in enumerate(words):
        if w.startswith("-"):
            name = w.split("=", 1)[0]
            if name in ("--set", "--judge-option", "--pipeline-option") and i + 1 < len(words):
                name += " " + words[i + 1].split("=", 1)[0]
            opts.add(name)
    return opts


def _lists(words: list[str]) -> dict[str, int]:
    """Lengths of the arguments that take several values (``unike report RUN [RUN ...]``)."""
    from unike_interp.cli import build_parser

    args = vars(build_parser().parse_args(words))
    return {k: len(v) for k, v in args.items() if isinstance(v, list) and k not in ("set", "judge_option",
                                                                                    "pipeline_option")}


def coverage(commands: list[list[str]], logged: list[dict]) -> list[tuple[list[str], list[str] | None]]:
    """Each README command with the shortest logged command (status 0) that covers it, or None: the
    same subcommand, every option the README gives, and as many values of a multi-valued argument."""
    ok = [e["argv"] for e in logged if e.get("status") == 0 and not {"-h", "--help", "--version"} & set(e["argv"])]
    ran = [(a, _subcommand(a), _options(a), _lists(a)) for a in ok]  # each logged command parsed once
    result = []
    for cmd in commands:
        sub, opts, lists = _subcommand(cmd), _options(cmd), _lists(cmd)
        hits = [a for a, a_sub, a_opts, a_lists in ran if a_sub == sub and opts <= a_opts
                and all(a_lists.get(k, 0) >= n for k, n in lists.items())]
        result.append((cmd, min(hits, key=len) if hits else None))
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", metavar="LOG", help="a log of the commands run (UNIKE_ARGV_LOG, JSON lines)")
    ap.add_argument("--readme", default=str(ROOT / "README.md"), help="the README (default: the project's)")
    args = ap.parse_args()
    commands = readme_commands(Path(args.readme))
    if not args.check:
        for cmd in commands:
            print("unike " + shlex.join(cmd))
        return 0
    log = Path(args.check)
    if not log.is_file():
        print(f"{log}: no such file; run the test suite (make test) first", file=sys.stderr)
        return 2
    logged = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    missing = 0
    print(f"{len(commands)} README commands; {len(logged)} commands logged by the suite\n")
    for cmd, hit in coverage(commands, logged):
        missing += hit is None
        print(("ran      " if hit else "NOT RUN  ") + "unike " + shlex.join(cmd))
        if hit:
            shown = shlex.join(hit)
            print("         as unike " + (shown if len(shown) <= 160 else shown[:157] + "..."))
    print(f"\n{len(commands) - missing} of {len(commands)} README commands were run by the suite")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
