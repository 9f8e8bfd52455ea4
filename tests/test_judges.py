"""Model judges: reply parsing, the OpenAI-compatible HTTP judge against a scripted local server,
the local VLM judge on a tiny random Llava, and the registry. No network beyond 127.0.0.1."""

import base64
import io
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import unike_interp
from unike_interp.data.validate import validate_records
from unike_interp.judges import JUDGES, JudgeReplyError, Verdict, build_judge_prompt, make_judge, parse_judge_reply
from unike_interp.judges.prompting import JudgeItem, judge_items

KEY = "sk-test-UNIKE-7f3a9c-do-not-leak"
ENV = "UNIKE_JUDGE_API_KEY"
GOOD_REPLY = {"observation": "blue", "matches_target": True, "confidence": 0.875, "explanation": "The zib is blue."}


@pytest.fixture
def record(good_record):
    records, problems = validate_records([good_record], strict=True)
    return records[0]


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# prompt and reply parsing
# --------------------------------------------------------------------------------------------
def test_verdict_positional_construction_and_explanation_default():
    v = Verdict(True, "blue", 0.5, "blue")
    assert v.error is None and v.explanation is None
    assert Verdict(None, None, None, "blue", "boom").error == "boom"
    assert v.to_dict()["explanation"] is None


def test_parse_good_json():
    assert parse_judge_reply(json.dumps(GOOD_REPLY)) == GOOD_REPLY
    got = parse_judge_reply('{"observation": " red ", "matches_target": false, "confidence": 1, "explanation": "x"}')
    assert got == {"observation": "red", "matches_target": False, "confidence": 1.0, "explanation": "x"}
    assert isinstance(got["confidence"], float)


def test_parse_fenced_and_surrounded_json():
    body = json.dumps(GOOD_REPLY, indent=2)
    assert parse_judge_reply(f"```json\n{body}\n```") == GOOD_REPLY
    assert parse_judge_reply(f"Sure! Here it is:\n```\n{body}\n```\nHope that helps.") == GOOD_REPLY
    assert parse_judge_reply(f"My answer: {body} -- done") == GOOD_REPLY


def test_parse_missing_key():
    bad = dict(GOOD_REPLY)
    del bad["confidence"]
    with pytest.raises(JudgeReplyError, match="lacks key.*confidence"):
        parse_judge_reply(json.dumps(bad))


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("matches_target", "true", "matches_target.*JSON boolean"),
        ("matches_target", 1, "matches_target.*JSON boolean"),
        ("matches_target", None, "matches_target.*JSON boolean"),
        ("confidence", 1.5, "confidence.*in \\[0, 1\\]"),
        ("confidence", -0.1, "confidence.*in \\[0, 1\\]"),
        ("confidence", "0.9", "confidence.*number"),
        ("confidence", True, "confidence.*number"),
        ("observation", 3, "observation.*non-empty string"),
        ("observation", "  ", "observation.*non-empty string"),
        ("explanation", None, "explanation.*string"),
    ],
)
def test_parse_wrong_types(key, value, message):
    bad = dict(GOOD_REPLY, **{key: value})
    with pytest.raises(JudgeReplyError, match=message):
        parse_judge_reply(json.dumps(bad))


@pytest.mark.parametrize(
    "text, message",
    [
        ("The image shows a blue zib.", "no JSON object"),
        ("", "no JSON object"),
        ("{observation: blue, matches_target: yes}", "not one valid JSON object"),
        ('{"a": 1} and {"b": 2}', "not one valid JSON object"),
        ('[{"observation": "blue"}]', "JSON but not an object"),
        ('"blue"', "JSON but not an object"),
    ],
)
def test_parse_non_json(text, message):
    with pytest.raises(JudgeReplyError, match=message):
        parse_judge_reply(text)
    assert issubclass(JudgeReplyError, ValueError)


