"""The chat backends, one per ``kind``: in-process transformers and any OpenAI-compatible / TGI server.

A pipeline step holds only a :class:`BackendConfig` (frozen, hashable, picklable) of its kind's own
type, and gets the live backend from :func:`make_backend`, which keeps one per process in
:mod:`fusion_datasets.runtime`'s cache. A YAML ``backend:`` mapping becomes the type its ``kind`` names
(:data:`KINDS`; default ``transformers``), so each kind's options are checked when the config loads.

Example:
    >>> from fusion_datasets.testing.stub_chat import StubChatServer  # a server answering as told
    >>> with StubChatServer(answer=lambda request: "Hello! How can I help?") as server:
    ...     backend = make_backend(ServerBackendConfig(model="stub", base_urls=(server.base_url,)))
    ...     backend.generate([[{"role": "user", "content": "Hi"}]], max_new_tokens=8)
    [Completion(text='Hello! How can I help?', error=None, prompt_tokens=12, completion_tokens=4, retries=0)]
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from fusion_datasets import runtime
from fusion_datasets.chat.base import ChatBackend, Completion, Conversation, FollowUp, converse_in_rounds
from fusion_datasets.config import resource
from fusion_datasets.http_errors import NotJSONError, is_transient, redact, retry_delay
from fusion_datasets.loading import loading_model

logger = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "float16", "bfloat16")
# a URL's "user:password@" (with or without its scheme): credentials that would be saved and logged with it
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)?[^/?#@]*@")


@dataclass(frozen=True)
class BackendConfig:
    """Which model answers and how to reach it: what a pipeline YAML holds under ``llm:`` or ``backend:``.

    A base: each kind is a subclass with its own options (:data:`KINDS`); :meth:`kind_class` picks it.
    """

    kind: str = ""
    model: str = "Qwen/QwQ-32B"
    revision: str | None = None

    @classmethod
    def kind_class(cls, data: Mapping[str, Any]) -> type[BackendConfig]:
        """The config type of ``data``'s ``kind`` (``transformers`` where it names none)."""
        kind = data.get("kind", cls.kind or "transformers")
        if kind not in KINDS:
            raise ValueError(f"backend kind={kind!r} is invalid: expected one of {', '.join(KINDS)}")
        return KINDS[kind]

    @property
    def served_concurrency(self) -> int | None:
        """Requests kept in flight where a server answers (``None``: the model runs in this process)."""
        return None

    def _check(self, checks: Mapping[str, tuple[bool, str]]) -> None:
        checks = {"kind": (KINDS.get(self.kind) is type(self), f"{type(self).__name__}'s own kind"),
                  "model": (isinstance(self.model, str) and self.model.strip() != "", "a Hub model id or a folder"),
                  **checks}
        for name, (valid, allowed) in checks.items():
            if not valid:
                raise ValueError(f"backend {name}={getattr(self, name)!r} is invalid: expected {allowed}")


@dataclass(frozen=True)
class TransformersBackendConfig(BackendConfig):
    """``kind: transformers``: the model runs in this process, ``batch_size`` conversations per call."""

    kind: str = "transformers"
    device: str | None = resource(None)
    dtype: str = "auto"
    trust_remote_code: bool = False
    batch_size: int = resource(8)

    def __post_init__(self) -> None:
        self._check({"dtype": (self.dtype in DTYPES, f"one of {DTYPES}"),
                     "batch_size": (self.batch_size >= 1, "an integer >= 1")})


