"""Schema fuzzing with Schemathesis against the app (lifespan running, real databases).

Every operation in /openapi.json gets schema-valid and schema-invalid requests (path,
query, headers and body), sent with the admin token, and every response must: not be a
5xx, use a status code the schema declares, have the declared content type and match the
declared response schema. Ids (path bank_id/run_id, body bank_id and ticket_id) are pointed
at a real bank, run and open ticket half of the time, so fuzzed bodies reach the
select/feedback/ingest code, not only the 404 branch.

Hypothesis is driven directly (schemathesis' lazy pytest plugin reads `Node._nodeid`,
which pytest 9 no longer has), one test per operation and database.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given  # noqa: E402
from hypothesis import settings as hsettings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.testclient import TestClient  # noqa: E402

from curator.app import create_app  # noqa: E402
from curator.core.config import Settings  # noqa: E402
from tests.conftest import ADMIN  # noqa: E402
from tests.service.helpers import AUTH  # noqa: E402

pytestmark = pytest.mark.slow
MAX_EXAMPLES = 20  # per operation and generation mode
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
OPERATIONS = sorted(
    (method.upper(), path)
    for path, item in create_app(Settings(admin_token="x", data_dir=Path("unused")))
    .openapi()["paths"].items() for method in item)


def _seed(app) -> dict[str, int]:
    """A bank, an actor_curator run with one reported ticket and one open ticket."""
    with TestClient(app) as client:  # runs (and then ends) its own lifespan
        bank = client.post("/v1/banks", json={"name": "fuzz"}, headers=AUTH).json()
        client.post(f"/v1/banks/{bank['bank_id']}/problems", headers=AUTH, json={"problems": [
            {"external_id": f"f{i}", "prompt": f"fuzz problem {i}", "metadata": {"k": i % 2}}
            for i in range(64)]})
        run = client.post("/v1/runs", headers=AUTH, json={
            "bank_id": bank["bank_id"], "strategy": "actor_curator",
            "params": {"dormant_steps": 0, "hidden": 16}}).json()
        t = client.post(f"/v1/runs/{run['run_id']}/select", headers=AUTH,
                        json={"batch_size": 4, "pool_size": 8}).json()
        r = client.post(f"/v1/runs/{run['run_id']}/feedback", headers=AUTH, json={
            "ticket_id": t["ticket_id"],
            "results": [{"problem_id": p["problem_id"], "rewards": [1, 0]}
                        for p in t["problems"]]})
        assert r.status_code == 202, r.text
        open_ticket = client.post(f"/v1/runs/{run['run_id']}/select", headers=AUTH,
                                  json={"batch_size": 4, "pool_size": 8}).json()
    return {"bank_id": bank["bank_id"], "run_id": run["run_id"],
            "ticket_id": open_ticket["ticket_id"]}


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fuzz_target(request, tmp_path_factory):
    from schemathesis.python import asgi

    from curator.cli import migrate
    from tests.conftest import _truncate_pg

    tmp = tmp_path_factory.mktemp("fuzz")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'curator.db'}"
        migrate(Settings(database_url=url, data_dir=tmp))
    else:
        url = request.getfixturevalue("pg_database")
        _truncate_pg(url)
    settings = Settings(database_url=url, data_dir=tmp / "data", admin_token=ADMIN,
                        device="cpu", max_body_bytes=256 * 1024)
    app = create_app(settings)
    ids = _seed(app)
    schema = schemathesis.openapi.from_dict(app.openapi())
    schema.app = app
    schema.config.update(base_url=f"http://fuzz-{uuid.uuid4().hex[:6]}")
    schema.config.generation.update(allow_x00=True)  # NUL in strings: PostgreSQL refuses it
    yield schema, ids
    asgi.shutdown_lifespans()  # the app (and its embedded worker) the fuzzer started
    if request.param == "postgres":
        _truncate_pg(url)


@pytest.mark.parametrize("method,path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_fuzzed_requests_get_declared_non_5xx_answers(fuzz_target, method, path):
    schema, ids = fuzz_target
    operation = schema[path][method]

    def point_at_real_ids(case) -> None:
        def even_int(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and v % 2 == 0

        for name in ("bank_id", "run_id"):
            if even_int((case.path_parameters or {}).get(name)):
                case.path_parameters[name] = ids[name]
        body = case.body if isinstance(case.body, dict) else {}
        if even_int(body.get("bank_id")):
            body["bank_id"] = ids["bank_id"]
        if isinstance(body.get("ticket_id"), str) and len(body["ticket_id"]) % 2 == 0:
            body["ticket_id"] = ids["ticket_id"]

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        @hsettings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                   phases=[Phase.explicit, Phase.generate],
                   suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case) -> None:
            point_at_real_ids(case)
            case.call_and_validate(headers=AUTH, checks=CHECKS)

        try:
            fuzz()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # nothing to make invalid (no inputs)
