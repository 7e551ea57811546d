"""Credentials go only where the config names them: a server gets a token only from its own ``token_env``,
and a base URL holding a user name or password is refused before anything is written or logged.

The servers are :class:`StubChatServer`, real HTTP servers on 127.0.0.1 that keep each request's headers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fusion_datasets.chat.backends import BackendConfig, ServerBackendConfig, ServerChatBackend
from fusion_datasets.cli import main
from fusion_datasets.config import from_mapping
from fusion_datasets.demo import write_sample_clips
from fusion_datasets.testing.stub_chat import StubChatServer
from fusion_datasets.testing.zoo.fixed_answer import FUSION_ANSWER

HUB_TOKEN = "hf_theHubTokenOfThisMachineMustStayHere"
SERVER_TOKEN = "the-inference-servers-own-key"
PASSWORD = "s3cretPassw0rd"
CONVERSATION = [{"role": "user", "content": "Describe the clip."}]


def _authorizations(server: StubChatServer) -> list[str | None]:
    return [headers.get("authorization") for headers in server.headers]


@pytest.fixture
def hub_token(monkeypatch) -> str:
    """A logged-in machine: the Hub token is in the environment, as huggingface_hub reads it."""
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    monkeypatch.setenv("FUSION_SERVER_TOKEN", SERVER_TOKEN)
    return HUB_TOKEN


@pytest.mark.parametrize(("token_env", "sent"), [
    (None, None),  # the default: the server's config names no token, so none is sent
    ("FUSION_SERVER_TOKEN", f"Bearer {SERVER_TOKEN}"),
    ("HF_TOKEN", f"Bearer {HUB_TOKEN}"),  # the Hub token, named explicitly
])
def test_a_server_gets_only_the_token_its_config_names(hub_token, token_env, sent):
    options = {} if token_env is None else {"token_env": token_env}
    with StubChatServer(lambda request: "a hum") as server:
        config = from_mapping(BackendConfig, {"kind": "server", "model": "stub", "base_urls": [server.base_url],
                                              **options}, "llm")
        (completion,) = ServerChatBackend(config).generate([CONVERSATION], max_new_tokens=4)
    assert completion.ok and _authorizations(server) == [sent]


def test_a_run_sends_the_llm_server_its_named_token_and_the_expert_server_none(run_served, hub_token):
    """A run with the sound expert and fusion served, ``HF_TOKEN`` set: only the LLM server, whose config
    names ``token_env``, gets a token, and the Hub token reaches neither."""
    with StubChatServer(lambda request: "a hum") as expert_server, \
            StubChatServer(lambda request: FUSION_ANSWER) as llm_server:
        code = run_served(expert_server.base_url,
                          f"{{kind: server, model: stub, base_urls: [{llm_server.base_url}], "
                          "token_env: FUSION_SERVER_TOKEN}")
    assert code == 0
    assert expert_server.requests == 4 and _authorizations(expert_server) == [None] * 4
    assert llm_server.requests == 4 and _authorizations(llm_server) == [f"Bearer {SERVER_TOKEN}"] * 4


@pytest.mark.parametrize("url", [f"http://alice:{PASSWORD}@127.0.0.1:9", f"https://{PASSWORD}@gpu-1:8080/v1",
                                 f"alice:{PASSWORD}@127.0.0.1:9"])
def test_credentials_in_a_base_url_are_refused_in_one_line_that_keeps_them_out(url):
    with pytest.raises(ValueError, match="is written with a user name or password") as error:
        ServerBackendConfig(model="m", base_urls=("http://127.0.0.1:8", url))
    assert PASSWORD not in str(error.value)


@pytest.mark.parametrize("section", ["llm", "experts.sound.backend"])
def test_a_run_with_credentials_in_a_base_url_stops_at_load(tmp_path, capsys, caplog, section):
    caplog.set_level(logging.DEBUG)
    write_sample_clips(tmp_path / "clips")
    options = f"{{kind: server, model: m, base_urls: ['http://alice:{PASSWORD}@127.0.0.1:9']}}"
    code = main(["run", "tiny", "--input", str(tmp_path / "clips"), "--output", str(tmp_path / "out"),
                 "--set", f"{section}={options}"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    (line,) = captured.err.splitlines()
    assert "http://127.0.0.1:9 is written with a user name or password" in line and "token_env" in line
    logged = "\n".join(record.getMessage() for record in caplog.records)
    written = [path for path in Path(tmp_path).rglob("*") if path.is_file() and "clips" not in path.parts]
    assert PASSWORD not in captured.err + logged and not written
