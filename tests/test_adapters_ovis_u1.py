"""What only Ovis-U1 does: its model code ships in its checkpoint folder, so nothing loads it without
``trust_remote_code`` (library, ``unike`` flags, and a run folder never grants it); the conditioning
is the last two LM layers concatenated, over the LM's positions (checked against a hand-run of the
stand-in's LM). The contract (edits reach the conditioning and the image, restore, recording,
bench + analyze) is in ``test_adapter_contract.py``, on the stand-in loaded through remote code."""

from __future__ import annotations

import pytest
import torch

from unike_interp.models import load_model
from unike_interp.models.ovis_u1 import T2I_PREFIX, RemoteCodeRefused, load_ovis_u1

from adapter_checks import tiny_adapter, tiny_path

pytestmark = pytest.mark.adapters


@pytest.fixture(scope="module")
def adapter():
    return tiny_adapter("ovis_u1")


def test_remote_code_is_off_by_default_and_the_error_names_the_flag(capsys):
    path = tiny_path("ovis_u1")
    with pytest.raises(RemoteCodeRefused, match=r"modeling_ovis_u1.py.*pass --trust-remote-code"):
        load_model(f"ovis_u1:{path}")
    with pytest.raises(ValueError, match="trust_remote_code applies to Ovis-U1 only"):
        load_model(f"blip3o:{path}", trust_remote_code=True)
    from unike_interp.cli import main

    assert main(["bench", "--model", f"ovis_u1:{path}", str(path / "never"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--trust-remote-code" in err and "Traceback" not in err
    assert not (path / "never").exists()
    with pytest.raises(ValueError, match=r"unknown \['steps'\]"):
        load_ovis_u1(path, trust_remote_code=True, pipeline_kwargs={"steps": 2})


def test_conditioning_is_the_last_two_layers_concatenated(adapter):
    a = adapter
    p = "the blue zab sits on a wooden table"
    inp = a.build_inputs(T2I_PREFIX + p)
    ids, mask = inp["input_ids"], inp["attention_mask"].long()
    with torch.no_grad():
        emb = a.model.merge(ids, inp["pixel_values"])
        hs = a.lm(inputs_embeds=emb, attention_mask=mask, output_hidden_states=True).hidden_states
    cond = a.conditioning([p])
    torch.testing.assert_close(cond.hidden, torch.cat([hs[-1], hs[-2]], -1), rtol=0, atol=1e-5)
    assert cond.lm_positions[0].tolist() == list(range(ids.shape[1]))
    assert (ids < 0).sum() == 18  # the blank 32-pixel image: start, 16 patches, end -- in the conditioning too


def test_an_unexpected_condition_dict_is_refused_with_its_shapes(adapter):
    with pytest.raises(RuntimeError, match=r"returned \{'a': \(1, 3, 64\), 'b': \(1, 3, 64\)\}.*exactly one \(B, S, 64\)"):
        adapter.cond_tensor({"a": torch.zeros(1, 3, 64), "b": torch.zeros(1, 3, 64)})


def test_a_config_file_cannot_grant_remote_code(tmp_path):
    from unike_interp.bench.spec import spec_from_values

    f = tmp_path / "run.toml"
    f.write_text('model = "ovis_u1:/m"\n[model_options]\ntrust_remote_code = true\n')
    with pytest.raises(ValueError, match="cannot come from a file.*pass --trust-remote-code"):
        spec_from_values("bench", {}, config_file=str(f))
    f.write_text('model = "ovis_u1:/m"\n')
    assert spec_from_values("bench", {}, config_file=str(f), trust_remote_code=True).model_options == {
        "trust_remote_code": True}
