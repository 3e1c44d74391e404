"""The widget signing key kept under CITEWISE_HOME: created once, whole, by whoever starts first.

Two processes starting at the same moment both find no key file; one creates it, the other
must read the complete key (never an empty or half-written file, which would make it answer
500 to every widget call, or sign tokens the first one refuses)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import jwt
import pytest

from citewise.errors import ConfigurationError
from citewise.serving.widgets import ALGORITHM, signing_key
from citewise.settings import WidgetSettings

ROUNDS = 40
RACERS = 12


def test_threads_racing_to_create_the_key_all_read_the_same_whole_key(tmp_path: Path) -> None:
    settings = WidgetSettings(secret=None)
    for round_ in range(ROUNDS):
        path = tmp_path / f"round-{round_}" / "widget-secret"
        start = threading.Barrier(RACERS)
        keys: list[str] = []
        errors: list[BaseException] = []

        def race(
            path: Path = path,
            start: threading.Barrier = start,
            keys: list[str] = keys,
            errors: list[BaseException] = errors,
        ) -> None:
            start.wait()
            try:
                keys.append(signing_key(settings, path))
            except BaseException as exc:  # collected: a thread's exception is otherwise lost
                errors.append(exc)

        threads = [threading.Thread(target=race) for _ in range(RACERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        assert len(keys) == RACERS
        assert len(set(keys)) == 1, f"round {round_}: the racers disagree on the key"
        assert len(keys[0]) >= 32
        assert path.read_text(encoding="utf-8").strip() == keys[0]
        assert [p.name for p in path.parent.iterdir()] == ["widget-secret"]  # no temp files


_RACER = """
import sys
from pathlib import Path
from citewise.serving.widgets import signing_key
from citewise.settings import WidgetSettings
sys.stdin.readline()  # every racer is started and waiting: go
print(signing_key(WidgetSettings(secret=None), Path(sys.argv[1])))
"""


def test_processes_starting_together_never_see_an_empty_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEWISE_")}
    for round_ in range(3):
        path = tmp_path / f"round-{round_}" / "widget-secret"
        racers = [
            subprocess.Popen(
                [sys.executable, "-c", _RACER, str(path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(6)
        ]
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.write("\n")
            racer.stdin.flush()
        outputs = [racer.communicate(timeout=120) for racer in racers]
        for racer, (_, err) in zip(racers, outputs, strict=True):
            assert racer.returncode == 0, err
        keys = {out.strip() for out, _ in outputs}
        assert len(keys) == 1 and len(keys.pop()) >= 32


@pytest.mark.parametrize("content", ["", "\n", "too-short"])
def test_an_empty_or_short_key_file_is_refused_not_used(tmp_path: Path, content: str) -> None:
    path = tmp_path / "widget-secret"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigurationError, match="widget-secret"):
        signing_key(WidgetSettings(secret=None), path)


def test_pyjwt_itself_refuses_to_sign_with_an_empty_key() -> None:
    # The pyproject floor (pyjwt>=2.13) is the first release that does; older ones signed.
    with pytest.raises(jwt.InvalidKeyError):
        jwt.encode({"sub": "x"}, "", algorithm=ALGORITHM)