def test_prompt_names_question_target_and_visual_target(record, image):
    stage = record.stage_1
    (item,) = judge_items(image[None], [record], ["stage_1"])
    assert (item.target, item.visual_target) == ("blue", stage.visual_target)
    for text in (stage.vqa_question, "blue", stage.visual_target, "observation", "matches_target", "confidence",
                 "explanation"):
        assert text in item.prompt
    # Checking the pre-edit value: the post-edit visual_target would contradict it, so it is left out.
    (item,) = judge_items(image[None], [record], ["stage_1"], ["red"])
    assert item.target == "red" and item.visual_target is None
    assert stage.visual_target not in item.prompt and "'red'" in item.prompt
    assert build_judge_prompt("Q?", "blue") == JudgeItem(image, "Q?", "blue", None).prompt


def test_judge_items_rejects_bad_batches(record, image):
    with pytest.raises(ValueError, match="one case, stage"):
        judge_items(image[None], [record, record], ["stage_1"])
    with pytest.raises(ValueError, match="uint8"):
        judge_items(image[None].astype(np.float32), [record], ["stage_1"])
    with pytest.raises(KeyError, match="stage_3"):
        judge_items(image[None], [record], ["stage_3"])


# --------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP judge against a scripted stub server
# --------------------------------------------------------------------------------------------
class StubServer:
    """A chat-completions stub on 127.0.0.1. ``script`` holds one action per expected request:

    ``("reply", content)``: 200 with a chat completion whose message content is ``content``;
    ``("status", code, headers, body)``: that raw response; ``("late", seconds, content)``: a reply
    sent only after ``seconds``. An unscripted request gets 418 so a test notices it.
    """

    def __init__(self):
        self.script = deque()
        self.requests = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with stub.lock:
                    stub.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                    action = stub.script.popleft() if stub.script else ("status", 418, {}, "unscripted request")
                if action[0] == "late":
                    time.sleep(action[1])
                    action = ("reply", action[2])
                if action[0] == "reply":
                    completion = {"id": "x", "object": "chat.completion", "model": "stub",
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": action[1]},
                                               "finish_reason": "stop"}]}
                    action = ("status", 200, {"Content-Type": "application/json"}, json.dumps(completion))
                _, code, headers, payload = action
                data = payload.encode()
                try:
                    self.send_response(code)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def push(self, *actions):
        self.script.extend(actions)


@pytest.fixture
def stub():
    server = StubServer()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def make_openai(stub, monkeypatch):
    """Build an OpenAIJudge on the stub with fast retries; the key comes from the environment."""
    from unike_interp.judges import OpenAIJudge, OpenAIJudgeConfig

    monkeypatch.setenv(ENV, KEY)
    judges = []

    def make(**overrides):
        kw = dict(base_url=stub.base_url, model="stub-vl", timeout_s=2.0, max_retries=2, backoff_s=0.01)
        kw.update(overrides)
        judge = OpenAIJudge(OpenAIJudgeConfig(**kw))
        judges.append(judge)
        return judge

    yield make
    for judge in judges:
        judge.close()


def assert_no_key(*things, files=()):
    for thing in things:
        assert KEY not in repr(thing)
    for path in files:
        assert KEY not in Path(path).read_text(encoding="utf-8")


def test_openai_valid_reply(stub, make_openai, record, image):
    stub.push(("reply", json.dumps(GOOD_REPLY)))
    judge = make_openai()
    v = judge.judge(image, record, "stage_1")
    assert v == Verdict(True, "blue", 0.875, "blue", None, "The zib is blue.")
    assert judge.stats.to_dict() == {"requests": 1, "retries": 0, "cache_hits": 0, "errors": 0}
    (req,) = stub.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == f"Bearer {KEY}"
    body = req["body"]
    assert body["model"] == "stub-vl" and body["temperature"] == 0 and body["max_tokens"] == 256
    (msg,) = body["messages"]
    parts = {p["type"]: p for p in msg["content"]}
    assert record.stage_1.vqa_question in parts["text"]["text"]
    url = parts["image_url"]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    sent = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    np.testing.assert_array_equal(sent, image)
    assert_no_key(v, judge, judge.config, judge.stats)


