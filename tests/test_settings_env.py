"""The .env file: read from the current directory or CITEWISE_ENV_FILE, below real variables."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from citewise.settings import FLAT, Settings, explain
from citewise.settings_env import EnvFileError


@pytest.fixture(autouse=True)
def in_a_fresh_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No CITEWISE_ variable set (not even the test run's CITEWISE_ENV_FILE=off), in tmp_path."""
    for place in FLAT.values():
        monkeypatch.delenv(place.variable, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, *lines: str) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def test_the_env_file_in_the_current_directory_is_read(tmp_path: Path) -> None:
    write(
        tmp_path / ".env",
        "# settings for this machine",
        "CITEWISE_CHUNK_TOKENS=300",
        "export CITEWISE_RETRIEVAL_MODE=bm25",
        "CITEWISE_LLM_API_KEY='sk-with spaces'",
        'CITEWISE_KB_BASE_URLS={"default": "https://help.example.com/"}',
        "CITEWISE_ADMIN_KEYS=admin-key-0123456789,admin-key-9876543210",
    )
    settings = Settings()
    assert settings.chunking.tokens == 300 and settings.retrieval.mode == "bm25"
    assert settings.llm.api_key is not None
    assert settings.llm.api_key.get_secret_value() == "sk-with spaces"
    assert settings.answering.kb_base_urls == {"default": "https://help.example.com/"}
    assert len(settings.access.admin_keys) == 2
    assert settings.core.env_file == Path(".env")


def test_the_environment_wins_over_the_file_and_keywords_over_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / ".env", "CITEWISE_CHUNK_TOKENS=300", "CITEWISE_LLM_MODEL=from-file")
    monkeypatch.setenv("CITEWISE_CHUNK_TOKENS", "400")
    monkeypatch.setenv("CITEWISE_LLM_MODEL", "")  # empty counts as unset: the file's value
    assert Settings().chunking.tokens == 400 and Settings().llm.model == "from-file"
    assert Settings(chunk_tokens=500).chunking.tokens == 500


def test_only_citewise_names_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        tmp_path / ".env",
        "API_WORKERS=4",  # docker compose's own, beside ours
        f"PROMETHEUS_MULTIPROC_DIR={tmp_path}",  # prometheus_client reads the real environment
        "CITEWISE_ENV_FILE=elsewhere.env",  # says where to read: the environment's to say
        "CITEWISE_NO_SUCH_SETTING=1",
    )
    settings = Settings()
    assert settings.observability.prometheus_multiproc_dir is None
    assert settings.core.env_file == Path(".env")


def test_citewise_env_file_names_another_file_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / ".env", "CITEWISE_DEFAULT_KB=from-dot-env")
    (tmp_path / "conf").mkdir()
    write(tmp_path / "conf" / "citewise.env", "CITEWISE_DEFAULT_KB=from-conf")

    monkeypatch.setenv("CITEWISE_ENV_FILE", "conf/citewise.env")  # from the current directory
    assert Settings().core.default_kb == "from-conf"
    assert Settings().core.env_file == Path("conf/citewise.env")

    monkeypatch.setenv("CITEWISE_ENV_FILE", "off")
    assert Settings().core.default_kb == "default" and Settings().core.env_file is None

    monkeypatch.setenv("CITEWISE_ENV_FILE", "conf/missing.env")
    with pytest.raises(EnvFileError) as error:
        Settings()
    assert explain(error.value) == [
        "CITEWISE_ENV_FILE: there is no file conf/missing.env (set it to 'off' for none)"
    ]


def test_without_a_file_the_defaults_hold(tmp_path: Path) -> None:
    assert not (tmp_path / ".env").exists()
    settings = Settings()
    assert settings.chunking.tokens == 200 and settings.core.default_kb == "default"


def test_a_malformed_line_stops_everything_without_echoing_it(tmp_path: Path) -> None:
    write(
        tmp_path / ".env",
        "CITEWISE_CHUNK_TOKENS=300",
        "CITEWISE_LLM_API_KEY sk-secret-pasted-without-equals",
        "CITEWISE_DEFAULT_KB=handbook",
    )
    with pytest.raises(EnvFileError) as error:
        Settings()
    said = explain(error.value)
    assert said == [
        ".env: line 2 is not NAME=value (quote values with spaces; CITEWISE_ENV_FILE=off "
        "ignores the file)"
    ]
    assert "sk-secret" not in str(error.value)


def test_a_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"CITEWISE_DEFAULT_KB=\xff\xfe\n")
    with pytest.raises(EnvFileError, match=r"^\.env: not UTF-8 text"):
        Settings()


def test_a_bad_value_in_the_file_is_told_by_its_variable(tmp_path: Path) -> None:
    write(tmp_path / ".env", "CITEWISE_EMBEDDING_CACHE=maybe")
    with pytest.raises(ValidationError) as error:
        Settings()
    assert explain(error.value) == ["CITEWISE_EMBEDDING_CACHE: expected true or false"]
