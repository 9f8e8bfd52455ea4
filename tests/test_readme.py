"""The README's commands and examples are the tool as it is.

Every ``unike`` command line in the ``bash`` blocks of the README and of ``docs/`` is parsed by the real parser (a
renamed flag or a wrong arity fails here), and the Python example that records, edits and patches
is run; the long commands themselves are run by the demo and the other tests.
"""

import re
import shlex
from pathlib import Path

import pytest
import torch

from unike_interp.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: The README and the documentation it links to.
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]


def _blocks(lang: str, files=(README,)) -> list[str]:
    return [b for f in files for b in re.findall(rf"```{lang}\n(.*?)```", f.read_text(encoding="utf-8"), flags=re.S)]


def _commands() -> list[str]:
    lines = []
    for block in _blocks("bash", DOCS):
        joined = re.sub(r"\\\n\s*", " ", block)  # continued lines
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            words = shlex.split(line) if line else []
            while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):  # VAR=value before the command
                words = words[1:]
            if words and words[0].endswith("unike") and "..." not in words:
                lines.append(words)
    return lines


def test_every_readme_command_parses():
    commands = _commands()
    assert len(commands) >= 20, "the README's unike commands were not found"
    parser = build_parser()
    for words in commands:
        try:
            args = parser.parse_args(words[1:])
        except SystemExit as exc:  # pragma: no cover - the message names the command
            pytest.fail(f"README command does not parse ({exc.code}): {' '.join(words)}")
        assert getattr(args, "func", None) is not None, " ".join(words)


def test_the_recording_and_patching_example_runs(capsys, tmp_path):
    import runpy

    block = next(b for b in _blocks("python") if "lm.model.layers[layer].output = clean" in b)
    script = tmp_path / "readme_example.py"  # nnsight reads the source of a traced block from its file
    script.write_text(block, encoding="utf-8")
    scope = runpy.run_path(str(script))
    adapter, record = scope["adapter"], scope["record"]
    assert scope["change"].shape[0] == 1 and float(abs(scope["change"]).max()) > 1e-3  # the edit reached the conditioning
    old = adapter.tokenizer.decode(adapter.next_token_logits([record.stage_1.prompt]).argmax(-1))
    assert capsys.readouterr().out.split(" vs edited")[0].strip() == old.strip()  # patched back to the unedited answer
    # the example restored the model bit for bit, and nothing requires a gradient
    from unike_interp.models import load_model

    fresh = load_model("toy-direct")
    assert all(torch.equal(a, b) for a, b in zip(adapter.lm.state_dict().values(), fresh.lm.state_dict().values()))
    assert not any(p.requires_grad for p in adapter.lm.parameters())
