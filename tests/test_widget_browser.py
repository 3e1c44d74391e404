"""The help widget in a real headless Chromium, on a host page served from another origin.

The API (real model, real Chroma, real Redis, extractive answers) and the demo host page run
as two uvicorn servers on two loopback ports, so every request the widget makes is a real
cross-origin one: token exchange, CORS preflights, the streamed answer, feedback. A third
origin, not registered for the widget, serves the same page to show it is refused.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from api.demo import DEMO_WIDGET, demo_app
from api.main import create_app
from citewise.answer.generators.base import Turn
from citewise.search.embeddings import LocalEmbeddings
from citewise.search.store import Hit
from citewise.settings import Settings
from tests.answer_helpers import free_socket, ingest_into, serve
from tests.conftest import SAMPLE

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ADMIN_KEY = "admin-key-1234567890abcdef"
WAIT_MS = 30_000

# Written to be found by one question, and to run script in any page that renders it as HTML.
HOSTILE = """# Quokka vouchers

Quokka vouchers are loyalty credits for annual plans. <script>window.__pwned = 'script'</script>
Each quokka voucher is worth five euros <img src=x onerror="window.__pwned = 'img'"> and
expires after a year. Redeem quokka vouchers from
[the voucher page](javascript:window.__pwned='link') or
<a href="javascript:window.__pwned='anchor'">here</a>.
"""


@dataclass(frozen=True)
class Site:
    api: str
    page: str  # the demo page on an origin the widget is registered for
    stranger: str  # the same page on an origin it is not registered for


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("widget-corpus")
    for name in (
        "account/admin-handbook.docx",
        "billing/managing-your-subscription.md",
        "billing/plans-and-pricing.html",
    ):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE / name, folder / name)
    (folder / "vouchers.md").write_text(HOSTILE, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def settings(
    tmp_path_factory: pytest.TempPathFactory,
    corpus: Path,
    embeddings: LocalEmbeddings,
    cache_dir: Path,
    redis_url: str,
) -> Iterator[Settings]:
    home = tmp_path_factory.mktemp("widget-home")
    settings = Settings(
        home=home,
        cache_dir=cache_dir,
        redis_url=redis_url,
        redis_prefix=f"cwtest-widget-{home.name}",
        admin_keys=ADMIN_KEY,
    )
    ingest_into(settings, embeddings, corpus)
    yield settings
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{settings.redis.prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="module")
def site(settings: Settings, corpus: Path) -> Iterator[Site]:
    api_sock, page_sock, stranger_sock = free_socket(), free_socket(), free_socket()
    api = f"http://127.0.0.1:{api_sock.getsockname()[1]}"
    page = f"http://127.0.0.1:{page_sock.getsockname()[1]}"
    configured = settings.replace(
        widgets={DEMO_WIDGET: {"origins": [page], "kb": "default"}},
        kb_base_urls={"default": f"{page}/kb/"},
    )
    configured = Settings.model_validate(configured.model_dump())
    with (
        serve(create_app(configured), sock=api_sock),
        serve(demo_app(api, corpus), sock=page_sock),
        serve(demo_app(api, corpus), sock=stranger_sock) as stranger,
    ):
        yield Site(api, page, stranger)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    yield page
    context.close()
    assert dialogs == [], f"a dialog opened: {dialogs}"


def ask(page: Page, question: str) -> Any:
    """Type a question, send it, and wait for the answer to finish; the answer's locator."""
    count = page.locator('[data-testid="message"][data-role="assistant"]').count()
    page.get_by_test_id("input").fill(question)
    page.get_by_test_id("input").press("Enter")
    answer = page.locator('[data-testid="message"][data-role="assistant"]').nth(count)
    expect(answer).to_have_attribute("data-state", "done", timeout=WAIT_MS)
    return answer


def open_widget(page: Page, url: str) -> None:
    page.goto(url)
    page.get_by_test_id("launcher").click()
    expect(page.get_by_test_id("panel")).to_be_visible()


