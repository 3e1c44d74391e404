"""End users' JWTs: checked as an identity provider's tokens must be, and the knowledge bases
their claim grants enforced on every face."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import redis
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from api.main import create_app
from citewise.errors import Unauthorized
from citewise.search.embeddings import LocalEmbeddings
from citewise.serving.user_tokens import UserTokens, looks_like_jwt
from citewise.settings import AccessSettings, Settings
from tests.answer_helpers import PARROTS_KB, sample_home, serve

SECRET = "a-shared-secret-of-the-identity-provider-0123456789-long-enough-for-hs512"
ISSUER = "https://id.example.test/"
AUDIENCE = "citewise"
INVITATION = "How long is an invitation valid?"
PARROT = "What is the office parrot called?"


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"sub": "ada", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def hs256(**changes: Any) -> str:
    return jwt.encode(claims(**changes), SECRET, algorithm="HS256")


def access(**values: Any) -> AccessSettings:
    return AccessSettings(jwt_audience=AUDIENCE, jwt_issuer=ISSUER, **values)


# --- checking a token -----------------------------------------------------------------------


def test_a_valid_token_names_its_user_and_the_knowledge_bases_it_grants() -> None:
    tokens = UserTokens(access(jwt_secret=SECRET))

    caller = tokens.verify(hs256(kbs=["default", "faq"]))

    assert caller.role == "user" and caller.kbs == frozenset({"default", "faq"})
    assert caller.owner == tokens.verify(hs256(kbs="faq")).owner  # the person, not the token
    assert caller.owner != tokens.verify(hs256(sub="grace")).owner
    assert tokens.verify(hs256(kbs="*")).kbs is None
    assert tokens.verify(hs256()).kbs == frozenset()  # no claim: nothing granted


def test_groups_map_to_knowledge_bases() -> None:
    tokens = UserTokens(
        access(jwt_secret=SECRET, jwt_kb_claim="groups", jwt_claim_kbs='{"support": ["help"]}')
    )
    assert tokens.verify(hs256(groups=["support", "other"])).kbs == frozenset({"help"})


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (lambda: hs256(exp=int(time.time()) - 120), "expired"),
        (lambda: hs256(aud="another-service"), "audience"),
        (lambda: hs256(iss="https://evil.example/"), "issuer"),
        (lambda: hs256(sub=None), "'sub'"),
        (lambda: hs256(exp=None), "'exp'"),
        (
            lambda: jwt.encode(claims(), "another-secret-of-the-same-length-0123456789", "HS256"),
            "signature",
        ),
        (lambda: jwt.encode(claims(), None, algorithm="none"), "'none'"),
        (lambda: jwt.encode(claims(), SECRET, algorithm="HS512"), "HS512"),
    ],
)
def test_a_bad_token_is_refused_saying_why(token: Any, message: str) -> None:
    tokens = UserTokens(access(jwt_secret=SECRET))
    with pytest.raises(Unauthorized, match=message):
        tokens.verify(token())


def test_clock_skew_is_allowed_up_to_the_leeway_only() -> None:
    tokens = UserTokens(access(jwt_secret=SECRET, jwt_leeway_s=30))
    assert tokens.verify(hs256(exp=int(time.time()) - 10)).role == "user"
    with pytest.raises(Unauthorized, match="expired"):
        tokens.verify(hs256(exp=int(time.time()) - 60))


def test_settings_require_an_audience_and_an_issuer_and_refuse_none() -> None:
    with pytest.raises(ValueError, match="CITEWISE_JWT_AUDIENCE"):
        AccessSettings(jwt_secret=SECRET)
    with pytest.raises(ValueError, match="'none'"):
        access(jwt_secret=SECRET, jwt_algorithms="HS256,none")
    with pytest.raises(ValueError, match="needs CITEWISE_JWT_JWKS"):
        access(jwt_secret=SECRET, jwt_algorithms="RS256")
    assert not looks_like_jwt("a-plain-api-key-0123456789") and looks_like_jwt(hs256())


# --- keys from a JWKS, rotated ---------------------------------------------------------------


def jwk(public: Any, kid: str) -> dict[str, Any]:
    key: dict[str, Any] = json.loads(
        jwt.algorithms.get_default_algorithms()[
            "RS256" if isinstance(public, rsa.RSAPublicKey) else "ES256"
        ].to_jwk(public)
    )
    return key | {"kid": kid}


def test_rs256_and_es256_keys_come_from_a_jwks_file_read_again_when_rotated(
    tmp_path: Path,
) -> None:
    first = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk(first.public_key(), "k1")]}))
    now = [1000.0]
    tokens = UserTokens(access(jwt_jwks=str(jwks)), clock=lambda: now[0])

    token = jwt.encode(claims(kbs="default"), first, algorithm="RS256", headers={"kid": "k1"})
    assert tokens.verify(token).kbs == frozenset({"default"})

    # The provider rotates to an EC key: a token naming the new key id makes the set re-read.
    second = ec.generate_private_key(ec.SECP256R1())
    jwks.write_text(json.dumps({"keys": [jwk(second.public_key(), "k2")]}))
    with pytest.raises(Unauthorized, match="does not list"):
        tokens.verify(jwt.encode(claims(), second, algorithm="ES256", headers={"kid": "k2"}))
    now[0] += 2  # re-reading for an unknown key id happens at most once a second
    rotated = jwt.encode(claims(kbs="faq"), second, algorithm="ES256", headers={"kid": "k2"})
    assert tokens.verify(rotated).kbs == frozenset({"faq"})

    # An HS256 token is never checked against a public key (algorithm confusion).
    with pytest.raises(Unauthorized, match="HS256"):
        tokens.verify(hs256())


class _JwksServer(BaseHTTPRequestHandler):
    body = b""
    fetched = 0

    def do_GET(self) -> None:
        type(self).fetched += 1
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(type(self).body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, type[_JwksServer]]]:
    handler = type("Handler", (_JwksServer,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_keys_from_a_jwks_url_are_cached(jwks_server: tuple[str, type[_JwksServer]]) -> None:
    url, handler = jwks_server
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    handler.body = json.dumps({"keys": [jwk(key.public_key(), "k1")]}).encode()
    tokens = UserTokens(access(jwt_jwks=url))

    for _ in range(3):
        token = jwt.encode(claims(kbs="default"), key, algorithm="RS256", headers={"kid": "k1"})
        assert tokens.verify(token).role == "user"
    assert handler.fetched == 1
    forged = jwt.encode(claims(), key, algorithm="RS256", headers={"kid": "unknown"})
    with pytest.raises(Unauthorized, match="does not list"):
        tokens.verify(forged)


# --- every face enforces the grant -----------------------------------------------------------


@pytest.fixture(scope="module")
def url(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    embeddings: LocalEmbeddings,
    cache_dir: Path,
    redis_url: str,
) -> Iterator[str]:
    home = sample_home(request.config, tmp_path_factory, embeddings, cache_dir)
    prefix = f"cwtest-{uuid.uuid4().hex[:12]}"
    settings = Settings(
        home=home,
        cache_dir=cache_dir,
        redis_url=redis_url,
        redis_prefix=prefix,
        jwt_secret=SECRET,
        jwt_audience=AUDIENCE,
        jwt_issuer=ISSUER,
        allowed_hosts=["127.0.0.1"],
    )
    try:
        with serve(create_app(settings)) as base:
            yield base
    finally:
        client = redis.Redis.from_url(redis_url, socket_timeout=5)
        keys = list(client.scan_iter(f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def ui_message(text: str) -> list[dict[str, Any]]:
    return [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": text}]}]


def test_a_user_sees_and_asks_only_the_knowledge_bases_granted(url: str) -> None:
    parrots_only = bearer(hs256(kbs=[PARROTS_KB]))
    models = httpx.get(f"{url}/v1/models", headers=parrots_only).json()
    assert [m["id"] for m in models["data"]] == [PARROTS_KB]

    asked = httpx.post(f"{url}/v1/ask", json={"question": PARROT}, headers=parrots_only)
    assert asked.status_code == 200 and "Captain Biscuit" in asked.json()["answer"]

    denied = [
        httpx.post(
            f"{url}/v1/search", json={"query": INVITATION, "kb": "default"}, headers=parrots_only
        ),
        httpx.post(
            f"{url}/v1/ask", json={"question": INVITATION, "kb": "default"}, headers=parrots_only
        ),
        httpx.post(
            f"{url}/v1/ask/stream",
            json={"question": INVITATION, "kb": "default"},
            headers=parrots_only,
        ),
        httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "default", "messages": [{"role": "user", "content": INVITATION}]},
            headers=parrots_only,
        ),
        httpx.post(
            f"{url}/v1/ui/chat",
            json={"messages": ui_message(INVITATION), "kb": "default"},
            headers=parrots_only,
        ),
    ]
    for response in denied:
        assert response.status_code == 403, response.request.url
        assert "does not grant knowledge base 'default'" in response.json()["error"]["message"]


def test_without_a_valid_token_nothing_is_answered(url: str) -> None:
    missing = httpx.post(f"{url}/v1/ask", json={"question": INVITATION})
    assert missing.status_code == 401 and "token" in missing.json()["error"]["message"]

    expired = bearer(hs256(kbs="*", exp=int(time.time()) - 3600))
    response = httpx.post(f"{url}/v1/ask", json={"question": INVITATION}, headers=expired)
    assert response.status_code == 401 and "expired" in response.json()["error"]["message"]

    unsigned = jwt.encode(claims(kbs="*"), None, algorithm="none")
    forged = base64.urlsafe_b64encode(b"{}").decode().rstrip("=")
    for token in (unsigned + "x", f"{unsigned.split('.')[0]}.{forged}.sig"):
        assert httpx.get(f"{url}/v1/models", headers=bearer(token)).status_code == 401


def test_a_user_token_never_opens_admin_endpoints_and_conversations_are_the_users(url: str) -> None:
    everything = bearer(hs256(kbs="*"))
    admin = httpx.get(f"{url}/v1/kbs", headers=everything)
    assert admin.status_code == 403

    first = httpx.post(f"{url}/v1/ask", json={"question": INVITATION}, headers=everything).json()
    conversation = {"question": "Can I resend it?", "conversation_id": first["conversation_id"]}
    same_user = httpx.post(f"{url}/v1/ask", json=conversation, headers=bearer(hs256(kbs="*")))
    assert same_user.status_code == 200
    someone_else = bearer(hs256(kbs="*", sub="grace"))
    other = httpx.post(f"{url}/v1/ask", json=conversation, headers=someone_else)
    assert other.status_code == 404
