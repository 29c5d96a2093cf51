"""The reinforcement format of ftserve.files.validation: prompt messages ending with the user's
turn, every other key the grader's item; told apart from chat rows by how the messages end."""

from __future__ import annotations

import pytest

from ftserve.files.validation import analyse_lines

from .jsonl_examples import CHAT, Json, assistant, chat, line, rejection, user

RFT: dict[str, Json] = {
    "messages": [
        {"role": "developer", "content": "Answer with one word."},
        {"role": "user", "content": "Capital of France?"},
    ],
    "answer": "Paris",
    "meta": {"difficulty": [1, None, {"x": True}]},
}


def test_a_reinforcement_file_is_recognised_with_any_item_keys() -> None:
    few_shot = chat(user("2+2?"), assistant("4"), user("3+3?"), reference=6, tools="anything")
    analysis = analyse_lines([line(RFT), b"\n", line(few_shot), line(chat(user()))])
    assert (analysis.format, analysis.n_examples) == ("reinforcement", 3)


def test_an_answer_in_a_reinforcement_file_is_a_mixed_file_saying_why() -> None:
    answered = {**RFT, "messages": [*RFT["messages"], assistant("Paris.")]}
    error = rejection([line(RFT), line(answered)])
    assert (error.line, error.example) == (2, 2)
    assert error.reason == (
        "uses the chat format (its last message is the assistant's answer), but line 1 uses "
        "the reinforcement format (its last message is the user's prompt)"
    )


def test_a_chat_file_with_a_prompt_row_is_refused() -> None:
    error = rejection([line(CHAT), line(CHAT), line(chat(user("unanswered")))])
    assert error.line == 3
    assert error.reason.startswith("uses the reinforcement format")


def test_items_keys_do_not_make_a_chat_row_valid() -> None:
    # The last message decides the format, so an item key on an answered row is still unknown.
    error = rejection([line({**CHAT, "answer": "Paris"})])
    assert error.reason == "contains an unrecognized key 'answer'"


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        ([{"role": "user"}], "'messages[0]' is missing 'content'"),
        ([{"role": "critic", "content": "x"}, user()], "'messages[0].role' must be one of"),
        (
            [user(), assistant(weight=1), user()],
            "'messages[1]' has a 'weight', but weights apply only to chat examples",
        ),
        ([user(), user(content=[{"type": "audio"}])], "'messages[1].content[0].type' must be"),
    ],
)
def test_prompt_messages_are_checked_line_by_line(messages: list[Json], fragment: str) -> None:
    error = rejection([line(RFT), line({"messages": messages, "answer": "x"})])
    assert error.line == 2
    assert fragment in error.reason, error.reason