def test_a_question_streams_in_with_citations_that_open_their_source(
    site: Site, page: Page
) -> None:
    open_widget(page, site.page)
    answer = ask(page, "How long is an invitation valid?")

    expect(answer).to_contain_text("7 days")
    answer.get_by_test_id("cite").first.click()
    card = answer.get_by_test_id("citation-card")
    expect(card).to_be_visible()
    expect(card).to_contain_text("Administrator handbook")
    expect(card).to_contain_text("An invitation is valid for 7 days")
    href = answer.get_by_test_id("citation-link").get_attribute("href") or ""
    assert href.startswith(f"{site.page}/kb/account/admin-handbook.docx"), href

    answer = ask(page, "Which four plans does Tallybird have?")  # a new topic, same conversation
    link = citation_link_to(answer, "billing/plans-and-pricing.html")
    with page.context.expect_page() as opened:
        link.click()
    source = opened.value
    source.wait_for_load_state()
    assert source.url.startswith(f"{site.page}/kb/billing/plans-and-pricing.html"), source.url
    expect(source.locator("body")).to_contain_text("annual")


def citation_link_to(answer: Any, source: str) -> Any:
    """Open the answer's cited sources one by one until one links to ``source``; its link."""
    cited = answer.get_by_test_id("source")  # the "Sources:" list: each cited source once
    seen = []
    for n in range(cited.count()):
        cited.nth(n).click()
        link = answer.get_by_test_id("citation-link")
        expect(link).to_be_visible()
        seen.append(link.get_attribute("href") or "")
        if f"/kb/{source}" in seen[-1]:
            return link
    raise AssertionError(f"no citation of the answer links to {source}: {seen}")


def test_a_follow_up_continues_the_conversation_and_new_conversation_forgets_it(
    site: Site, page: Page
) -> None:
    open_widget(page, site.page)
    ask(page, "How long is an invitation valid?")
    host = page.locator("citewise-chat")
    conversation = host.get_attribute("data-conversation-id")
    assert conversation

    follow_up = ask(page, "Can I resend it?")  # "it": only the conversation says what
    follow_up.get_by_test_id("cite").first.click()
    expect(follow_up.get_by_test_id("citation-card")).to_contain_text("Administrator handbook")
    assert host.get_attribute("data-conversation-id") == conversation

    page.get_by_test_id("new-conversation").click()
    expect(page.locator('[data-testid="message"][data-role="user"]')).to_have_count(0)
    ask(page, "How do I cancel my subscription?")
    assert host.get_attribute("data-conversation-id") not in (None, conversation)


def test_each_browser_is_a_visitor_of_its_own_and_stays_one(
    site: Site, page: Page, browser: Browser
) -> None:
    def visitors_sent(on: Page) -> list[str]:
        sent: list[str] = []
        on.on(
            "request",
            lambda r: (
                sent.append(r.post_data_json.get("visitor"))
                if r.url.endswith("/v1/widget/token")
                else None
            ),
        )
        return sent

    sent = visitors_sent(page)
    open_widget(page, site.page)
    ask(page, "How long is an invitation valid?")
    conversation = page.locator("citewise-chat").get_attribute("data-conversation-id")
    page.reload()  # a new token for the same visitor, and the same conversation goes on
    page.get_by_test_id("launcher").click()
    follow_up = ask(page, "Can I resend it?")
    follow_up.get_by_test_id("cite").first.click()
    expect(follow_up.get_by_test_id("citation-card")).to_contain_text("Administrator handbook")
    assert page.locator("citewise-chat").get_attribute("data-conversation-id") == conversation
    assert len(sent) == 2 and sent[0] == sent[1] and re.fullmatch(r"[0-9a-f]{32}", sent[0])

    other = browser.new_context().new_page()  # another browser: another visitor
    other_sent = visitors_sent(other)
    open_widget(other, site.page)
    ask(other, "How do I cancel my subscription?")
    other.context.close()
    assert len(other_sent) == 1 and other_sent[0] not in (None, sent[0])