def test_openai_target_override_and_no_key_server(stub, make_openai, record, image, monkeypatch):
    monkeypatch.delenv(ENV)
    stub.push(("reply", json.dumps(dict(GOOD_REPLY, matches_target=False, confidence=0.2))))
    judge = make_openai(api_key_env=None)
    v = judge.judge(image, record, "stage_1", target="red")
    assert (v.verdict, v.target, v.confidence, v.error) == (False, "red", 0.2, None)
    (req,) = stub.requests
    assert "Authorization" not in req["headers"]
    assert "'red'" in req["body"]["messages"][0]["content"][1]["text"]


def test_openai_retries_429_and_500_then_succeeds(stub, make_openai, record, image):
    stub.push(("status", 429, {"Retry-After": "0"}, "slow down"), ("status", 500, {}, "oops"),
              ("reply", json.dumps(GOOD_REPLY)))
    judge = make_openai()
    v = judge.judge(image, record, "stage_1")
    assert v.verdict is True and v.error is None
    assert judge.stats.to_dict() == {"requests": 3, "retries": 2, "cache_hits": 0, "errors": 0}


def test_openai_retries_after_timeout(stub, make_openai, record, image):
    stub.push(("late", 1.0, json.dumps(GOOD_REPLY)), ("reply", json.dumps(GOOD_REPLY)))
    judge = make_openai(timeout_s=0.3)
    t0 = time.monotonic()
    v = judge.judge(image, record, "stage_1")
    assert v.verdict is True and v.error is None
    assert judge.stats.requests == 2 and judge.stats.retries == 1
    assert time.monotonic() - t0 < 1.0  # it gave up on the late reply instead of waiting for it


def test_openai_exhausted_retries_is_error_and_not_cached(stub, make_openai, record, image, tmp_path):
    stub.push(*[("status", 503, {}, "overloaded")] * 3)
    judge = make_openai(max_retries=2, cache_dir=tmp_path / "cache")
    v = judge.judge(image, record, "stage_1")
    assert v.verdict is None and v.predicted is None and v.confidence is None and v.target == "blue"
    assert "HTTP 503" in v.error and "gave up after 3 tries" in v.error
    assert judge.stats.to_dict() == {"requests": 3, "retries": 2, "cache_hits": 0, "errors": 1}
    assert not list(tmp_path.rglob("*.json"))
    # Errors are not cached: the same call asks the server again.
    stub.push(("reply", json.dumps(GOOD_REPLY)))
    assert judge.judge(image, record, "stage_1").verdict is True
    assert judge.stats.requests == 4 and judge.stats.cache_hits == 0


def test_openai_client_error_is_not_retried(stub, make_openai, record, image):
    stub.push(("status", 401, {}, json.dumps({"error": {"message": f"bad key {KEY}"}})))
    judge = make_openai()
    v = judge.judge(image, record, "stage_1")
    assert v.verdict is None and "HTTP 401" in v.error
    assert judge.stats.requests == 1 and judge.stats.retries == 0 and judge.stats.errors == 1
    assert_no_key(v)  # the server echoed the key; the verdict must not carry it


def test_openai_malformed_reply_is_judge_error(stub, make_openai, record, image, tmp_path):
    stub.push(("reply", "The zib looks blue to me."),
              ("reply", json.dumps(dict(GOOD_REPLY, matches_target="true"))),
              ("status", 200, {"Content-Type": "application/json"}, "not json at all"))
    judge = make_openai(cache_dir=tmp_path)
    v1, v2, v3 = judge.judge_batch(np.stack([image] * 3), [record] * 3, ["stage_1"] * 3)
    assert v1.verdict is None and "reply rejected" in v1.error and "no JSON object" in v1.error
    assert "The zib looks blue" in v1.error  # the error quotes the reply
    assert v2.verdict is None and "matches_target" in v2.error
    assert v3.verdict is None and "not a chat completion" in v3.error
    assert judge.stats.to_dict() == {"requests": 3, "retries": 0, "cache_hits": 0, "errors": 3}
    assert not list(tmp_path.glob("*.json"))


