"""The local executor and the plan: streaming LLM stages, per-stage batch sizes, what a change reruns.

The LLM server here is :class:`StubChatServer`, a real HTTP server on 127.0.0.1 whose latency the test
sets: what is measured is the client (requests in flight), which a model server would hide behind compute.
"""

from __future__ import annotations

import threading

import datasets

from fusion_datasets.chat.backends import BackendConfig, ServerBackendConfig, ServerChatBackend
from fusion_datasets.experts import ASTAudioTagger
from fusion_datasets.llm.fusion import CaptionFuser
from fusion_datasets.llm.qa import QAGenerator
from fusion_datasets.media import MediaBatch
from fusion_datasets.pipeline.config import load_config
from fusion_datasets.pipeline.executors.local import LocalExecutor
from fusion_datasets.pipeline.plan import Plan
from fusion_datasets.pipeline.work import Work
from fusion_datasets.testing.stub_chat import StubChatServer
from fusion_datasets.testing.zoo.fixed_answer import FUSION_ANSWER


def _stub_backend(url: str, concurrency: int) -> BackendConfig:
    return ServerBackendConfig(model="stub", base_urls=(url,), max_concurrency=concurrency, token_env=None)


def test_an_llm_stage_keeps_max_concurrency_in_flight_over_the_whole_part():
    rows = 40
    ds = datasets.Dataset.from_dict({"id": [f"c{i}" for i in range(rows)], "audio": [None] * rows,
                                     "sound_caption": [f"A dog barks, take {i}." for i in range(rows)]})
    with StubChatServer(lambda request: FUSION_ANSWER, latency=0.05) as server:
        plan = Plan((CaptionFuser(backend=_stub_backend(server.base_url, 16)),))
        # a map batch of 8 would cap the requests in flight at 8: the executor gives the stage every row
        work = [Work(("fusion",), tuple(range(rows)))]
        cues, counters = LocalExecutor(plan, load_config("tiny", ["output.batch_size=8"])).run_part(ds, work)
        assert server.peak_in_flight == 16 and server.requests == rows
    assert all(caption for caption in cues["caption"])
    assert counters["fusion"]["rows"] == rows and counters["fusion"]["errors"] == 0
    assert counters["fusion"]["prompt_tokens"] == 12 * rows  # the stub's usage, counted by the step


def test_a_reask_is_sent_as_soon_as_its_answer_arrives_while_others_are_in_flight():
    """Conversation 1's bad answer is re-asked and answered while conversation 0 is still waiting."""
    events = []

    def answer(request: dict) -> str:
        return f"answer to {request['messages'][-1]['content']}"

    def latency(request: dict) -> float:
        return 1.0 if request["messages"][-1]["content"] == "q0" else 0.05

    def follow_up(index: int, completion) -> list | None:
        events.append(completion.text)
        if completion.text == "answer to q1":
            return [{"role": "user", "content": "q1"}, {"role": "assistant", "content": completion.text},
                    {"role": "user", "content": "again"}]
        return None

    with StubChatServer(answer, latency) as server:
        backend = ServerChatBackend(_stub_backend(server.base_url, 4))
        backend.converse([[{"role": "user", "content": f"q{i}"}] for i in range(3)], follow_up, max_new_tokens=8)
    assert events.index("answer to again") < events.index("answer to q0")
    assert server.requests == 4


def test_calls_from_several_threads_share_one_backends_max_concurrency():
    """An executor overlapping batches (Ray's threaded actors) must not multiply the server's load."""
    with StubChatServer(lambda request: "ok", latency=0.1) as server:
        backend = ServerChatBackend(_stub_backend(server.base_url, 4))
        conversations = [[{"role": "user", "content": f"q{i}"}] for i in range(12)]
        results: list[list] = []
        callers = [threading.Thread(target=lambda: results.append(backend.generate(conversations, max_new_tokens=4)))
                   for _ in range(3)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
        assert server.requests == 36 and server.peak_in_flight == 4
    assert [completion.text for answers in results for completion in answers] == ["ok"] * 36


def test_each_stage_calls_its_model_on_its_own_batch_size(tiny_zoo):
    tagger = ASTAudioTagger(model=str(tiny_zoo["ast-audioset"]), batch_size=2)
    media = MediaBatch({"audio": [None] * 5})
    calls = []
    results = tagger.run_guarded(media, [0, 1, 2, 3, 4], lambda rows: calls.append(list(rows)) or list(rows))
    assert calls == [[0, 1], [2, 3], [4]] and results == {row: row for row in range(5)}


def test_the_plan_reruns_a_changed_stage_with_its_readers_and_the_producers_they_need(tiny_zoo):
    plan = Plan.from_config(load_config("tiny"))
    assert plan.to_rerun({"fusion"}) == ["fusion", "clap_filter", "qa"]
    assert plan.to_rerun({"tagging"}) == ["tagging", "music", "fusion", "clap_filter", "qa"]
    # speech reads the vocals that separation keeps in memory only (output_tracks: false in `tiny`)
    assert plan.to_rerun({"speech"}) == ["separation", "speech", "fusion", "clap_filter", "qa"]
    assert plan.to_rerun({"decode"}) == [stage for stage in plan.stages if stage != "visual"]  # all but video
    passes = [[step.stage for step in steps] for steps in plan.passes(plan.stages)]
    assert passes == [["separation", "speech", "tagging", "sound", "music", "visual"], ["fusion"],
                      ["clap_filter"], ["qa"]]
    # served experts go in passes of their own: their batches are sized for the server, not for the GPU
    served = Plan.from_config(load_config("paper"))
    assert [[step.stage for step in steps] for steps in served.passes(served.stages)] == [
        ["separation", "speech", "tagging"], ["sound", "music", "visual"], ["fusion"], ["clap_filter"], ["qa"]]
    assert [step.batch_size for step in served.passes(served.stages)[1]] == [128, 128, 64]


def test_fingerprints_ignore_resources_and_follow_what_a_step_computes(tiny_zoo):
    backend = _stub_backend("http://127.0.0.1:1", 16)
    fuser = CaptionFuser(backend=backend)
    assert CaptionFuser(backend=_stub_backend("http://127.0.0.1:2", 64)).fingerprint() == fuser.fingerprint()
    assert CaptionFuser(backend=backend, max_new_tokens=97).fingerprint() != fuser.fingerprint()
    assert QAGenerator(backend=backend).fingerprint() != fuser.fingerprint()
    tagger = ASTAudioTagger(model=str(tiny_zoo["ast-audioset"]))
    assert ASTAudioTagger(model=str(tiny_zoo["ast-audioset"]), batch_size=4).fingerprint() == tagger.fingerprint()
