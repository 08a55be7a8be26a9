"""A no-op FastAPI app returning a select-sized payload: the baseline for select latency."""

from __future__ import annotations

import os

from fastapi import FastAPI


def create_app() -> FastAPI:
    batch = int(os.environ.get("NOOP_BATCH", "256"))
    payload = {
        "ticket_id": "0" * 32, "run_id": 1, "step": 1, "model_version": 0,
        "problems": [{"problem_id": i, "external_id": f"bench-{i:07d}",
                      "prompt": f"Compute {i} + {i * 7 % 13} * {i % 5} and simplify the result.",
                      "answer": str(i), "metadata": {"difficulty": i % 5, "skill": i % 8},
                      "propensity": 1 / 2048, "source": "explore"} for i in range(batch)],
    }
    app = FastAPI()

    @app.post("/v1/runs/{run_id}/select")
    def select(run_id: int, body: dict) -> dict:
        return payload

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    return app
