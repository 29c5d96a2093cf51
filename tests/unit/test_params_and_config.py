"""Parameter checks (OpenAI's codes and wording) and settings validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ftserve.config import ConfigError, parse_aliases, parse_api_keys, settings_from_env
from ftserve.errors import InvalidRequest, InvalidValue
from ftserve.params import expect_int, query_int


def test_limit_messages() -> None:
    with pytest.raises(InvalidValue) as info:
        query_int({"limit": "0"}, "limit", default=20, minimum=1, maximum=100)
    assert info.value.message == (
        "Invalid 'limit': integer below minimum value. Expected a value >= 1, but got 0 instead."
    )
    assert (info.value.param, info.value.code) == ("limit", "integer_below_min_value")
    with pytest.raises(InvalidValue) as info:
        query_int({"limit": "x"}, "limit", default=20, minimum=1, maximum=100)
    assert info.value.code == "invalid_type"
    assert query_int({}, "limit", default=20, minimum=1, maximum=100) == 20


@given(st.text(max_size=12))
def test_query_int_never_raises_anything_else(raw: str) -> None:
    try:
        value = query_int({"limit": raw}, "limit", default=20, minimum=1, maximum=100)
    except InvalidValue as exc:
        assert exc.param == "limit"
    else:
        assert 1 <= value <= 100


def test_expect_int_rejects_bools_and_fractions() -> None:
    for bad in (True, 1.5, "3", None):
        with pytest.raises(InvalidRequest):
            expect_int(bad, "seed", minimum=0, maximum=10)
    assert expect_int(3.0, "seed", minimum=0, maximum=10) == 3


def test_settings_from_env() -> None:
    s = settings_from_env(
        {
            "FTSERVE_PORT": "9000",
            "FTSERVE_API_KEYS": "key-one-123, team:key-two-456",
            "FTSERVE_MODEL_ALIASES": "gpt-4o-mini=ftserve-tiny",
        }
    )
    assert s.port == 9000
    assert [(k.key, k.organization) for k in s.api_keys] == [
        ("key-one-123", "personal"),
        ("key-two-456", "team"),
    ]
    assert s.model_aliases == {"gpt-4o-mini": "ftserve-tiny"}


@pytest.mark.parametrize(
    "env",
    [
        {"FTSERVE_PORT": "eighty"},
        {"FTSERVE_PORT": "70000"},
        {"FTSERVE_API_KEYS": "short"},
        {"FTSERVE_DEVICE": "tpu"},
        {"FTSERVE_MODEL_ALIASES": "nonsense"},
        {"FTSERVE_WORKERS": "-1"},
        {"FTSERVE_KEEP_ALIVE_SECONDS": "0"},
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_env(env)
    assert next(iter(env)) in str(info.value)


def test_parsers() -> None:
    assert parse_api_keys("") == ()
    assert parse_aliases("a=b,c=d") == {"a": "b", "c": "d"}