def test_openai_backoff_waits_are_exponential_and_retry_after_is_capped(stub, make_openai, record, image,
                                                                        monkeypatch):
    from unike_interp.judges import openai_http

    waits = []
    monkeypatch.setattr(openai_http, "_sleep", waits.append)
    stub.push(("status", 500, {}, ""), ("status", 502, {}, ""), ("status", 429, {"Retry-After": "3600"}, ""),
              ("reply", json.dumps(GOOD_REPLY)))
    judge = make_openai(max_retries=3, backoff_s=0.01, max_backoff_s=0.5)
    assert judge.judge(image, record, "stage_1").verdict is True
    assert waits == pytest.approx([0.01, 0.02, 0.5])


def test_openai_connection_refused_is_error(make_openai, record, image):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    judge = make_openai(base_url=f"http://127.0.0.1:{port}/v1", max_retries=1)
    v = judge.judge(image, record, "stage_1")
    assert v.verdict is None and "ConnectError" in v.error and "gave up after 2 tries" in v.error
    assert judge.stats.requests == 2 and judge.stats.retries == 1


def test_openai_cache_memory_and_disk(stub, make_openai, record, image, tmp_path, caplog):
    cache = tmp_path / "cache"
    stub.push(("reply", json.dumps(GOOD_REPLY)))
    judge = make_openai(cache_dir=cache)
    first = judge.judge(image, record, "stage_1")
    second = judge.judge(image, record, "stage_1")
    assert first == second and first.verdict is True
    assert len(stub.requests) == 1 and judge.stats.cache_hits == 1
    files = list(cache.glob("*.json"))
    assert len(files) == 1 and not list(cache.glob("*.tmp"))
    saved = json.loads(files[0].read_text())
    assert saved["verdict"] == first.to_dict() and saved["meta"]["model"] == "stub-vl"

    fresh = make_openai(cache_dir=str(cache))  # a new judge (new process, say) reads the files
    assert fresh.judge(image, record, "stage_1") == first
    assert len(stub.requests) == 1 and fresh.stats.to_dict()["cache_hits"] == 1

    # Anything in the key that differs is a miss: another target, another model, another image.
    stub.push(("reply", json.dumps(GOOD_REPLY)), ("reply", json.dumps(GOOD_REPLY)),
              ("reply", json.dumps(GOOD_REPLY)))
    fresh.judge(image, record, "stage_1", target="red")
    make_openai(cache_dir=cache, model="other").judge(image, record, "stage_1")
    fresh.judge(255 - image, record, "stage_1")
    assert len(stub.requests) == 4 and len(list(cache.glob("*.json"))) == 4

    # A corrupt file is a miss, not a crash.
    files[0].write_text("{truncated")
    stub.push(("reply", json.dumps(GOOD_REPLY)))
    assert make_openai(cache_dir=cache).judge(image, record, "stage_1") == first
    assert len(stub.requests) == 5
    assert_no_key(first, fresh, files=list(cache.iterdir()))
    assert KEY not in caplog.text


def test_openai_key_never_leaks_in_errors_or_logs(stub, make_openai, record, image, caplog):
    caplog.set_level(logging.DEBUG)  # httpx/httpcore debug logging included
    stub.push(("status", 500, {}, f"internal error for Bearer {KEY}"), ("status", 500, {}, KEY),
              ("reply", "nope " + KEY))
    judge = make_openai(max_retries=1)
    v1, v2 = judge.judge_batch(np.stack([image, 255 - image]), [record, record], ["stage_1", "stage_1"])
    assert v1.verdict is None and v2.verdict is None and "[redacted]" in v1.error
    assert_no_key(v1, v2, judge, judge.config, judge.stats)
    assert KEY not in caplog.text


def test_openai_missing_env_var_is_clear_error(monkeypatch, stub):
    from unike_interp.judges import OpenAIJudge, OpenAIJudgeConfig

    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(ValueError, match=f"environment variable {ENV}"):
        OpenAIJudge(OpenAIJudgeConfig(base_url=stub.base_url, model="m"))
    monkeypatch.setenv("MY_JUDGE_KEY", "")
    with pytest.raises(ValueError, match="MY_JUDGE_KEY"):
        OpenAIJudge(OpenAIJudgeConfig(base_url=stub.base_url, model="m", api_key_env="MY_JUDGE_KEY"))


