"""`curator/*` metrics and `CuratorConfig` against a real running service: `Run.metrics()`
after real selects and feedback, and TRL's own logging path (a callback that captures
`on_log`) carrying the metrics of a `CuratorGRPOTrainer` configured from a YAML file
through `TrlParser`."""

from __future__ import annotations

import pytest

from curator_client import CuratorError
from curator_client.config import CuratorConfig
from tests.conftest import ADMIN
from tests.integrations.helpers import arith_rows, wait_applied


def _bank(admin, name: str, n: int = 40) -> int:
    bank = admin.create_bank(name)
    admin.add_problems(bank.bank_id, [
        {"external_id": r["uid"], "prompt": r["prompt"], "answer": r["answer"],
         "metadata": {"level": r["level"]}} for r in arith_rows(n)])
    return bank.bank_id


def test_run_metrics_after_real_steps(admin) -> None:
    run = admin.create_run(_bank(admin, "metrics"), strategy="actor_curator",
                           params={"dormant_steps": 0, "minibatch": 4}, seed=0)
    assert run.metrics(service=False) == {"curator/selects": 0.0}
    for _ in range(3):
        batch = run.select(8, 16)
        batch.report([{"problem_id": p.problem_id,
                       "rewards": [1.0, 0.0, 1.0, 0.0] if k % 2 else [1.0] * 4,
                       "log_ratios": [0.01, -0.01, 0.02, 0.0]}
                      for k, p in enumerate(batch.problems)])
    wait_applied(run, 3)
    m = run.metrics(window=10)
    assert all(isinstance(v, float) for v in m.values())
    assert m["curator/selects"] == 3 and m["curator/batch_size"] == 8
    assert m["curator/batch_zero_signal_share"] == 0.5  # half the groups all-equal
    assert m["curator/batch_mean_reward"] == pytest.approx(0.75)
    assert m["curator/curator_share"] + m["curator/explore_share"] == pytest.approx(1.0)
    assert m["curator/select_seconds"] > 0 and m["curator/feedback_seconds"] > 0
    assert m["curator/model_version"] == 3 and m["curator/tickets_waiting"] == 0
    assert "curator/explore_zero_signal" in m or "curator/curator_zero_signal" in m


def test_config_rules_and_secrets(tmp_path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        CuratorConfig()
    with pytest.raises(ValueError, match="exactly one"):
        CuratorConfig(curator_run_id=1, curator_bank="b")
    with pytest.raises(ValueError, match="JSON object"):
        CuratorConfig(curator_bank="b", curator_params="{nope")
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    cfg = CuratorConfig(curator_bank="b", curator_token_file=str(token),
                        curator_params='{"explore": 0.1}')
    assert cfg.curator_params == {"explore": 0.1} and cfg.token() == "s3cret"
    plain = CuratorConfig(curator_bank="b", curator_token="s3cret")
    assert "s3cret" not in repr(plain) and "curator_token" not in plain.public()
    with pytest.raises(ValueError, match="curator_token_file"):
        CuratorConfig(curator_bank="b", curator_token_file=str(tmp_path / "none")).token()


def test_config_opens_or_creates_the_run(admin, curator_url) -> None:
    bank_id = _bank(admin, "config-open")
    made = CuratorConfig(curator_url=curator_url, curator_token=ADMIN,
                         curator_bank="config-open", curator_strategy="pcl",
                         curator_seed=3).open_run()
    info = made.info()
    assert (info.bank_id, info.strategy, info.seed) == (bank_id, "pcl", 3)
    again = CuratorConfig(curator_url=curator_url, curator_token=made.token,
                          curator_run_id=made.run_id).open_run()
    assert again.info().run_id == made.run_id
    with pytest.raises(ValueError, match="no bank"):
        CuratorConfig(curator_url=curator_url, curator_token=ADMIN,
                      curator_bank="missing-bank").open_run()
    with pytest.raises(CuratorError):
        CuratorConfig(curator_url=curator_url, curator_token="wrong",
                      curator_run_id=made.run_id).open_run().info()


@pytest.mark.slow
def test_trl_logs_carry_curator_metrics_with_a_yaml_config(admin, curator_url,
                                                           tmp_path) -> None:
    pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")
    import yaml
    from transformers import TrainerCallback
    from trl import GRPOConfig, TrlParser

    from curator_client.integrations.trl import CuratorGRPOTrainer
    from tests.integrations.helpers import tiny_causal_lm

    rows = arith_rows(40)
    _bank(admin, "trl-yaml")
    (tmp_path / "token").write_text(ADMIN)
    config = tmp_path / "grpo.yaml"
    config.write_text(yaml.safe_dump({
        "output_dir": str(tmp_path / "out"), "use_cpu": True, "report_to": [],
        "save_strategy": "no", "max_steps": 3, "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 1, "num_generations": 4,
        "max_completion_length": 4, "learning_rate": 1e-3, "logging_steps": 1,
        "dataloader_num_workers": 0, "seed": 0,
        "curator_url": curator_url, "curator_token_file": str(tmp_path / "token"),
        "curator_bank": "trl-yaml", "curator_params": {"dormant_steps": 1, "minibatch": 4},
        "curator_seed": 0, "curator_log_ratios": False, "curator_metrics_window": 10}))
    args, cur = TrlParser((GRPOConfig, CuratorConfig)).parse_args_and_config(
        args=["--config", str(config)])
    assert cur.curator_params == {"dormant_steps": 1, "minibatch": 4}

    seen: list[dict] = []

    class Capture(TrainerCallback):  # what every report_to backend is handed
        def on_log(self, args, state, control, logs=None, **kwargs):
            seen.append(dict(logs or {}))

    def reward(completions, answer, **kwargs):
        return [float(c.strip().startswith(a)) + 0.1 * len(c) for c, a in
                zip(completions, answer)]

    model, tokenizer = tiny_causal_lm()
    dataset = datasets.Dataset.from_list([{"prompt": r["prompt"], "answer": r["answer"],
                                           "uid": r["uid"]} for r in rows])
    trainer = CuratorGRPOTrainer(model=model, reward_funcs=reward, args=args,
                                 train_dataset=dataset, processing_class=tokenizer,
                                 curator_config=cur, curator_id_field="uid",
                                 callbacks=[Capture()])
    assert trainer.curator_log_ratios is False and trainer.curator_metrics_window == 10
    trainer.train()
    train_logs = [log for log in seen if "loss" in log]
    assert len(train_logs) == 3
    for log in train_logs:
        for key in ("curator/model_version", "curator/curator_share", "curator/run_id",
                    "curator/select_seconds", "curator/batch_zero_signal_share",
                    "curator/tickets_waiting"):
            assert key in log, (key, sorted(log))
    assert train_logs[-1]["curator/model_version"] >= 1  # an update was applied by then
    assert train_logs[0]["curator/run_id"] == trainer.curator.run.run_id
