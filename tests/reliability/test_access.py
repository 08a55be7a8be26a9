"""Access (docs/design.md §3): admin token vs run tokens, on real SQLite and PostgreSQL.

* run tokens are stored as SHA-256 hashes only, compared with hmac.compare_digest;
* a run token works for its own run only (another run → 403) and never for an admin
  endpoint (403); every operation in the OpenAPI schema that is not one of the three
  run-token operations is checked, so a new endpoint is admin-only unless listed here;
* POST /v1/runs/{id}/revoke (admin) makes the run's token answer 401 everywhere;
* without the admin token admin endpoints answer 401 (with WWW-Authenticate: Bearer);
* no default secret: production mode refuses to start without CURATOR_ADMIN_TOKEN; dev
  mode generates a random one, stores it 0600 in the data dir and prints it;
* admin token rotation: `extra_admin_tokens` accepts the old token during a rollover.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat

import pytest
from pydantic import ValidationError
from sqlalchemy import create_engine, text

from curator.core.config import Settings
from curator.runs import tokens
from tests.service.helpers import AUTH, bearer, make_bank, make_run, running_app

pytestmark = pytest.mark.anyio

# the operations a run token may call (on its own run); everything else is admin-only
RUN_TOKEN_OPS = {("get", "/v1/runs/{run_id}"), ("post", "/v1/runs/{run_id}/select"),
                 ("post", "/v1/runs/{run_id}/feedback"),
                 ("get", "/v1/runs/{run_id}/export"),  # the run's own record
                 ("get", "/v1/runs/{run_id}/value"),
                 ("post", "/v1/runs/{run_id}/metrics"),  # the trainer's own numbers
                 ("get", "/v1/runs/{run_id}/metrics")}
PUBLIC_OPS = {("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics")}  # no secrets


def admin_operations(app) -> list[tuple[str, str]]:
    ops = [(method, path) for path, item in app.openapi()["paths"].items()
           for method in item if method in {"get", "post", "put", "patch", "delete"}]
    return [op for op in ops if op not in RUN_TOKEN_OPS | PUBLIC_OPS]


def request_for(client, method: str, path: str, *, bank_id: int, run_id: int, headers):
    url = path.format(bank_id=bank_id, run_id=run_id, problem_id=0)
    params = {"runs": str(run_id)} if path == "/v1/compare" else None
    body = {"name": "x", "bank_id": bank_id, "problems": [{"external_id": "z", "prompt": "z"}]}
    if method == "get":
        return client.get(url, params=params, headers=headers)
    return client.request(method.upper(), url, params=params, headers=headers,
                          json={} if path.endswith("/index") or path.endswith("/revoke")
                          else {k: v for k, v in body.items()
                                if (k == "problems") == path.endswith("/problems")})


async def test_run_tokens_are_stored_hashed(settings):
    async with running_app(settings) as (client, _):
        run_id, token = await make_run(client, await make_bank(client, n=5))
        listing = (await client.get("/v1/runs", headers=AUTH)).text
        info = (await client.get(f"/v1/runs/{run_id}", headers=bearer(token))).text
    assert token.startswith(f"rt_{run_id}_") and len(token) > 40
    secret = token.split("_", 2)[2]
    assert secret not in listing and secret not in info
    engine = create_engine(settings.sqlalchemy_url)
    with engine.connect() as c:
        row = c.execute(text("SELECT * FROM runs WHERE id = :i"), {"i": run_id}).one()
    engine.dispose()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert not any(secret in str(v) for v in row)  # the token itself is nowhere in the row


async def test_tokens_are_compared_in_constant_time(settings, monkeypatch):
    """Every token check goes through hmac.compare_digest (no == on secrets)."""
    seen: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a, b):
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    async with running_app(settings) as (client, _):
        run_id, token = await make_run(client, await make_bank(client, n=5))
        seen.clear()
        r = await client.get(f"/v1/runs/{run_id}", headers=bearer(token))
        assert r.status_code == 200
        assert (tokens.hash_token(token), tokens.hash_token(token)) in seen
        seen.clear()
        wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
        r = await client.get(f"/v1/runs/{run_id}", headers=bearer(wrong))
        assert r.status_code == 401 and (tokens.hash_token(wrong), tokens.hash_token(token)) \
            in seen
        seen.clear()
        assert (await client.get("/v1/banks", headers=AUTH)).status_code == 200
        assert (settings.admin_token.encode(), settings.admin_token.encode()) in seen
        seen.clear()
        assert (await client.get("/v1/banks", headers=bearer("adm_guess"))).status_code == 401
        assert (b"adm_guess", settings.admin_token.encode()) in seen


async def test_run_token_is_scoped_to_its_run(settings):
    async with running_app(settings) as (client, _):
        bank_id = await make_bank(client, n=20)
        run_a, tok_a = await make_run(client, bank_id)
        run_b, tok_b = await make_run(client, bank_id)
        tb = (await client.post(f"/v1/runs/{run_b}/select", json={"batch_size": 2},
                                headers=bearer(tok_b))).json()
        fb = {"ticket_id": tb["ticket_id"],
              "results": [{"problem_id": p["problem_id"], "utility": 1.0}
                          for p in tb["problems"]]}
        for method, url, body in [("GET", f"/v1/runs/{run_b}", None),
                                  ("POST", f"/v1/runs/{run_b}/select", {"batch_size": 1}),
                                  ("POST", f"/v1/runs/{run_b}/feedback", fb),
                                  ("GET", f"/v1/runs/{run_b}/export", None),
                                  ("GET", f"/v1/runs/{run_b}/value", None)]:
            r = await client.request(method, url, json=body, headers=bearer(tok_a))
            assert r.status_code == 403, (url, r.text)
            assert r.json()["error"]["type"] == "forbidden"
        # B's ticket sent to A's own endpoint: not A's ticket
        r = await client.post(f"/v1/runs/{run_a}/feedback", json=fb, headers=bearer(tok_a))
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
        info = (await client.get(f"/v1/runs/{run_b}", headers=AUTH)).json()
        assert info["tickets"] == {"issued": 1, "reported": 0, "applied": 0, "failed": 0,
                                   "partial": 0}
        # a token that cannot open a run gets the same answer whether it exists or not
        # (run ids cannot be enumerated); only the admin learns that a run is missing
        for token, want in ((tok_a, 403), ("rt_4242_made-up", 401), ("nonsense", 401)):
            for run in (run_b, 4242):
                for method, url, body in (("POST", f"/v1/runs/{run}/select",
                                           {"batch_size": 1}),
                                          ("GET", f"/v1/runs/{run}", None)):
                    r = await client.request(method, url, json=body, headers=bearer(token))
                    assert r.status_code == want, (token, url, r.text)
                    if want == 401:
                        assert r.json()["error"]["message"] == "invalid token for this run"
        r = await client.get("/v1/runs/4242", headers=AUTH)
        assert r.status_code == 404


async def test_run_token_cannot_reach_any_admin_endpoint(settings):
    async with running_app(settings) as (client, app):
        bank_id = await make_bank(client, n=5)
        run_id, token = await make_run(client, bank_id)
        ops = admin_operations(app)
        assert ("post", "/v1/runs/{run_id}/revoke") in ops and len(ops) >= 10
        before = (await client.get("/v1/runs", headers=AUTH)).json()
        misses = []
        for method, path in ops:
            for who, headers, status, etype in [
                ("run token", bearer(token), 403, "forbidden"),
                ("no token", {}, 401, "unauthorized"),
                ("wrong token", bearer("not-the-admin"), 401, "unauthorized"),
                ("basic auth", {"Authorization": "Basic YWRtaW46YWRtaW4="}, 401,
                 "unauthorized"),
                ("empty bearer", {"Authorization": "Bearer "}, 401, "unauthorized"),
            ]:
                r = await request_for(client, method, path, bank_id=bank_id, run_id=run_id,
                                      headers=headers)
                got = (r.status_code, r.json().get("error", {}).get("type"))
                if got != (status, etype):
                    misses.append(f"{method.upper()} {path} with {who}: {got}")
                elif status == 401 and r.headers.get("www-authenticate") != "Bearer":
                    misses.append(f"{method.upper()} {path} with {who}: no WWW-Authenticate")
        assert not misses, "\n".join(misses)
        assert (await client.get("/v1/runs", headers=AUTH)).json() == before


async def test_revoked_token_is_refused_everywhere(settings):
    async with running_app(settings) as (client, _):
        bank_id = await make_bank(client, n=20)
        run_a, tok_a = await make_run(client, bank_id)
        run_b, tok_b = await make_run(client, bank_id)
        ta = (await client.post(f"/v1/runs/{run_a}/select", json={"batch_size": 2},
                                headers=bearer(tok_a))).json()
        r = await client.post(f"/v1/runs/{run_a}/revoke", headers=bearer(tok_a))
        assert r.status_code == 403  # a run cannot revoke (or un-revoke) itself
        r = await client.post(f"/v1/runs/{run_a}/revoke")
        assert r.status_code == 401
        r = await client.post(f"/v1/runs/{run_a}/revoke", headers=AUTH)
        assert r.status_code == 200 and r.json() == {"run_id": run_a, "revoked": True}
        again = await client.post(f"/v1/runs/{run_a}/revoke", headers=AUTH)
        assert again.status_code == 200  # idempotent
        assert (await client.post("/v1/runs/4242/revoke", headers=AUTH)).status_code == 404

        fb = {"ticket_id": ta["ticket_id"],
              "results": [{"problem_id": p["problem_id"], "utility": 1.0}
                          for p in ta["problems"]]}
        for method, url, body in [("GET", f"/v1/runs/{run_a}", None),
                                  ("POST", f"/v1/runs/{run_a}/select", {"batch_size": 1}),
                                  ("POST", f"/v1/runs/{run_a}/feedback", fb)]:
            r = await client.request(method, url, json=body, headers=bearer(tok_a))
            assert r.status_code == 401, (url, r.text)
            assert "revoked" in r.json()["error"]["message"]
        # other runs are unaffected; the revoked run and its data stay visible to the admin
        r = await client.post(f"/v1/runs/{run_b}/select", json={"batch_size": 1},
                              headers=bearer(tok_b))
        assert r.status_code == 200
        info = (await client.get(f"/v1/runs/{run_a}", headers=AUTH)).json()
        assert info["revoked"] is True and info["tickets"]["issued"] == 1


async def test_run_token_rotation_keeps_the_run(settings):
    async with running_app(settings) as (client, _):
        bank_id = await make_bank(client, n=20)
        run_id, old = await make_run(client, bank_id)
        t = (await client.post(f"/v1/runs/{run_id}/select", json={"batch_size": 2},
                               headers=bearer(old))).json()
        r = await client.post(f"/v1/runs/{run_id}/token", headers=bearer(old))
        assert r.status_code == 403  # a run cannot mint its own tokens
        r = await client.post(f"/v1/runs/{run_id}/token", headers=AUTH)
        assert r.status_code == 201
        new = r.json()["token"]
        assert new != old and r.json()["run_id"] == run_id
        r = await client.post(f"/v1/runs/{run_id}/select", json={"batch_size": 1},
                              headers=bearer(old))
        assert r.status_code == 401
        # the open ticket is still usable with the new token; the run keeps its state
        fb = {"ticket_id": t["ticket_id"],
              "results": [{"problem_id": p["problem_id"], "utility": 0.5}
                          for p in t["problems"]]}
        r = await client.post(f"/v1/runs/{run_id}/feedback", json=fb, headers=bearer(new))
        assert r.status_code == 202
        info = (await client.get(f"/v1/runs/{run_id}", headers=bearer(new))).json()
        assert info["step"] == 1 and info["tickets"]["reported"] == 1
        # rotation also lifts a revocation
        await client.post(f"/v1/runs/{run_id}/revoke", headers=AUTH)
        newer = (await client.post(f"/v1/runs/{run_id}/token", headers=AUTH)).json()["token"]
        r = await client.post(f"/v1/runs/{run_id}/select", json={"batch_size": 1},
                              headers=bearer(newer))
        assert r.status_code == 200


async def test_extra_admin_tokens_allow_rotation(settings):
    settings.admin_token = "new-admin-token"
    settings.extra_admin_tokens = ["test-admin-token"]  # the old one, during the rollover
    async with running_app(settings) as (client, _):
        assert (await client.get("/v1/banks", headers=bearer("new-admin-token"))
                ).status_code == 200
        assert (await client.get("/v1/banks", headers=AUTH)).status_code == 200
    settings.extra_admin_tokens = []
    async with running_app(settings) as (client, _):
        assert (await client.get("/v1/banks", headers=AUTH)).status_code == 401


def test_production_mode_requires_an_admin_token(tmp_path, monkeypatch):
    for key in list(os.environ):
        if key.startswith("CURATOR_"):
            monkeypatch.delenv(key)
    assert Settings.model_fields["admin_token"].default is None  # no default secret
    with pytest.raises(ValidationError, match="CURATOR_ADMIN_TOKEN"):
        Settings(mode="production", data_dir=tmp_path)
    monkeypatch.setenv("CURATOR_MODE", "production")
    with pytest.raises(ValidationError, match="CURATOR_ADMIN_TOKEN"):
        Settings(data_dir=tmp_path)
    monkeypatch.setenv("CURATOR_ADMIN_TOKEN", "")  # empty counts as unset
    with pytest.raises(ValidationError, match="CURATOR_ADMIN_TOKEN"):
        Settings(data_dir=tmp_path)
    # a token file left in the data dir by a dev server is no substitute
    (tmp_path / "admin_token").write_text("adm_from_dev\n")
    with pytest.raises(ValidationError, match="CURATOR_ADMIN_TOKEN"):
        Settings(data_dir=tmp_path)
    monkeypatch.setenv("CURATOR_ADMIN_TOKEN", "s3cret-admin")
    s = Settings(data_dir=tmp_path / "prod")
    assert s.mode == "production" and s.ensure_admin_token() == ("s3cret-admin", False)
    assert not (tmp_path / "prod" / "admin_token").exists()


def test_dev_mode_generates_prints_and_keeps_a_random_admin_token(tmp_path, monkeypatch,
                                                                  capsys):
    import uvicorn

    from curator import cli

    for key in list(os.environ):
        if key.startswith("CURATOR_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("CURATOR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)  # serve prints, then returns
    assert cli.main(["serve", "--migrate"]) == 0
    out = capsys.readouterr().out
    token_file = tmp_path / "data" / "admin_token"
    token = token_file.read_text().strip()
    assert f"admin token: {token}" in out
    assert token.startswith("adm_") and len(token) >= 30
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert cli.main(["serve"]) == 0  # a restart keeps the same token, says where it is
    out = capsys.readouterr().out
    assert f"admin token: {token} (saved in" in out
    other = tmp_path / "other"
    assert Settings(data_dir=other).ensure_admin_token()[0] != token  # random per install