def test_thumbs_down_with_a_comment_reaches_the_report(site: Site, page: Page) -> None:
    open_widget(page, site.page)
    question = "How do I cancel my subscription?"
    answer = ask(page, question)
    answer.get_by_test_id("thumb-down").click()
    page.get_by_test_id("feedback-comment").fill("Please explain refunds on cancelling too.")
    page.get_by_test_id("feedback-send").click()
    expect(page.get_by_test_id("feedback-thanks")).to_be_visible(timeout=WAIT_MS)

    report = httpx.get(
        f"{site.api}/v1/admin/report",
        params={"since": "1h"},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=60,
    )
    assert report.status_code == 200, report.text
    groups = {g["question"]: g for g in report.json()["groups"]}
    assert groups[question]["disliked"] >= 1
    assert "Please explain refunds on cancelling too." in groups[question]["comments"]


def test_the_widget_is_refused_on_an_origin_it_is_not_registered_for(
    site: Site, page: Page
) -> None:
    refusals: list[int] = []
    page.on(
        "response",
        lambda r: refusals.append(r.status) if r.url.endswith("/v1/widget/token") else None,
    )
    open_widget(page, site.stranger)
    answered = page.locator('[data-testid="message"][data-role="assistant"][data-state="done"]')
    greetings = answered.count()
    page.get_by_test_id("input").fill("How long is an invitation valid?")
    page.get_by_test_id("input").press("Enter")
    expect(page.get_by_test_id("notice").last).to_contain_text("isn't enabled", timeout=WAIT_MS)
    expect(answered).to_have_count(greetings)
    expect(page.get_by_test_id("cite")).to_have_count(0)
    # The token exchange is readable from any page, so the widget can say why it is refused.
    assert refusals == [403]


def test_a_hostile_document_cannot_run_script_in_the_widget(site: Site, page: Page) -> None:
    open_widget(page, site.page)
    answer = ask(page, "What are quokka vouchers worth?")
    expect(answer).to_contain_text("five euros")
    answer.get_by_test_id("cite").first.click()
    expect(answer.get_by_test_id("citation-card")).to_be_visible()

    assert page.evaluate("window.__pwned") is None
    host = page.locator("citewise-chat")
    assert host.locator("script").count() == 0
    assert host.locator("img").count() == 0
    hrefs = host.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert all(h and h.startswith(("http://", "https://")) for h in hrefs), hrefs


class PausedGenerator:
    """Sends one piece, then waits until cancelled; records the cancellation."""

    cache_identity = None  # never cached: every run must reach the generator

    def __init__(self) -> None:
        self.cancelled = threading.Event()

    async def condense(self, question: str, history: Sequence[Turn]) -> str:
        return question

    async def stream(self, question: str, sources: Sequence[Hit]) -> AsyncIterator[str]:
        yield "Invitations stay valid for "
        try:
            await asyncio.Event().wait()  # never set: only Stop ends this answer
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


def test_stop_ends_a_streaming_answer_and_the_server_stops_generating(
    settings: Settings, corpus: Path, page: Page
) -> None:
    generator = PausedGenerator()
    api_sock, page_sock = free_socket(), free_socket()
    api = f"http://127.0.0.1:{api_sock.getsockname()[1]}"
    origin = f"http://127.0.0.1:{page_sock.getsockname()[1]}"
    configured = Settings.model_validate(
        settings.model_dump() | {"widgets": {DEMO_WIDGET: {"origins": [origin]}}}
    )
    with (
        serve(create_app(configured, generator=generator), sock=api_sock),
        serve(demo_app(api, corpus), sock=page_sock),
    ):
        open_widget(page, origin)
        page.get_by_test_id("input").fill("How long is an invitation valid?")
        page.get_by_test_id("input").press("Enter")
        answer = page.locator('[data-testid="message"][data-role="assistant"]').last
        expect(answer).to_contain_text("Invitations stay valid for", timeout=WAIT_MS)
        expect(answer).to_have_attribute("data-state", "streaming")
        page.get_by_test_id("stop").click()
        expect(answer).to_have_attribute("data-state", "stopped")
        expect(page.get_by_test_id("send")).to_be_visible()
        assert generator.cancelled.wait(30), "the server kept generating after Stop"