def test_openai_config_validation():
    from unike_interp.judges import OpenAIJudgeConfig

    cfg = OpenAIJudgeConfig(base_url="http://127.0.0.1:8000/v1/", model="m", cache_dir="x")
    assert cfg.url == "http://127.0.0.1:8000/v1/chat/completions" and cfg.cache_dir == Path("x")
    assert (cfg.timeout_s, cfg.max_retries, cfg.backoff_s, cfg.temperature) == (60.0, 4, 1.0, 0.0)
    for bad in [dict(base_url="127.0.0.1:8000"), dict(model=""), dict(timeout_s=0), dict(max_retries=-1),
                dict(max_retries=1.5), dict(backoff_s=-1), dict(max_tokens=0)]:
        with pytest.raises(ValueError):
            OpenAIJudgeConfig(**{"base_url": "http://h/v1", "model": "m", **bad})
    with pytest.raises(ValueError, match="credentials") as exc:
        OpenAIJudgeConfig(base_url=f"http://user:{KEY}@h/v1", model="m")
    assert KEY not in str(exc.value)
    with pytest.raises(ValueError, match="NAME of an environment variable") as exc:
        OpenAIJudgeConfig(base_url="http://h/v1", model="m", api_key_env=KEY)  # the key pasted by mistake
    assert KEY not in str(exc.value)
    with pytest.raises(TypeError):
        OpenAIJudgeConfig(base_url="http://h/v1", model="m", api_key=KEY)  # there is no such field


# --------------------------------------------------------------------------------------------
# registry and package import cost
# --------------------------------------------------------------------------------------------
def test_registry(stub, monkeypatch, tmp_path):
    from unike_interp.judges import OpenAIJudge

    assert JUDGES == ("verifier", "openai", "vlm")
    with pytest.raises(ValueError, match="verifier, openai, vlm"):
        make_judge("gpt")
    monkeypatch.setenv(ENV, KEY)
    judge = make_judge("openai", options={"base_url": stub.base_url, "model": "m", "max_retries": 0})
    assert isinstance(judge, OpenAIJudge) and judge.name == "openai" and judge.config.max_retries == 0
    with pytest.raises(ValueError, match="unknown openai judge option.*api_key"):
        make_judge("openai", options={"base_url": stub.base_url, "model": "m", "api_key": KEY})
    with pytest.raises(ValueError, match="needs option.*model"):
        make_judge("openai", options={"base_url": stub.base_url})
    with pytest.raises(ValueError, match="needs option 'path'"):
        make_judge("vlm")
    with pytest.raises(FileNotFoundError, match="local model directory"):
        make_judge("vlm", options={"path": str(tmp_path / "nowhere")})
    with pytest.raises(ValueError, match="no options"):
        make_judge("verifier", options={"x": 1})


def test_importing_judges_is_light():
    code = ("import sys, unike_interp.judges as j; "
            "print(sorted(m for m in ('httpx', 'transformers', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------
# local VLM judge on a tiny random Llava, built offline
# --------------------------------------------------------------------------------------------
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}{{ '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
)


@pytest.fixture(scope="module")
def tiny_vlm_dir(tmp_path_factory):
    """A random 1-layer Llava (CLIP vision tower + Llama) and its processor, saved to a folder."""
    import torch
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

    tok = PreTrainedTokenizerFast.from_pretrained(Path(unike_interp.__file__).parent / "assets/synthworld/tokenizer")
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    image_processor = CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    # "full" keeps CLIP's class token, so each image is (16/8)**2 patches + 1 = 5 image tokens.
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=8,
                               vision_feature_select_strategy="full", num_additional_image_tokens=1,
                               chat_template=CHAT_TEMPLATE)
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                              image_size=16, patch_size=8, projection_dim=16)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                       pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
                         vision_feature_select_strategy="full", vision_feature_layer=-1)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_vlm")
    LlavaForConditionalGeneration(config).save_pretrained(out)
    processor.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def vlm_judge(tiny_vlm_dir):
    from unike_interp.judges import LocalVLMJudge

    return LocalVLMJudge.from_pretrained(tiny_vlm_dir, device="cpu", dtype="float32", max_new_tokens=8)


