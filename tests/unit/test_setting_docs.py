"""Each setting is declared once (config.py): the variables read, the flags, the error wording and
the documentation tables all come from that declaration, and the docs show it as it is."""

from __future__ import annotations

import argparse
import inspect
import re
from dataclasses import fields
from pathlib import Path

import pytest

from ftserve.cli.main import _parser, load_settings
from ftserve.config import ConfigError, Settings, declared_settings, settings_from_env
from ftserve.setting import Setting
from ftserve.setting_table import markdown_table

ROOT = Path(__file__).resolve().parents[2]


def _table_after(path: Path, heading: str) -> str:
    """The Markdown table under ``heading``: its lines from the header to the first blank."""
    text = path.read_text()
    start = text.index("\n| Variable", text.index(heading)) + 1
    return text[start : text.index("\n\n", start) + 1]


def test_the_readme_table_is_the_declaration() -> None:
    """Regenerate with ``python -m ftserve.config --markdown`` when this fails."""
    assert _table_after(ROOT / "README.md", "\n## Configuration\n") == markdown_table()


def test_the_deployment_guide_table_is_the_declaration() -> None:
    """Regenerate with ``python -m ftserve.config --markdown --who`` when this fails."""
    got = _table_after(ROOT / "docs" / "deployment.md", "\n## Settings\n")
    assert got == markdown_table(who=True)


def test_every_field_is_declared_once() -> None:
    declared = declared_settings()
    assert [s.attr for s in declared] == [f.name for f in fields(Settings)]
    envs = [s.env for s in declared]
    assert len(set(envs)) == len(envs) and all(re.fullmatch(r"FTSERVE_[A-Z0-9_]+", e) for e in envs)
    flags = [s.declared.flag for s in declared if s.declared.flag]
    assert len(set(flags)) == len(flags)
    for s in declared:
        assert s.declared.meaning and s.declared.who
        assert bool(s.declared.flag) == bool(s.declared.commands), s.attr


@pytest.mark.parametrize("s", declared_settings(), ids=lambda s: s.env)
def test_the_documented_default_is_the_default(s: Setting) -> None:
    """What the tables show as a default, given as the variable, reads back as that default."""
    default = getattr(Settings(), s.attr)
    assert default == s.default
    if s.declared.unset is None and s.default is not None:
        assert getattr(settings_from_env({s.env: s.kind.show(s.default)}), s.attr) == default
    assert getattr(settings_from_env({}), s.attr) == default


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FTSERVE_PORT": "eighty"}, "FTSERVE_PORT='eighty': must be an integer"),
        ({"FTSERVE_PORT": "70000"}, "FTSERVE_PORT='70000': must be between 0 and 65535"),
        ({"FTSERVE_MAX_UPLOAD_BYTES": "0"}, "FTSERVE_MAX_UPLOAD_BYTES='0': must be >= 1"),
        ({"FTSERVE_LEASE_SECONDS": "1.5"}, "FTSERVE_LEASE_SECONDS='1.5': must be an integer"),
        ({"FTSERVE_LEASE_SECONDS": "1"}, "FTSERVE_LEASE_SECONDS='1': must be between 2 and 86400"),
        (
            {"FTSERVE_EVENTS_HEARTBEAT": "soon"},
            "FTSERVE_EVENTS_HEARTBEAT='soon': must be a number of seconds",
        ),
        (
            {"FTSERVE_EVENTS_HEARTBEAT": "nan"},
            "FTSERVE_EVENTS_HEARTBEAT='nan': must be between 0.01 and 3600.0 seconds",
        ),
        ({"FTSERVE_DEVICE": "tpu"}, "FTSERVE_DEVICE='tpu': must be auto, cpu or cuda"),
        ({"FTSERVE_DEVICE": ""}, "FTSERVE_DEVICE='': must be auto, cpu or cuda"),
        (
            {"FTSERVE_LOG_LEVEL": "LOUD"},
            "FTSERVE_LOG_LEVEL='loud': must be error, warning, info or debug",
        ),
        ({"FTSERVE_INFERENCE": "maybe"}, "FTSERVE_INFERENCE='maybe': must be 1 or 0"),
        (
            {"FTSERVE_INFERENCE_MEMORY": "lots"},
            "FTSERVE_INFERENCE_MEMORY='lots': must be a size in bytes such as 8GiB or 512MiB",
        ),
        (
            {"FTSERVE_API_KEYS": "short"},
            "FTSERVE_API_KEYS: every key must be at least 8 characters without spaces",
        ),
        (
            {"FTSERVE_MODEL_ALIASES": "nonsense"},
            "FTSERVE_MODEL_ALIASES: entries must look like alias=model, got 'nonsense'",
        ),
    ],
)
def test_bad_values_keep_their_wording(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_env(env)
    assert str(info.value) == message


def test_empty_variables() -> None:
    """Empty is unset, except where empty means something (FTSERVE_HOST= : every interface)."""
    empty = settings_from_env({s.env: "" for s in declared_settings() if s.declared.empty_is_unset})
    assert empty == Settings()
    assert settings_from_env({"FTSERVE_HOST": ""}).host == ""


def _flags(command: str) -> set[str]:
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[
        command
    ]
    return {o for a in sub._actions for o in a.option_strings if o.startswith("--")} - {"--help"}


def test_the_server_commands_take_the_flags_they_always_took() -> None:
    assert _flags("serve") == {
        "--host",
        "--port",
        "--data-dir",
        "--log-level",
        "--workers",
        "--inference",
    }
    assert _flags("inference") == {"--listen", "--data-dir", "--log-level"}
    assert _flags("worker") == {"--data-dir", "--concurrency", "--log-level"}
    assert _flags("migrate") == {"--data-dir", "--log-level"}


def test_flags_override_variables_and_are_checked_by_the_same_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for s in declared_settings():
        monkeypatch.delenv(s.env, raising=False)
    monkeypatch.setenv("FTSERVE_PORT", "9000")
    monkeypatch.setenv("FTSERVE_INFERENCE", "1")
    args = _parser().parse_args(
        [
            "serve",
            "--port",
            "9001",
            "--inference",
            "0",
            "--data-dir",
            str(tmp_path),
            "--workers",
            "0",
        ]
    )
    settings = load_settings(args)
    assert (settings.port, settings.inference, settings.data_dir, settings.workers) == (
        9001,
        False,
        tmp_path,
        0,
    )
    assert load_settings(_parser().parse_args(["serve"])).port == 9000
    for argv, message in [
        (["serve", "--port", "70000"], "--port 70000: must be between 0 and 65535"),
        (["serve", "--workers", "65"], "--workers 65: must be between 0 and 64"),
        (["worker", "--concurrency", "0"], "--concurrency 0: must be between 1 and 64"),
    ]:
        with pytest.raises(ConfigError) as info:
            load_settings(_parser().parse_args(argv))
        assert str(info.value) == message


def test_version_is_written_once(capsys: pytest.CaptureFixture[str]) -> None:
    """pyproject reads ``ftserve.__version__``; ``ftserve --version`` and the OpenAPI document
    show it."""
    import tomllib

    import ftserve
    from ftserve.api.openapi import openapi_document

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "ftserve.__version__"}
    with pytest.raises(SystemExit):
        _parser().parse_args(["--version"])
    assert capsys.readouterr().out == f"ftserve {ftserve.__version__}\n"
    # Built from the server's settings once the per-domain declarations land; today without.
    takes_settings = bool(inspect.signature(openapi_document).parameters)
    document = openapi_document(Settings()) if takes_settings else openapi_document()  # type: ignore[call-arg]
    assert document["info"]["version"] == ftserve.__version__