@dataclass(frozen=True)
class ServerBackendConfig(BackendConfig):
    """``kind: server``: an OpenAI-compatible server at each of ``base_urls`` answers, ``max_concurrency``
    requests in flight. ``backoff`` is the first retry's maximum wait in seconds, doubled at each retry
    (full jitter: a uniform draw below it). ``token_env`` names the environment variable holding the bearer
    token: no token is sent unless it names one (``HF_TOKEN`` sends the Hub token to these servers). A base URL
    holding credentials (``http://user:password@host``) is refused: it would be saved in ``config.yaml``."""

    # what a served step's fingerprint held when one config had every kind's options: kept, so that a
    # rerun over an earlier run's output does not redo its LLM stages
    fingerprint_extras: ClassVar[dict[str, Any]] = {"dtype": "auto", "trust_remote_code": False}
    kind: str = "server"
    base_urls: tuple[str, ...] = resource(())
    max_concurrency: int = resource(16)
    timeout: float = resource(120.0)
    max_retries: int = resource(5)
    backoff: float = resource(1.0)
    token_env: str | None = resource(None)

    def __post_init__(self) -> None:
        # YAML gives lists; a tuple keeps the config hashable (it is the backend's cache key)
        object.__setattr__(self, "base_urls", tuple(self.base_urls))
        _refuse_credentials(self.base_urls)  # first: the checks below print the URLs
        self._check({
            "base_urls": (bool(self.base_urls) and all(url.startswith(("http://", "https://"))
                                                       for url in self.base_urls), "one or more http(s):// URLs"),
            "max_concurrency": (self.max_concurrency >= 1, "an integer >= 1"),
            "timeout": (self.timeout > 0, "a number of seconds > 0"),
            "max_retries": (self.max_retries >= 0, "an integer >= 0"),
            "backoff": (self.backoff >= 0, "a number of seconds >= 0"),
        })

    @property
    def served_concurrency(self) -> int | None:
        return self.max_concurrency


KINDS: dict[str, type[BackendConfig]] = {"transformers": TransformersBackendConfig, "server": ServerBackendConfig}


def _refuse_credentials(urls: Sequence[str]) -> None:
    """Raise ``ValueError`` naming the first of ``urls`` written with a user name or password (shown without)."""
    for url in urls:
        found = _USERINFO.match(url)
        if found:
            shown = (found["scheme"] or "") + url[found.end():]
            raise ValueError(f"backend base_urls: {shown} is written with a user name or password: remove them "
                             "and name the environment variable that holds the token in token_env (a base URL "
                             "is saved in config.yaml, which push publishes, and in the logs)")


@dataclass(frozen=True)
class GenerationParams:
    """The ``**params`` of ``generate``: ``temperature=0`` is greedy decoding."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float | None = None
    seed: int | None = None

    @classmethod
    def of(cls, params: dict[str, Any]) -> GenerationParams:
        allowed = {field.name for field in fields(cls)}
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise TypeError(f"unknown generation parameters {unknown}; allowed: {sorted(allowed)}")
        return cls(**params)


def make_backend(config: BackendConfig, rank: int | None = None) -> ChatBackend:
    """The backend of ``config``'s kind in this process, built on first use (``rank`` picks the GPU)."""
    return _MAKERS[config.kind](config, rank)


def _transformers_backend(config: TransformersBackendConfig, rank: int | None) -> ChatBackend:
    device = runtime.resolve_device(config.device, rank)
    with loading_model(config.model):
        return runtime.cached_model(("chat-backend", config, device), lambda: TransformersChatBackend(config, device))


def _server_backend(config: ServerBackendConfig, rank: int | None) -> ChatBackend:
    return runtime.cached_model(("chat-backend", config), lambda: ServerChatBackend(config))


class TransformersChatBackend:
    """Generates in this process, ``batch_size`` conversations per ``generate`` call, left-padded."""

    def __init__(self, config: TransformersBackendConfig, device: str | None = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config
        self.device = device or runtime.resolve_device(config.device)
        kwargs = {"revision": config.revision, "trust_remote_code": config.trust_remote_code}
        self.tokenizer = AutoTokenizer.from_pretrained(config.model, **kwargs)
        # generate() continues every row from its last position, so pads must come first
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = runtime.resolve_dtype(config.dtype, self.device)
        model = AutoModelForCausalLM.from_pretrained(config.model, dtype=dtype, **kwargs)
        self.model = model.to(self.device).eval()
        eos = self.model.generation_config.eos_token_id
        self._eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}

    @property
    def model_id(self) -> str:
        return self.config.model

    def converse(self, conversations: Sequence[Conversation], follow_up: FollowUp, **params: Any) -> None:
        converse_in_rounds(self, conversations, follow_up, **params)

    def generate(self, conversations: Sequence[Conversation], **params: Any) -> list[Completion]:
        options = GenerationParams.of(params)
        size = self.config.batch_size
        completions: list[Completion] = []
        for start in range(0, len(conversations), size):
            chunk = conversations[start:start + size]
            try:
                completions.extend(self._generate_chunk(chunk, options))
            except Exception as error:  # noqa: BLE001 - a failed chunk becomes its rows' errors, not a crash
                logger.warning("generation failed on %d conversations: %s", len(chunk), error, exc_info=True)
                completions.extend(Completion(None, error=f"{type(error).__name__}: {error}") for _ in chunk)
        return completions

    def _generate_chunk(self, conversations: Sequence[Conversation],
                        options: GenerationParams) -> list[Completion]:
        import torch

        prompts = [self.tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False)
                   for c in conversations]
        # the template already wrote the special tokens (a second BOS would change the answer)
        inputs = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        inputs = inputs.to(self.device)
        sample = options.temperature > 0
        kwargs: dict[str, Any] = {"max_new_tokens": options.max_new_tokens, "do_sample": sample,
                                  "pad_token_id": self.tokenizer.pad_token_id}
        if sample:
            kwargs.update(temperature=options.temperature, top_p=options.top_p)
            if options.seed is not None:
                torch.manual_seed(options.seed)
        with torch.inference_mode():
            output = self.model.generate(**inputs, **kwargs)
        new_tokens = output[:, inputs["input_ids"].shape[1]:].tolist()
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        return [Completion(text.strip(), prompt_tokens=prompt, completion_tokens=self._answer_length(tokens))
                for text, prompt, tokens in zip(texts, prompt_tokens, new_tokens)]

    def _answer_length(self, tokens: list[int]) -> int:
        """Generated tokens up to and including the first eos (the rest is padding of a finished row)."""
        return next((index + 1 for index, token in enumerate(tokens) if token in self._eos_ids), len(tokens))