def test_vlm_random_model_reply_is_judge_error(vlm_judge, record, image):
    import torch

    assert vlm_judge.name == "vlm" and vlm_judge.device == torch.device("cpu")
    text = vlm_judge.prompt_text("Is it blue?")
    assert text.startswith("user: <image>Is it blue?") and text.endswith("assistant: ")
    v = vlm_judge.judge(image, record, "stage_1")
    assert v.verdict is None and v.predicted is None and v.target == "blue"
    assert v.error.startswith("vlm judge reply rejected:") and "reply" in v.error


def test_vlm_success_path_with_patched_decode(vlm_judge, record, image, monkeypatch):
    seen = []

    def fake_decode(token_ids):
        seen.append(token_ids)  # the real generate ran and produced new tokens only
        return "```json\n" + json.dumps(dict(GOOD_REPLY, matches_target=False, observation="red")) + "\n```"

    monkeypatch.setattr(vlm_judge, "_decode", fake_decode)
    v1, v2 = vlm_judge.judge_batch(np.stack([image, image]), [record, record], ["stage_1", "stage_1"],
                                   ["blue", "red"])
    assert v1 == Verdict(False, "red", 0.875, "blue", None, "The zib is blue.")
    assert v2.target == "red" and v2.error is None
    assert len(seen) == 2 and seen[0].ndim == 1 and 1 <= len(seen[0]) <= vlm_judge.max_new_tokens


def test_vlm_plain_prompt_without_chat_template(tiny_vlm_dir, record, image, monkeypatch):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from unike_interp.judges import LocalVLMJudge

    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir, local_files_only=True)
    processor = AutoProcessor.from_pretrained(tiny_vlm_dir, local_files_only=True)
    processor.chat_template = None
    judge = LocalVLMJudge(model, processor, device=torch.device("cpu"), max_new_tokens=4)
    assert judge.prompt_text("Is it blue?") == "<image>\nIs it blue?\n"
    monkeypatch.setattr(judge, "_decode", lambda ids: json.dumps(GOOD_REPLY))
    assert judge.judge(image, record, "stage_1").verdict is True
    assert judge.stats == {"generations": 1, "errors": 0}


def test_registry_builds_vlm(tiny_vlm_dir):
    judge = make_judge("vlm", device="cpu", options={"path": str(tiny_vlm_dir), "max_new_tokens": 4})
    assert judge.name == "vlm" and judge.max_new_tokens == 4


def test_bench_with_the_openai_judge_from_the_command_line(stub, tmp_path, monkeypatch, capsys):
    """`unike bench --judge openai` end to end on the stub: every image judged by HTTP, the key read
    from the environment and found in no file of the run folder and nowhere in the output."""
    from unike_interp.cli import main

    monkeypatch.setenv(ENV, KEY)
    monkeypatch.setenv("UNIKE_CACHE_DIR", str(tmp_path / "cache"))
    stub.push(*[("reply", json.dumps(GOOD_REPLY))] * 64)
    run = tmp_path / "run"
    argv = ["bench", str(run), "--judge", "openai", "--judge-option", f"base_url={stub.base_url}",
            "--judge-option", "model=stub-vl", "--editor", "rome", "--cases", "1", "--image-locality", "0",
            "--text-locality", "2", "--bootstrap", "10", "--sample-steps", "4", "--set", "stats_samples=3000",
            "--set", "n_prefixes=2", "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    table = json.loads((run / "table.json").read_text())
    n_images = table["n_items"] * 4  # pre-edit against old and new, direct, reasoning
    assert len(stub.requests) == n_images and table["counts"]["judge_errors"] == 0
    assert all(r["headers"]["Authorization"] == f"Bearer {KEY}" for r in stub.requests)
    assert KEY not in out + err
    assert_no_key(files=[p for p in run.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl", ".md", ".csv",
                                                                                    ".html")])
