"""GET / says what the service is and where to go, and gives nothing of the configuration away."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from citewise import __version__
from citewise.settings import Settings

ADMIN_KEY = "home-admin-key-0123456789"
QUERY_KEY = "home-query-key-0123456789"
SECRET = "home-widget-secret-0123456789abcdef0123"
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.fixture
def client(tmp_path: Path, cache_dir: Path) -> Iterator[TestClient]:
    """The whole app, lifespan included (for /readyz), with keys and a secret configured."""
    settings = Settings(
        home=tmp_path / "private-home",
        cache_dir=cache_dir,
        redis_url="off",
        admin_keys=ADMIN_KEY,
        query_keys=QUERY_KEY,
        widget_secret=SECRET,
        default_kb="internal-handbook",
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_api_clients_get_json_with_links_that_answer(client: TestClient) -> None:
    response = client.get("/", headers={"Accept": "*/*"})  # what curl sends
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    info = response.json()
    assert info["name"] == "Citewise" and info["version"] == __version__
    assert info["summary"].startswith("Answers questions from your documents")
    assert info["links"] == {
        "docs": "/docs",
        "redoc": "/redoc",
        "openapi": "/openapi.json",
        "healthz": "/healthz",
        "readyz": "/readyz",
    }
    for path in info["links"].values():  # none needs a key
        assert client.get(path).status_code == 200, path


def test_a_browser_gets_a_page_linking_to_the_docs(client: TestClient) -> None:
    response = client.get("/", headers={"Accept": BROWSER})
    assert response.headers["content-type"].startswith("text/html")
    assert "<title>Citewise</title>" in response.text
    assert '<a href="/docs">' in response.text and '<a href="/readyz">' in response.text


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        ("", False),
        ("application/json", False),
        ("text/html;q=0.5, application/json", False),
        ("text/html, application/json;q=0.9", True),
        ("text/html;q=0.9, application/*;q=0.8", True),
        ("text/html;q=bogus, */*", False),
    ],
)
def test_json_unless_html_ranks_higher(client: TestClient, accept: str, html: bool) -> None:
    response = client.get("/", headers={"Accept": accept})
    assert response.headers["content-type"].startswith("text/html" if html else "application/")


@pytest.mark.parametrize("accept", ["application/json", BROWSER])
def test_nothing_of_the_configuration_shows(
    client: TestClient, tmp_path: Path, accept: str
) -> None:
    text = client.get("/", headers={"Accept": accept}).text
    for given in (ADMIN_KEY, QUERY_KEY, SECRET, str(tmp_path), "private", "internal-handbook"):
        assert given not in text


def test_behind_a_path_prefix_the_links_are_under_it(tmp_path: Path) -> None:
    app = create_app(Settings(home=tmp_path, redis_url="off"))
    info = TestClient(app, root_path="/citewise").get("/").json()
    assert info["links"]["docs"] == "/citewise/docs"
    assert info["links"]["openapi"] == "/citewise/openapi.json"
