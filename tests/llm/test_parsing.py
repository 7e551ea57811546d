"""The answer parsers take what real LLMs write (traces, fences, preambles) and reject what cannot be used."""

from __future__ import annotations

import json

import pytest

from fusion_datasets.llm.parsing import (
    SENTINEL,
    FusionAnswer,
    ParseError,
    content_words,
    extract_json,
    parse_fusion_answer,
    parse_qa_answer,
    split_reasoning,
    validate_qa_pairs,
)
from fusion_datasets.llm.qa import QA_TYPES

VALID = {"Potential ambiguities": ["the bark may be a cough"], "Audio caption": "A dog barks twice."}


@pytest.mark.parametrize(
    ("text", "answer", "reasoning"),
    [
        ("<think>tags agree</think>\n{}", "{}", "tags agree"),
        # the chat template opened <think> in the prompt: only the closing tag is in the answer
        ("tags agree, a dog\n</think>\n\n{}", "{}", "tags agree, a dog"),
        ("<think>first</think> x <think>second</think> {}", "x  {}", "first\n\nsecond"),
        ("{}", "{}", None),
        ("<think>\n</think>{}", "{}", None),
    ],
)
def test_split_reasoning(text, answer, reasoning):
    assert split_reasoning(text) == (answer, reasoning)


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(VALID),
        f"```json\n{json.dumps(VALID, indent=2)}\n```",
        f"Here is the caption you asked for:\n```\n{json.dumps(VALID)}\n```\nI hope it helps.",
        f"Sure! {json.dumps(VALID)} Let me know if you need more.",
        # a brace in the preamble that is not JSON is skipped
        f"Format {{caption}} below: {json.dumps(VALID)}",
    ],
)
def test_extract_json_tolerates_fences_and_text_around(text):
    assert extract_json(text) == VALID


@pytest.mark.parametrize(
    ("text", "reason"),
    [("", "empty answer"), ("  \n", "empty answer"), ("HELLO", "no JSON object found"),
     ('{"a": ', "no JSON object found")],
)
def test_extract_json_without_json_says_why(text, reason):
    with pytest.raises(ParseError, match=reason):
        extract_json(text)


def test_fusion_answer_with_trace_fences_and_key_variants():
    text = ('<think>Dog tags at 92%.</think>```json\n'
            '{"potential_ambiguities": [" one ", ""], "audio caption": " A dog. "}\n```')
    assert parse_fusion_answer(text) == FusionAnswer("A dog.", ["one"], reasoning="Dog tags at 92%.")


@pytest.mark.parametrize(
    "text", [SENTINEL, f"<think>No agreement.</think>\n{SENTINEL}", f"```\n{SENTINEL}\n```", f'"{SENTINEL}"']
)
def test_sentinel_is_uncertain_without_caption(text):
    answer = parse_fusion_answer(text)
    assert answer.uncertain and answer.caption is None and answer.ambiguities == []


def test_sentinel_inside_the_trace_only_is_not_uncertain():
    answer = parse_fusion_answer(f"<think>Is it {SENTINEL}? No.</think>{json.dumps(VALID)}")
    assert not answer.uncertain and answer.caption == "A dog barks twice."


def test_missing_ambiguities_are_an_empty_list():
    assert parse_fusion_answer('{"Audio caption": "Rain."}').ambiguities == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty answer"),
        ("<think>only thinking</think>", "empty answer"),
        ("HELLO", "no JSON object found"),
        ("[1, 2]", "JSON object, not a list"),
        ('{"Potential ambiguities": []}', '"Audio caption" must be a non-empty string'),
        ('{"Audio caption": "  "}', '"Audio caption" must be a non-empty string'),
        ('{"Audio caption": 3}', '"Audio caption" must be a non-empty string'),
        ('{"Audio caption": "A dog.", "Potential ambiguities": "none"}', "must be a list of strings"),
        ('{"Audio caption": "A dog.", "Potential ambiguities": [1]}', "must be a list of strings"),
        ('{"Audio caption": "Speech(100%) and a dog(87 %)."}', "confidence numbers"),
    ],
)
def test_unusable_fusion_answers_raise_a_short_reason(text, reason):
    with pytest.raises(ParseError, match=reason):
        parse_fusion_answer(text)


PAIRS = [{"question": "What barks?", "answer": "A dog.", "qa_type": "sound_sources"}]


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"qa_pairs": PAIRS}),
        json.dumps(PAIRS),
        f"<think>easy</think>```json\n{json.dumps({'QA pairs': PAIRS})}```",
        # the keys' case and separators vary, the values' whitespace is stripped
        '{"QA-pairs": [{"Question": " What barks? ", "Answer": "A dog.", "QA type": "sound_sources"}]}',
    ],
)
def test_qa_answer_shapes(text):
    assert parse_qa_answer(text) == PAIRS


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"qa_pairs": []}', "at least one pair"),
        ('{"pairs": [{"question": "q", "answer": "a", "qa_type": "reasoning"}]}', "at least one pair"),
        ('{"qa_pairs": [{"question": "q", "answer": "a"}]}', 'string "question", "answer" and "qa_type"'),
        ('{"qa_pairs": ["q"]}', 'string "question", "answer" and "qa_type"'),
        ("no pairs today", "no JSON object found"),
    ],
)
def test_unusable_qa_answers_raise_a_short_reason(text, reason):
    with pytest.raises(ParseError, match=reason):
        parse_qa_answer(text)


def test_content_words_drop_function_words_and_stem():
    assert content_words("The dog barks twice, then cars are passing.") == {"dog", "bark", "car", "pass"}
    forms = ["time times", "glass glasses", "dance dancing danced", "bus buses", "play plays played"]
    assert all(len(content_words(words)) == 1 for words in forms)


def test_validate_keeps_grounded_pairs_and_says_why_others_go():
    caption = "A dog barks twice while a car passes by on a wet road."
    pairs = [
        {"question": "What barks?", "answer": "A dog.", "qa_type": "sound_sources"},
        {"question": "How many times does the dog bark?", "answer": "Twice.",
         "qa_type": "counting_and_order"},
        {"question": "what BARKS", "answer": "The dog.", "qa_type": "sound_sources"},  # same question again
        {"question": "Which instrument plays?", "answer": "A violin solo.", "qa_type": "music_attributes"},
        {"question": "Who passes?", "answer": "A car.", "qa_type": "vehicles"},
        {"question": "", "answer": "A car.", "qa_type": "sound_sources"},
        {"question": "What is heard on the road?", "answer": "", "qa_type": "sound_sources"},
        # grounded in a cue rather than in the caption
        {"question": "Which animal is tagged?", "answer": "A canine.", "qa_type": "sound_sources"},
    ]
    kept, rejected = validate_qa_pairs(pairs, [caption, "Dog, Canine, Animal"], QA_TYPES)
    assert [pair["question"] for pair in kept] == ["What barks?", "How many times does the dog bark?",
                                                   "Which animal is tagged?"]
    assert rejected == [
        "duplicate question: 'what BARKS'",
        "not grounded in the caption or cues: 'Which instrument plays?' 'A violin solo.'",
        "unknown qa_type 'vehicles' (allowed: " + ", ".join(QA_TYPES) + ")",
        "empty question or answer: ''",
        "empty question or answer: 'What is heard on the road?'",
    ]


def test_a_question_about_something_absent_is_not_grounded():
    kept, rejected = validate_qa_pairs(
        [{"question": "How many times does the dog bark?", "answer": "Twice.",
          "qa_type": "counting_and_order"}],
        ["Rain falls on a metal roof."], QA_TYPES,
    )
    assert kept == [] and rejected[0].startswith("not grounded")
