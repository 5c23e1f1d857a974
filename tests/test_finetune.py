"""Fine-tuning (issue 12): averaging from the first step through the student's own NTASGD, check 0 on the starting
model, the paper's non-monotone stop, resume, and clear errors. Tiny sizes on the bracket grammar."""

from __future__ import annotations

import math

import pytest
import torch

from hw4lib.checkpoint import build_model, load_checkpoint
from hw4lib.components import load_components
from hw4lib.errors import HW4Error
from hw4lib.lab import baseline
from hw4lib.lab.finetune import FineTuner, finetune, finetune_config, non_monotone
from hw4lib.lab.training import RunData, TrainConfig, train
from hw4lib.perplexity import evaluate_nll
from tests.fixtures.tiny_runs import QUIET, grammar_run_data, plain_tiny
from tests.fixtures.tiny_runs import tiny as tiny_run


@pytest.fixture(scope="module")
def C():
    return load_components("solutions")


@pytest.fixture(scope="module")
def grammar_data() -> RunData:
    return grammar_run_data()


def tiny(**overrides) -> TrainConfig:
    """The shared tiny run, with checks every 7 batches and a short non-monotone window."""
    return tiny_run(**{"eval_interval": 7, "nonmono": 2, **overrides})


@pytest.fixture(scope="module")
def start(C, grammar_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("start")
    train(tiny(), C, out, run_data=grammar_data, **QUIET)
    return out / "model.pt"


def test_non_monotone_is_algorithm_1s_condition_as_a_stop():
    assert not non_monotone([], 0) and not non_monotone([3.0], 0)
    assert non_monotone([3.0, 4.0], 0)  # worse than everything before
    assert not non_monotone([5.0, 4.0, 3.0], 1)  # still improving
    assert non_monotone([3.0, 4.0, 5.0], 1)  # worse than min(logs[:1]) = 3
    assert not non_monotone([3.0, 4.0, 5.0], 2)  # t = 2 is not > nonmono = 2
    assert not non_monotone([4.0, 3.0, 3.5, 3.9], 2)  # 3.9 < min(logs[:1]) = 4
    assert non_monotone([4.0, 3.0, 3.5, 4.1], 2)


def test_finetune_averages_from_the_first_step_and_keeps_the_better_model(C, grammar_data, start, tmp_path):
    metrics = finetune(start, tmp_path, C, minutes=30.0, run_data=grammar_data, **QUIET)
    history = metrics["history"]
    assert history[0]["step"] == 0 and not history[0]["averaging"] and all(h["averaging"] for h in history[1:])
    assert metrics["asgd_trigger_step"] == 0 and len(history) >= 3
    # Check 0 is the starting model on the checking slice, computed by the one perplexity function.
    start_ckpt = load_checkpoint(start)
    start_model = build_model(C, start_ckpt)
    assert history[0]["val_loss"] == pytest.approx(evaluate_nll(start_model, grammar_data.valid, bptt=10), rel=1e-9)
    info = metrics["finetune"]
    assert info["start_val_ppl"] == pytest.approx(start_ckpt["meta"]["val_ppl"])
    assert info["gain"] == pytest.approx(info["start_val_ppl"] - metrics["val_ppl"])
    assert info["patience"] == 2 and info["stopped"] in ("non-monotone", "budget")
    # model.pt is the best check's weights, never worse than the starting model.
    best = min(h["val_loss"] for h in history)
    saved = load_checkpoint(tmp_path / "model.pt")
    assert math.log(saved["meta"]["val_ppl"]) == pytest.approx(
        evaluate_nll(build_model(C, saved), grammar_data.valid, bptt=10), rel=1e-9)
    assert evaluate_nll(build_model(C, saved), grammar_data.valid, bptt=10) == pytest.approx(best, rel=1e-9)
    assert metrics["preset_config"]["seed"] == 4 and metrics["preset_config"]["nonmono"] == 0


def test_finetune_stops_on_the_non_monotone_condition(C, grammar_data, start, tmp_path):
    tuner = FineTuner(finetune_config(load_checkpoint(start), minutes=30.0), C, tmp_path, start, patience=1,
                      run_data=grammar_data, **QUIET)
    assert tuner.optimizer.averaging and tuner.optimizer.trigger_step == 0
    assert not tuner._out_of_time()
    entry = dict(tuner.state.history[0])
    tuner.state.history += [{**entry, "val_loss": entry["val_loss"] - 0.1}, {**entry, "val_loss": entry["val_loss"]}]
    assert not tuner._out_of_time()  # equal to check 0 is not worse
    tuner.state.history.append({**entry, "val_loss": entry["val_loss"] + 0.01})
    assert tuner._out_of_time()


def test_finetune_resumes_where_a_straight_run_ends(C, grammar_data, start, tmp_path):
    straight = finetune(start, tmp_path / "a", C, minutes=30.0, epochs=2, patience=100, run_data=grammar_data,
                        **QUIET)
    finetune(start, tmp_path / "b", C, minutes=30.0, epochs=1, patience=100, run_data=grammar_data, **QUIET)
    resumed = finetune(start, tmp_path / "b", C, minutes=30.0, epochs=2, patience=100, run_data=grammar_data,
                       **QUIET)
    assert [h["val_loss"] for h in straight["history"]] == [h["val_loss"] for h in resumed["history"]]
    sa = load_checkpoint(tmp_path / "a" / "model.pt")["state_dict"]
    sb = load_checkpoint(tmp_path / "b" / "model.pt")["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_finetune_refuses_other_models_and_the_plain_baseline(C, grammar_data, start, tmp_path):
    other = tmp_path / "other"
    train(tiny(hidden_size=12), C, other, run_data=grammar_data, **QUIET)
    config = finetune_config(load_checkpoint(start), minutes=30.0)
    with pytest.raises(HW4Error, match="another model"):
        FineTuner(config, C, tmp_path / "x", other / "model.pt", run_data=grammar_data, **QUIET)
    plain = tmp_path / "plain"
    train(plain_tiny(), None, plain, run_data=grammar_data, **QUIET)
    with pytest.raises(HW4Error, match="plain baseline"):
        finetune(plain / "model.pt", tmp_path / "y", baseline.components(), minutes=1.0, run_data=grammar_data,
                 **QUIET)
    with pytest.raises(HW4Error, match="nonmono=0"):
        FineTuner(tiny(), C, tmp_path / "z", start, run_data=grammar_data, **QUIET)
