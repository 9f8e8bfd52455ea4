"""A VQA judge behind any OpenAI-compatible chat-completions endpoint (hosted API, vLLM, llama.cpp, ...).

Each image is sent once as ``POST {base_url}/chat/completions`` with a body of the form::

    {"model": "<model>", "temperature": 0.0, "max_tokens": 256,
     "messages": [{"role": "user", "content": [
         {"type": "image_url", "image_url": {"url": "data:image/png;base64,<PNG>"}},
         {"type": "text", "text": "<build_judge_prompt(...)>"}]}]}

and the reply's ``choices[0].message.content`` is read with :func:`.prompting.parse_judge_reply`.

Failure policy (every failure ends as ``Verdict(verdict=None, error=...)``, never as a pass or fail):

* HTTP 429, HTTP 5xx, timeouts and connection errors are retried up to ``max_retries`` times
  (so at most ``max_retries + 1`` requests), waiting ``backoff_s * 2**n`` before retry ``n``, or
  the server's ``Retry-After`` when it sends one; every wait is capped at ``max_backoff_s``.
* Any other 4xx, a response body that is not a chat completion, or a missing key is an error at once.
* A reply that :func:`parse_judge_reply` rejects is an error at once, not retried: the request is
  made at temperature 0, so asking again would mostly buy the same reply at the same price.

The API key is read from the environment variable ``api_key_env`` at request time and is held
nowhere else: not in the config, the judge, its cache files, or any message (error texts are
scrubbed of it in case a server echoes it back).

Verdicts are cached (memory, and one JSON file per key under ``cache_dir`` when set) by
``sha256(PNG bytes, model, question, target, visual_target, prompt version)``; only successful
verdicts are cached.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Sequence

import httpx
import numpy as np
from PIL import Image

from ..data.schema import Record
from .base import Judge, Verdict
from .prompting import PROMPT_VERSION, JudgeItem, JudgeReplyError, judge_items, parse_judge_reply

log = logging.getLogger(__name__)

_sleep = time.sleep  # module-level so tests can record the waits instead of sleeping
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BODY_EXCERPT = 200


@dataclass(frozen=True)
class OpenAIJudgeConfig:
    """Settings of :class:`OpenAIJudge`. Holds no secret, so its plain dataclass repr is safe.

    ``base_url``: the API root, e.g. ``http://127.0.0.1:8000/v1`` (``/chat/completions`` is appended).
    ``api_key_env``: the *name* of the environment variable holding the key; ``None`` sends no
    ``Authorization`` header (local servers). ``max_retries``: retries after the first request.
    ``cache_dir``: where verdict JSON files go (``None``: memory cache only).
    """

    base_url: str
    model: str
    api_key_env: str | None = "UNIKE_JUDGE_API_KEY"
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    temperature: float = 0.0
    max_tokens: int = 256
    cache_dir: Path | None = None

    def __post_init__(self):
        if not isinstance(self.base_url, str) or not re.match(r"https?://[^/]+", self.base_url):
            raise ValueError(f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {self.base_url!r}")
        if "@" in self.base_url.split("/")[2]:
            # user:password@host would put a credential into every log line and error message.
            raise ValueError("base_url must not carry credentials; put the key in the environment variable api_key_env")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError(f"model must be a non-empty string, got {self.model!r}")
        if self.api_key_env is not None and not (
            isinstance(self.api_key_env, str) and _ENV_NAME.fullmatch(self.api_key_env)
        ):
            # The value is not echoed: the usual mistake here is pasting the key itself.
            raise ValueError(
                "api_key_env must be the NAME of an environment variable (letters, digits, underscores), "
                "not the key itself; or None for a server that needs no key"
            )
        for name in ("timeout_s", "max_backoff_s"):
            if not _number(getattr(self, name)) or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        for name in ("backoff_s", "temperature"):
            if not _number(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a number >= 0, got {getattr(self, name)!r}")
        if not _integer(self.max_retries) or self.max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {self.max_retries!r}")
        if not _integer(self.max_tokens) or self.max_tokens < 1:
            raise ValueError(f"max_tokens must be an integer >= 1, got {self.max_tokens!r}")
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _integer(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass
class JudgeStats:
    """Counters: HTTP requests sent, retries among them, cache hits, error verdicts returned."""

    requests: int = 0
    retries: int = 0
    cache_hits: int = 0
    errors: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class _RequestFailed(Exception):
    """The endpoint gave no usable reply (already retried where that made sense)."""


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of an ``(H, W, 3)`` uint8 image (deterministic, so usable as a cache key)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
    return buf.getvalue()


class _VerdictCache:
    """Successful verdicts by key: a dict, mirrored to ``<dir>/<key>.json`` when a dir is given.

    File format: ``{"key": str, "meta": {...what was asked...}, "verdict": Verdict.to_dict()}``.
    An unreadable file counts as a miss (it is rewritten on the next success).
    """

    def __init__(self, directory: Path | None):
        self.directory = directory
        self.memory: dict[str, Verdict] = {}

    def get(self, key: str) -> Verdict | None:
        if key in self.memory:
            return self.memory[key]
        if self.directory is None:
            return None
        path = self.directory / f"{key}.json"
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
            verdict = Verdict(**{f.name: obj["verdict"][f.name] for f in fields(Verdict)})
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable judge cache file %s (%s)", path, exc)
            return None
        if verdict.error is not None or verdict.verdict is None:
            return None
        self.memory[key] = verdict
        return verdict

    def put(self, key: str, verdict: Verdict, meta: dict) -> None:
        self.memory[key] = verdict
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"key": key, "meta": meta, "verdict": verdict.to_dict()}, ensure_ascii=False, indent=1)
        # tmp file + os.replace: a reader (or a killed run) never sees a half-written file.
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{key}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, self.directory / f"{key}.json")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class OpenAIJudge(Judge):
    """Judges images with a vision chat model behind an OpenAI-compatible HTTP API.

    Raises ``ValueError`` at construction when ``config.api_key_env`` names a variable that is
    unset or empty. Use as a context manager (or call :meth:`close`) to release the connection pool.
    """

    name = "openai"

    def __init__(self, config: OpenAIJudgeConfig):
        if not isinstance(config, OpenAIJudgeConfig):
            raise TypeError(f"OpenAIJudge needs an OpenAIJudgeConfig, got {type(config).__name__}")
        self.config = config
        if config.api_key_env is not None and not os.environ.get(config.api_key_env):
            raise ValueError(
                f"OpenAIJudge: the environment variable {config.api_key_env} holding the API key is not set "
                "(or empty); export it, or use api_key_env=None for a server that needs no key"
            )
        self.stats = JudgeStats()
        self._cache = _VerdictCache(config.cache_dir)
        self._http: httpx.Client | None = None

    def __repr__(self) -> str:
        return f"OpenAIJudge({self.config!r})"

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> "OpenAIJudge":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=httpx.Timeout(self.config.timeout_s))
        return self._http

    # -- judging -----------------------------------------------------------------------------
    def judge_batch(
        self, images: np.ndarray, cases: Sequence[Record], stages: Sequence[str], targets: Sequence[str] | None = None
    ) -> list[Verdict]:
        # One request per image, in order: chat-completions endpoints take one conversation per call.
        return [self._judge_one(item) for item in judge_items(images, cases, stages, targets)]

    def cache_key(self, item: JudgeItem, png: bytes) -> str:
        """``sha256`` over the PNG bytes and what was asked (prompt version, model, question, targets)."""
        h = hashlib.sha256(png)
        asked = [PROMPT_VERSION, self.config.model, item.question, item.target, item.visual_target]
        h.update(json.dumps(asked).encode())
        return h.hexdigest()

    def _judge_one(self, item: JudgeItem) -> Verdict:
        png = png_bytes(item.image)
        key = self.cache_key(item, png)
        cached = self._cache.get(key)
        if cached is not None:
            self.stats.cache_hits += 1
            return cached
        try:
            reply = self._request_reply(self._payload(item, png))
            parsed = parse_judge_reply(reply)
        except _RequestFailed as exc:
            return self._error(item, f"openai judge request failed: {exc}")
        except JudgeReplyError as exc:
            return self._error(item, f"openai judge reply rejected: {exc}")
        verdict = Verdict(
            verdict=parsed["matches_target"],
            predicted=parsed["observation"],
            confidence=parsed["confidence"],
            target=item.target,
            explanation=parsed["explanation"],
        )
        meta = {"model": self.config.model, "question": item.question, "target": item.target,
                "visual_target": item.visual_target, "prompt_version": PROMPT_VERSION}
        self._cache.put(key, verdict, meta)
        return verdict

    def _error(self, item: JudgeItem, message: str) -> Verdict:
        self.stats.errors += 1
        return Verdict(None, None, None, item.target, error=self._redact(message))

    def _redact(self, text: str) -> str:
        """``text`` with the API key replaced, in case a server or library echoed it."""
        key = os.environ.get(self.config.api_key_env) if self.config.api_key_env else None
        return text.replace(key, "[redacted]") if key else text

    def _payload(self, item: JudgeItem, png: bytes) -> dict:
        data_url = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        return {
            "model": self.config.model,
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": data_url}},
                        {"type": "text", "text": item.prompt},
                    ],
                }
            ],
        }

    def _headers(self) -> dict[str, str]:
        name = self.config.api_key_env
        if name is None:
            return {}
        key = os.environ.get(name)
        if not key:
            raise _RequestFailed(f"the environment variable {name} holding the API key is no longer set")
        return {"Authorization": f"Bearer {key}"}

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """Wait before retry ``attempt`` (0-based): Retry-After if readable, else exponential; capped."""
        cap = self.config.max_backoff_s
        if retry_after is not None:
            seconds = _retry_after_seconds(retry_after)
            if seconds is not None:
                return min(max(seconds, 0.0), cap)
        return min(self.config.backoff_s * 2**attempt, cap)

    def _request_reply(self, payload: dict) -> str:
        """POST with retries; the reply message text. Raises :class:`_RequestFailed`."""
        url, tries = self.config.url, self.config.max_retries + 1
        for attempt in range(tries):
            headers = self._headers()
            self.stats.requests += 1
            retry_after = None
            try:
                resp = self._client().post(url, json=payload, headers=headers)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                reason = f"{type(exc).__name__} from {url}: {exc}"
            except httpx.RequestError as exc:  # bad protocol, redirects, decoding: retrying will not help
                raise _RequestFailed(f"{type(exc).__name__} from {url}: {exc}") from None
            else:
                if resp.is_success:
                    return _reply_text(resp)
                reason = f"HTTP {resp.status_code} from {url}: {_body_excerpt(resp)}"
                if resp.status_code != 429 and resp.status_code < 500:
                    raise _RequestFailed(reason)
                retry_after = resp.headers.get("retry-after")
            if attempt + 1 == tries:
                raise _RequestFailed(f"{reason} (gave up after {tries} tries)")
            delay = self._delay(attempt, retry_after)
            self.stats.retries += 1
            log.warning("openai judge: %s; retry %d/%d in %.2fs", self._redact(reason), attempt + 1, tries - 1, delay)
            _sleep(delay)
        raise AssertionError("unreachable")


def _retry_after_seconds(value: str) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; ``None`` when unreadable."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError, IndexError):
        return None


def _body_excerpt(resp: httpx.Response) -> str:
    text = resp.text.strip().replace("\n", " ")
    if not text:
        return "(empty body)"
    return text[:_BODY_EXCERPT] + ("..." if len(text) > _BODY_EXCERPT else "")


def _reply_text(resp: httpx.Response) -> str:
    """``choices[0].message.content`` of a chat completion (text parts joined when it is a list)."""
    try:
        content = resp.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise _RequestFailed(f"the response is not a chat completion: {_body_excerpt(resp)}") from None
    if isinstance(content, list):  # some servers return content parts even for plain text
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise _RequestFailed(f"the chat completion has no text content: {_body_excerpt(resp)}")
    return content