class ServerChatBackend:
    """Sends each conversation to an OpenAI-compatible ``/v1/chat/completions`` via ``AsyncInferenceClient``.

    Requests run concurrently, each attempt goes to the next of ``base_urls``, and 429, 5xx, connection
    errors and timeouts are retried up to ``max_retries`` times. ``max_concurrency`` bounds the requests in
    flight over all the calls of this backend at once: calls from several threads (an executor overlapping
    batches) share one event loop of the backend's own and one limit, so the server sees that many
    requests and never more.
    """

    def __init__(self, config: ServerBackendConfig) -> None:
        self.config = config
        self._turn = itertools.count()  # round-robin position, kept across generate() calls
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_pid: int | None = None  # a forked child must start its own loop: the thread stayed behind
        self._semaphore: asyncio.Semaphore | None = None

    @property
    def model_id(self) -> str:
        return self.config.model

    def generate(self, conversations: Sequence[Conversation], **params: Any) -> list[Completion]:
        """Blocks until every conversation has a Completion; callable from inside a running event loop too."""
        completions: list[Completion | None] = [None] * len(conversations)

        def keep(index: int, completion: Completion) -> None:
            completions[index] = completion

        self.converse(conversations, keep, **params)
        return completions  # type: ignore[return-value]  # every index was answered

    def converse(self, conversations: Sequence[Conversation], follow_up: FollowUp, **params: Any) -> None:
        """Keeps requests in flight up to the limit: a follow-up joins the queue as soon as its answer is in.

        Safe to call from several threads at once, and from inside a running event loop (a notebook).
        """
        self._run(self._converse_all(list(conversations), follow_up, GenerationParams.of(params)))

    def _run(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` on the backend's event loop (started on first use, in a daemon thread) and wait."""
        with self._lock:
            if self._loop is None or self._loop_pid != os.getpid():
                self._loop, self._loop_pid = asyncio.new_event_loop(), os.getpid()
                self._semaphore = None
                threading.Thread(target=self._loop.run_forever, name="chat-backend", daemon=True).start()
        future = asyncio.run_coroutine_threadsafe(work, self._loop)
        try:
            future.result()
        except BaseException:
            future.cancel()  # Ctrl-C in the caller: stop sending this call's requests
            raise

    async def _converse_all(self, conversations: list[Conversation], follow_up: FollowUp,
                            options: GenerationParams) -> None:
        from huggingface_hub import AsyncInferenceClient

        if self._semaphore is None:  # made on the loop, which is the only thread that touches it
            self._semaphore = asyncio.Semaphore(self.config.max_concurrency)
        semaphore = self._semaphore
        token = os.environ.get(self.config.token_env) if self.config.token_env else None
        async with AsyncExitStack() as stack:
            session = await stack.enter_async_context(_session())
            clients = []
            for url in self.config.base_urls:
                # huggingface_hub would send the machine's own HF token (file, OIDC) when given none: a
                # placeholder key stops that lookup, and our header (None drops it) is what is sent
                client = AsyncInferenceClient(base_url=url, api_key="unused", headers={
                    "authorization": f"Bearer {token}" if token else None})
                client._async_client = session  # the client's session slot, which it otherwise fills itself
                clients.append(await stack.enter_async_context(client))

            async def talk(index: int, conversation: Conversation | None) -> None:
                while conversation is not None:
                    completion = await self._complete(clients, conversation, options, semaphore, token)
                    conversation = follow_up(index, completion)

            await asyncio.gather(*(talk(index, c) for index, c in enumerate(conversations)))

    async def _complete(self, clients: list[Any], conversation: Conversation, options: GenerationParams,
                        semaphore: asyncio.Semaphore, token: str | None) -> Completion:
        retries = 0
        while True:
            turn = next(self._turn) % len(clients)
            client, url = clients[turn], self.config.base_urls[turn]
            try:
                async with semaphore:
                    output = await asyncio.wait_for(client.chat_completion(
                        conversation, model=self.config.model, max_tokens=options.max_new_tokens,
                        temperature=options.temperature, top_p=options.top_p, seed=options.seed,
                    ), self.config.timeout)
            except Exception as error:  # noqa: BLE001 - every failure is either retried or the row's error
                message = _describe(error, url, self.config.timeout, token)
                if not is_transient(error) or retries >= self.config.max_retries:
                    logger.debug("request to %s failed after %d retries: %s", url, retries, message)
                    return Completion(None, error=message, retries=retries)
                delay = retry_delay(self.config.backoff, retries)
                logger.info("request to %s failed (%s); retry %d in %.2f s", url, message, retries + 1, delay)
                retries += 1
                await asyncio.sleep(delay)
                continue
            return _completion(output, retries)


_MAKERS: dict[str, Callable[[Any, int | None], ChatBackend]] = {
    "transformers": _transformers_backend, "server": _server_backend}


def _completion(output: Any, retries: int) -> Completion:
    usage = output.usage
    prompt, generated = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
    content = output.choices[0].message.content if output.choices else None
    error = None if content is not None else "the server answered without any message content"
    return Completion(content, error, prompt_tokens=prompt, completion_tokens=generated, retries=retries)


def _describe(error: Exception, url: str, timeout: float, token: str | None) -> str:
    """One line for a row's error: the status and the server's own words for HTTP errors, the server and the
    timeout for one that did not answer in time, and the server for the rest."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    message = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if isinstance(error, HfHubHTTPError):
        try:
            body = error.response.text[:500]
        except httpx2.ResponseNotRead:  # a large body huggingface_hub did not read
            body = ""
        message = f"HTTP {error.response.status_code} from {error.response.url}: {body}"
    elif isinstance(error, NotJSONError):
        message = str(error)
    elif isinstance(error, TimeoutError):
        message = f"TimeoutError: no answer from {url} within timeout={timeout:g} s"
    elif url not in message:
        message = f"{message} ({url})"
    message = " ".join(message.split())
    # a server may echo the request back in its error body: the token must not reach rows or logs
    return redact(message, token)


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _session() -> Any:
    """An HTTP session that reaches loopback servers even in huggingface_hub's offline mode, and that raises
    :class:`~fusion_datasets.http_errors.NotJSONError` (status, URL, the body's start) for a success whose body
    is not JSON, where huggingface_hub would say only ``JSONDecodeError``.

    ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` make huggingface_hub's request hook refuse every URL,
    a local server included. This session (from the public ``get_async_session()``, so that a user's
    ``set_async_client_factory`` still applies) skips that hook for loopback hosts only: every other host
    stays refused, and nothing process-wide changes.
    """
    from huggingface_hub import constants, get_async_session

    session = get_async_session()
    hub_hooks = list(session.event_hooks["request"])

    async def request_hook(request: Any) -> None:
        if constants.is_offline_mode() and _is_loopback(request.url.host):
            return
        for hook in hub_hooks:
            await hook(request)

    session.event_hooks = {"request": [request_hook], "response": [*session.event_hooks["response"], _json_body]}
    return session


async def _json_body(response: Any) -> None:
    """A response hook: a success's body must be JSON (what a chat completion is)."""
    if response.is_success:
        await response.aread()
        try:
            json.loads(response.content)
        except ValueError:
            raise NotJSONError(response.status_code, str(response.url), response.text) from None
