"""Registry, parameter validation, and exact state round-trips for every strategy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from curator.curation.checkpoint import dumps, loads
from curator.curation.strategies import STRATEGIES, StrategyError, build_strategy

DIM = 8
NAMES = ["uniform", "actor_curator", "learnability", "sec", "pcl", "mopps"]


def test_registry_and_attributes() -> None:
    assert sorted(STRATEGIES) == sorted(NAMES)
    expected = {
        # name: (category_field, requires_rewards, top_p, sampler temperature)
        "uniform": (None, False, 1.0, 1.0),
        "actor_curator": (None, False, 1.0, 1.0),
        "learnability": (None, True, 1.0, 1.0),
        "sec": ("difficulty", True, 1.0, 1.0),
        "pcl": (None, True, 1.0, 1.0),
        "mopps": (None, True, 1.0, 1.0),
    }
    for name, attrs in expected.items():
        s = build_strategy(name, {}, dim=DIM, seed=0)
        assert s.name == name
        assert (s.category_field, s.requires_rewards, s.top_p, s.temperature) == attrs
    assert build_strategy("sec", {"field": "source"}, dim=DIM, seed=0).category_field == "source"
    s = build_strategy("actor_curator", {"top_p": 0.5, "temperature": 2}, dim=DIM, seed=0)
    assert (s.top_p, s.temperature) == (0.5, 2.0)


@pytest.mark.parametrize(
    ("name", "params", "needle"),
    [
        ("nope", {}, "unknown strategy"),
        ("actor_curator", {"learning_rate": 1.0}, "learning_rate"),
        ("actor_curator", {"lr": "fast"}, "'lr'"),
        ("actor_curator", {"lr": -1.0}, "'lr'"),
        ("actor_curator", {"minibatch": 1.5}, "'minibatch'"),
        ("actor_curator", {"minibatch": True}, "'minibatch'"),
        ("actor_curator", {"minibatch": 1}, "'minibatch'"),
        ("actor_curator", {"rho": 1.5}, "'rho'"),
        ("actor_curator", {"scaling": "bogus"}, "'scaling'"),
        ("actor_curator", {"top_p": 0.0}, "'top_p'"),
        ("actor_curator", {"amplifier": float("nan")}, "'amplifier'"),
        ("learnability", {"alpha": 0.0}, "'alpha'"),
        ("sec", {"field": 3}, "'field'"),
        ("sec", {"temperature": 0}, "'temperature'"),
        ("pcl", {"steps": 0}, "'steps'"),
        ("uniform", {"x": 1}, "'x'"),
    ],
)
def test_bad_params(name: str, params: dict, needle: str) -> None:
    with pytest.raises(StrategyError, match=needle):
        build_strategy(name, params, dim=DIM, seed=0)


def test_strategy_error_is_value_error() -> None:
    assert issubclass(StrategyError, ValueError)
    with pytest.raises(StrategyError):
        build_strategy("sec", ["field"], dim=DIM, seed=0)  # type: ignore[arg-type]


def _allowed(x: object) -> bool:
    if isinstance(x, torch.Tensor) or x is None or isinstance(x, (bool, int, float, str)):
        return True
    if isinstance(x, list):
        return all(_allowed(v) for v in x)
    if isinstance(x, dict):
        return all(isinstance(k, (int, str)) and _allowed(v) for k, v in x.items())
    return False


def _batch(make_obs, rng: np.random.Generator, step: int, z: np.ndarray) -> list:
    out = []
    for j in range(24):
        pid = int(rng.integers(0, 60))
        rewards = rng.integers(0, 2, size=4)
        out.append(
            make_obs(
                pid,
                rng.normal(size=DIM),
                logit=float(z[j]),
                utility=float(rng.normal() * 1e-3),
                kind="ratio" if j % 3 else "abs_advantage",
                mean_reward=float(rewards.mean()),
                mean_abs_adv=float(rng.uniform()),
                category=["easy", "hard", None][pid % 3],
            )
        )
    return out


@pytest.mark.parametrize("name", NAMES)
def test_state_roundtrip_is_exact(name: str, make_obs, make_pool) -> None:
    params = {"minibatch": 8, "hidden": 32} if name == "actor_curator" else {}
    if name == "pcl":
        params = {"hidden": 32}
    a = build_strategy(name, params, dim=DIM, seed=5)
    rng = np.random.default_rng(0)
    pool_ids = np.arange(40)
    pool = make_pool(
        pool_ids, rng.normal(size=(40, DIM)), [["easy", "hard", None][i % 3] for i in pool_ids]
    )
    for step in range(3):
        a.update(_batch(make_obs, rng, step, a.logits(pool)))
    state = a.state_dict()
    assert _allowed(state), state
    b = build_strategy(name, params, dim=DIM, seed=99)  # a different init, overwritten
    b.load_state_dict(loads(dumps(state)))
    assert np.array_equal(a.logits(pool), b.logits(pool))
    assert a.active() == b.active()
    batch = _batch(make_obs, np.random.default_rng(7), 3, a.logits(pool))
    sa, sb = a.update(batch), b.update(batch)
    assert sa == sb
    assert np.array_equal(a.logits(pool), b.logits(pool))


def test_state_for_another_strategy_is_refused() -> None:
    a = build_strategy("learnability", {}, dim=DIM, seed=0)
    b = build_strategy("sec", {}, dim=DIM, seed=0)
    with pytest.raises(ValueError):
        b.load_state_dict(a.state_dict())


def test_seeded_builds_are_identical(make_pool) -> None:
    rng = np.random.default_rng(1)
    pool = make_pool(np.arange(10), rng.normal(size=(10, DIM)))
    a = build_strategy("actor_curator", {}, dim=DIM, seed=3)
    b = build_strategy("actor_curator", {}, dim=DIM, seed=3)
    sa, sb = a.state_dict(), b.state_dict()
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k])
    assert np.array_equal(a.logits(pool), b.logits(pool))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["actor_curator", "pcl"])
def test_cuda_state_moves_between_devices(name: str, make_obs, make_pool) -> None:
    params = {"hidden": 32}
    gpu = build_strategy(name, params, dim=DIM, seed=5, device="cuda")
    rng = np.random.default_rng(0)
    pool = make_pool(np.arange(40), rng.normal(size=(40, DIM)))
    for step in range(3):
        gpu.update(_batch(make_obs, rng, step, gpu.logits(pool)))
    cpu = build_strategy(name, params, dim=DIM, seed=1, device="cpu")
    cpu.load_state_dict(loads(dumps(gpu.state_dict())))
    assert np.allclose(cpu.logits(pool), gpu.logits(pool), atol=1e-4)
    back = build_strategy(name, params, dim=DIM, seed=2, device="cuda")
    back.load_state_dict(loads(dumps(cpu.state_dict())))
    batch = _batch(make_obs, np.random.default_rng(7), 3, cpu.logits(pool))
    assert back.update(batch).loss == pytest.approx(cpu.update(batch).loss, abs=1e-4)
