"""Both chat backends on the tiny chat LM: in-process, and against a real ``transformers serve``.

Server faults come from a real HTTP proxy (:class:`FaultProxy`) in front of the real server, or from the
server process itself being killed and restarted. Tests run with ``TRANSFORMERS_OFFLINE=1`` (conftest),
which huggingface_hub reads as offline mode: every loopback request here also checks that it still works.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import threading
import time

import pytest
from huggingface_hub import constants

from fusion_datasets.chat.backends import (
    BackendConfig,
    ServerBackendConfig,
    ServerChatBackend,
    TransformersBackendConfig,
    TransformersChatBackend,
    make_backend,
)
from fusion_datasets.config import ConfigError, from_mapping, to_mapping
from fusion_datasets.pipeline.config import build_steps, load_config
from fusion_datasets.testing.server import FaultProxy, Faults
from fusion_datasets.testing.stub_chat import StubChatServer

CONVERSATIONS = [
    [{"role": "user", "content": "Describe the clip."}],
    [{"role": "system", "content": "You write captions."},
     {"role": "user", "content": "Audio tags: dog bark (0.91), rain (0.40). Speech: none. One caption."}],
    [{"role": "user", "content": "Music: slow piano in a minor key, soft rain behind it, no voices at all."}],
]
ANSWERED = '"POST /v1/chat/completions HTTP/1.1" 200'


def in_process(tiny_zoo, **overrides) -> TransformersChatBackend:
    return TransformersChatBackend(TransformersBackendConfig(model=str(tiny_zoo["chat-lm"]), device="cpu", **overrides))


def server_backend(tiny_zoo, *urls: str, **overrides) -> ServerChatBackend:
    defaults = {"model": str(tiny_zoo["chat-lm"]), "backoff": 0.01, "timeout": 30.0}
    return ServerChatBackend(ServerBackendConfig(base_urls=urls, **{**defaults, **overrides}))


def test_in_process_batch_gives_text_and_token_counts(tiny_zoo):
    completions = in_process(tiny_zoo).generate(CONVERSATIONS, max_new_tokens=6)
    assert len(completions) == 3 and all(c.ok and isinstance(c.text, str) for c in completions)
    assert all(0 < c.completion_tokens <= 6 for c in completions)
    assert len({c.prompt_tokens for c in completions}) == 3 and min(c.prompt_tokens for c in completions) > 0


def test_left_padded_chunks_match_each_conversation_alone(tiny_zoo):
    backend = in_process(tiny_zoo, batch_size=2)  # a padded pair, then a chunk of one
    batched = backend.generate(CONVERSATIONS, max_new_tokens=8)
    alone = [backend.generate([conversation], max_new_tokens=8)[0] for conversation in CONVERSATIONS]
    assert batched == alone


def test_a_failing_chunk_becomes_the_error_of_each_of_its_rows(tiny_zoo):
    broken = [{"role": "user", "content": 123}]  # the chat template cannot iterate over it
    completions = in_process(tiny_zoo, batch_size=2).generate([CONVERSATIONS[0], broken, CONVERSATIONS[2]],
                                                              max_new_tokens=4)
    assert [c.ok for c in completions] == [False, False, True]
    assert completions[0].error == completions[1].error and "TypeError" in completions[0].error


SERVER = {"kind": "server", "base_urls": ["http://127.0.0.1:8080"]}


@pytest.mark.parametrize(("options", "message"), [
    ({"kind": "vllm"}, r"llm: backend kind='vllm' is invalid: expected one of transformers, server"),
    ({"batch_size": 0}, r"llm: backend batch_size=0 is invalid: expected an integer >= 1"),
    ({"dtype": "fp8"}, r"llm: backend dtype='fp8' is invalid: expected one of"),
    ({"kind": "server"}, r"llm: backend base_urls=\(\) is invalid: expected one or more http\(s\):// URLs"),
    ({**SERVER, "base_urls": ["127.0.0.1:8080"]}, r"backend base_urls=\('127.0.0.1:8080',\) is invalid"),
    ({**SERVER, "max_concurrency": 0}, r"backend max_concurrency=0 is invalid: expected an integer >= 1"),
    ({**SERVER, "max_retries": -1}, r"backend max_retries=-1 is invalid: expected an integer >= 0"),
    # each kind takes its own options only
    ({"base_urls": ["http://127.0.0.1:8080"]}, r"unknown key llm.base_urls; allowed: batch_size, device, dtype"),
    ({**SERVER, "device": "cuda:1"}, r"unknown key llm.device; allowed: backoff, base_urls, kind"),
])
def test_each_kind_checks_its_own_options_and_errors_name_them(options, message):
    with pytest.raises(ConfigError, match=message):
        from_mapping(BackendConfig, options, "llm")


def test_a_backend_section_becomes_its_kinds_config_and_dumps_back():
    server = from_mapping(BackendConfig, {**SERVER, "model": "m"}, "llm")
    assert isinstance(server, ServerBackendConfig) and server.served_concurrency == 16
    assert from_mapping(BackendConfig, to_mapping(server)) == server
    local = from_mapping(BackendConfig, {"model": "m"}, "llm")  # no kind: in process
    assert isinstance(local, TransformersBackendConfig) and local.served_concurrency is None
    assert from_mapping(ServerBackendConfig, {"model": "m", "base_urls": ["http://h"]}).kind == "server"
    with pytest.raises(ValueError, match="kind='server' is invalid"):
        TransformersBackendConfig(kind="server")


def test_make_backend_is_cached_per_config_and_the_config_pickles(tiny_zoo):
    config = ServerBackendConfig(model=str(tiny_zoo["chat-lm"]), base_urls=["http://127.0.0.1:9"])
    assert config.base_urls == ("http://127.0.0.1:9",)  # YAML lists become tuples: hashable
    assert pickle.loads(pickle.dumps(config)) == config
    assert make_backend(config) is make_backend(pickle.loads(pickle.dumps(config)))
    with pytest.raises(TypeError, match="max_tokens"):
        make_backend(config).generate(CONVERSATIONS, max_tokens=4)
    local = TransformersBackendConfig(model=str(tiny_zoo["chat-lm"]), device="cpu")
    assert isinstance(make_backend(local), TransformersChatBackend)
    assert make_backend(local) is make_backend(local)


def test_server_happy_path_matches_in_process_greedy_answers(tiny_zoo, chat_server):
    assert constants.is_offline_mode()  # and still the loopback server is reachable
    completions = server_backend(tiny_zoo, chat_server.base_url).generate(CONVERSATIONS, max_new_tokens=8)
    assert all(c.ok and c.retries == 0 for c in completions)
    assert all(c.prompt_tokens > 0 and c.completion_tokens > 0 for c in completions)
    local = in_process(tiny_zoo).generate(CONVERSATIONS, max_new_tokens=8)
    assert [c.text for c in completions] == [c.text for c in local]


def test_server_errors_for_a_while_then_recovery(tiny_zoo, chat_server):
    with FaultProxy(chat_server.base_url, Faults(fail_first=5)) as proxy:
        completions = server_backend(tiny_zoo, proxy.base_url).generate(CONVERSATIONS, max_new_tokens=4)
    assert all(c.ok for c in completions)
    assert sum(c.retries for c in completions) == 5  # one retry per 500 answered
    assert [r.status for r in proxy.requests].count(500) == 5


@pytest.mark.parametrize("max_retries", [0, 2])
def test_a_request_stalling_past_the_timeout(tiny_zoo, chat_server, max_retries):
    with FaultProxy(chat_server.base_url, Faults(stall=frozenset({1}))) as proxy:
        backend = server_backend(tiny_zoo, proxy.base_url, timeout=1.0, max_retries=max_retries)
        start = time.monotonic()
        completions = backend.generate(CONVERSATIONS, max_new_tokens=4)
    assert time.monotonic() - start < 10  # the stall (30 s) was cut off by the timeout
    if max_retries:
        assert all(c.ok for c in completions) and sorted(c.retries for c in completions) == [0, 0, 1]
    else:
        failed = [c for c in completions if not c.ok]
        assert [c.error for c in failed] == [f"TimeoutError: no answer from {proxy.base_url} within timeout=1 s"]
        assert sum(c.ok for c in completions) == 2


def test_malformed_body_is_the_rows_error_and_empty_content_is_text(tiny_zoo, chat_server):
    with FaultProxy(chat_server.base_url, Faults(malformed=frozenset({0}), empty=frozenset({1}))) as proxy:
        # one request at a time: arrival order is row order
        completions = server_backend(tiny_zoo, proxy.base_url, max_concurrency=1).generate(CONVERSATIONS,
                                                                                           max_new_tokens=4)
    assert completions[0].error == (f"HTTP 200 from {proxy.base_url}/v1/chat/completions, a body that is not JSON: "
                                    """'{"choices": [{"message":'""") and completions[0].retries == 0
    assert completions[1].ok and completions[1].text == ""
    assert completions[2].ok and completions[2].text
    assert len(proxy.requests) == 3


def test_a_page_that_is_not_json_is_quoted_by_its_first_200_characters():
    page = "<html><head><title>502</title></head>\n<body>" + "The gateway lost its upstream. " * 20 + "</body></html>"
    faults = Faults(malformed=frozenset({0}), malformed_body=page.encode())
    with StubChatServer(lambda request: "a hum") as stub, FaultProxy(stub.base_url, faults) as proxy:
        backend = ServerChatBackend(ServerBackendConfig(model="stub", base_urls=(proxy.base_url,)))
        (completion,) = backend.generate(CONVERSATIONS[:1], max_new_tokens=4)
    quoted = " ".join(page[:200].split())
    where = f"{proxy.base_url}/v1/chat/completions"
    assert completion.error == f"HTTP 200 from {where}, a body that is not JSON: {quoted!r}"
    assert completion.retries == 0 and len(quoted) > 190 and "</body>" not in completion.error


def test_a_timeout_names_the_server_and_the_timeout():
    with StubChatServer(lambda request: "a hum", latency=3.0) as stub:
        config = ServerBackendConfig(model="stub", base_urls=(stub.base_url,), timeout=0.5, max_retries=0)
        (completion,) = ServerChatBackend(config).generate(CONVERSATIONS[:1], max_new_tokens=4)
    assert completion.error == f"TimeoutError: no answer from {stub.base_url} within timeout=0.5 s"


def test_client_errors_are_not_retried(tiny_zoo, chat_server):
    with FaultProxy(chat_server.base_url) as proxy:
        backend = server_backend(tiny_zoo, proxy.base_url, model="not-the-served-model")
        (completion,) = backend.generate(CONVERSATIONS[:1], max_new_tokens=4)
    assert completion.error.startswith("HTTP 400") and "pinned" in completion.error
    assert completion.retries == 0 and len(proxy.requests) == 1


def test_round_robin_over_two_base_urls(tiny_zoo, chat_server):
    with FaultProxy(chat_server.base_url) as first, FaultProxy(chat_server.base_url) as second:
        completions = server_backend(tiny_zoo, first.base_url, second.base_url).generate(CONVERSATIONS * 2,
                                                                                          max_new_tokens=4)
    assert all(c.ok for c in completions)
    assert len(first.requests) == len(second.requests) == 3


def test_token_is_sent_as_bearer_and_never_logged(tiny_zoo, chat_server, monkeypatch, caplog):
    secret = "hf_thisIsNotARealTokenButMustStayHidden"
    monkeypatch.setenv("FUSION_TEST_TOKEN", secret)
    caplog.set_level(logging.DEBUG)
    # the failures echo the request headers back, as a debug server would
    with FaultProxy(chat_server.base_url, Faults(fail_first=100)) as proxy:
        completions = server_backend(tiny_zoo, proxy.base_url, token_env="FUSION_TEST_TOKEN",
                                     max_retries=2).generate(CONVERSATIONS, max_new_tokens=4)
    assert {r.headers["authorization"] for r in proxy.requests} == {f"Bearer {secret}"}
    assert all(c.error.startswith("HTTP 500") and c.retries == 2 for c in completions)
    assert "***" in completions[0].error and not any(secret in c.error for c in completions)
    assert caplog.records and not any(secret in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("machine_token", [
    {"HF_TOKEN": "hf_machineTokenThatMustNotLeave"},
    {"HF_OIDC_RESOURCE": "someone/some-model"},  # a token exchange with the Hub, in CI
])
def test_no_token_configured_sends_no_token_at_all(tiny_zoo, chat_server, monkeypatch, machine_token):
    # huggingface_hub alone would look up the machine's token and send it to any base URL
    for name, value in machine_token.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("FUSION_UNSET_TOKEN", raising=False)
    with FaultProxy(chat_server.base_url) as proxy:
        (completion,) = server_backend(tiny_zoo, proxy.base_url, token_env="FUSION_UNSET_TOKEN").generate(
            CONVERSATIONS[:1], max_new_tokens=4)
    assert completion.ok and "authorization" not in proxy.requests[0].headers


def test_non_loopback_urls_stay_refused_in_offline_mode(tiny_zoo):
    assert constants.is_offline_mode()
    (completion,) = server_backend(tiny_zoo, "http://192.0.2.1:8000").generate(CONVERSATIONS[:1])
    assert completion.error.startswith("OfflineModeIsEnabled") and completion.retries == 0


def test_generate_from_inside_a_running_event_loop(tiny_zoo, chat_server):
    backend = server_backend(tiny_zoo, chat_server.base_url)

    async def caller():
        return backend.generate(CONVERSATIONS[:2], max_new_tokens=4)

    assert all(c.ok for c in asyncio.run(caller()))


def test_server_killed_mid_batch_and_restarted(tiny_zoo, chat_server):
    answered_before = chat_server.log().count(ANSWERED)

    def crash_and_restart():
        deadline = time.monotonic() + 60
        while chat_server.log().count(ANSWERED) < answered_before + 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        chat_server.kill()
        chat_server.restart()

    crasher = threading.Thread(target=crash_and_restart)
    backend = server_backend(tiny_zoo, chat_server.base_url, max_concurrency=1, max_retries=8, backoff=1.0)
    crasher.start()
    try:
        completions = backend.generate(CONVERSATIONS * 3, max_new_tokens=32)
    finally:
        crasher.join()
    assert all(c.ok or c.error for c in completions)
    # answered before the crash (uvicorn logs an answer as it starts sending it: the last may be cut off)
    assert any(c.ok and c.retries == 0 for c in completions)
    assert any(c.ok and c.retries > 0 for c in completions)  # failed during the downtime, then answered
    for failed in (c for c in completions if not c.ok):  # unlucky jitter may use every retry up
        assert failed.retries == 8
        assert failed.error.startswith(("ConnectError", "RemoteProtocolError", "ReadError"))


def test_served_steps_keep_the_fingerprints_earlier_runs_recorded():
    """Taken before each kind had its own options: an earlier run's LLM stages are not redone on a rerun."""
    steps = {step.stage: step for step in build_steps(load_config("paper"))}
    assert isinstance(steps["fusion"].config.backend, ServerBackendConfig)
    assert (steps["fusion"].fingerprint(), steps["qa"].fingerprint()) == ("2f65a787f54e2e03", "0a72d25249f389f1")
