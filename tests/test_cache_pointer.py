"""The continuous cache pointer: the reference component (solutions/08_cache_pointer.ipynb) against a per-token
loop of the definition, what it must buy on text that repeats through hw4lib's driver, and the CLI on a trained
model (with lambda 0 it is the one perplexity)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from hw4lib import checkpoint
from hw4lib import data as hw4data
from hw4lib.components import load_components
from hw4lib.errors import HW4Error
from hw4lib.lab import cache_pointer as cp
from hw4lib.perplexity import evaluate_nll

REPO = Path(__file__).resolve().parent.parent
REFERENCE = cp.load_cache_components("solutions")


def _random_collected(n: int = 60, b: int = 3, h: int = 5, vocab: int = 6, seed: int = 0) -> cp.Collected:
    g = torch.Generator().manual_seed(seed)
    return cp.Collected(
        keys=torch.randn(n, b, h, generator=g),
        targets=torch.randint(vocab, (n, b), generator=g),
        log_p_vocab=torch.rand(n, b, generator=g, dtype=torch.float64).clamp_min(1e-3).log(),
        seconds=0.0,
    )


def _loop_cache_probs(c: cp.Collected, window: int, theta: float) -> torch.Tensor:
    """The definition, one position at a time."""
    n, b = c.targets.shape
    out = torch.full((n, b), float("nan"), dtype=torch.float64)
    for col in range(b):
        for t in range(n):
            past = list(range(max(0, t - window), t))
            if not past:
                continue
            scores = torch.stack([theta * (c.keys[i, col] @ c.keys[t, col]) for i in past]).double()
            weights = torch.softmax(scores, 0)
            out[t, col] = sum(w for w, i in zip(weights, past, strict=True) if c.targets[i, col] == c.targets[t, col])
    return out


def test_vectorized_cache_is_the_definition():
    c = _random_collected()
    for window, block in ((7, 5), (1, 16), (100, 13)):  # blocks that cut windows, a one-word cache, a long window
        fast = REFERENCE.cache_probs(c.keys, c.targets, window, 0.7, block=block)
        slow = _loop_cache_probs(c, window, 0.7)
        assert torch.equal(torch.isnan(fast), torch.isnan(slow))
        assert torch.allclose(fast.nan_to_num(-1), slow.nan_to_num(-1), atol=1e-6)
    assert torch.isnan(fast[0]).all() and not torch.isnan(fast[1:]).any()  # only the first position has no cache
    assert torch.allclose(cp.cache_probs(REFERENCE, c, 100, 0.7), slow, equal_nan=True, atol=1e-6)  # the driver


def test_driver_reports_what_the_component_returns():
    # The driver adds nothing of its own to the cache: a component that ignores the keys gives its own numbers.
    c = _random_collected()
    half = SimpleNamespace(cache_probs=lambda keys, words, window, theta, block: torch.full(words.shape, 0.5,
                                                                                          dtype=torch.float64),
                           cache_mixture=REFERENCE.cache_mixture)
    want = -(0.5 * 0.5 + 0.5 * c.log_p_vocab.exp()).log().mean()
    assert math.isclose(cp.mixed_nll(half, c, cp.cache_probs(half, c, 5, 1.0), 0.5), float(want), rel_tol=1e-12)
    with pytest.raises(HW4Error, match="at least one position"):
        cp.cache_probs(REFERENCE, c, 0, 1.0)


def test_driver_explains_an_unfinished_or_malformed_component():
    c = _random_collected()
    stub = cp.load_cache_components(REPO / "notebooks" / "08_cache_pointer.ipynb")  # the release: stubs
    with pytest.raises(HW4Error, match="not implemented yet"):
        cp.cache_probs(stub, c, 5, 1.0)
    with pytest.raises(HW4Error, match="not implemented yet"):
        cp.mixed_nll(stub, c, torch.zeros(c.targets.shape, dtype=torch.float64), 0.1)
    transposed = SimpleNamespace(cache_probs=lambda keys, words, *a, **k: REFERENCE.cache_probs(keys, words, *a,
                                                                                                  **k).t())
    with pytest.raises(HW4Error, match=r"must return \(N, B\)"):
        cp.cache_probs(transposed, c, 5, 1.0)


def test_cache_buys_perplexity_on_text_that_repeats():
    # A cycle of 8 words: each word is always followed by the same word. Keys say which word was read, so after
    # one lap the cache is sure of the next word; the "model" spreads its mass evenly over the 8.
    vocab, n = 8, 64
    words = torch.arange(n + 1) % vocab
    keys = torch.nn.functional.one_hot(words[:n], vocab).float().unsqueeze(1) * 4.0
    c = cp.Collected(keys=keys, targets=words[1:].unsqueeze(1), seconds=0.0,
                     log_p_vocab=torch.full((n, 1), -math.log(vocab), dtype=torch.float64))
    p = cp.cache_probs(REFERENCE, c, window=20, theta=1.0)
    assert (p[vocab:] > 0.99).all()
    assert cp.mixed_nll(REFERENCE, c, p, 0.0) == c.nll()
    assert math.exp(cp.mixed_nll(REFERENCE, c, p, 0.5)) < 0.6 * math.exp(c.nll())
    rows = cp.grid_search(REFERENCE, c, [20], [0.5, 1.0], [0.1, 0.5, 0.9])
    assert rows[0]["lambdah"] == 0.9 and rows[0]["ppl"] == min(r["ppl"] for r in rows)


def test_collect_reads_the_text_as_the_one_perplexity(trained_model):
    model = checkpoint.build_model(load_components("solutions"), checkpoint.load_checkpoint(trained_model))
    valid = hw4data.load_split("wikitext2", "valid")
    c = cp.collect(model, valid, max_tokens=3000)
    assert c.keys.shape[:2] == c.targets.shape and c.keys.size(2) == model.decoder.in_features
    assert math.isclose(c.nll(), evaluate_nll(model, valid, max_tokens=3000), rel_tol=1e-9)


def test_cache_cli(trained_model):
    def run(*extra: str) -> dict:
        result = subprocess.run(
            [sys.executable, "-m", "hw4lib", "cache", "--checkpoint", str(trained_model), "--max-tokens", "4000",
             *extra], cwd=REPO, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    off = run("--lambdah", "0", "--impl", "solutions")
    assert math.isclose(off["ppl_cache"], off["ppl_model"], rel_tol=1e-9)
    assert off["settings"]["window"] == 3785 and off["cache_tokens_per_s"] > 0  # WikiText-2's reference window
    tuned = run("--grid", "--thetas", "0.3,1.0", "--lambdas", "0.0,0.1")
    assert len(tuned["grid"]) == 4 and tuned["chosen_on_validation"]["lambdah"] in (0.0, 0.1)
    assert tuned["ppl_cache"] <= tuned["ppl_model"] + 1e-9  # chosen on this very slice: never worse than none


def test_cache_cli_refuses_a_folder_without_stage_8(trained_model, tmp_path):
    import shutil

    for name in ("02_dropout.ipynb", "03_weight_drop.ipynb", "04_model.ipynb"):
        shutil.copy2(REPO / "solutions" / name, tmp_path / name)
    result = subprocess.run(
        [sys.executable, "-m", "hw4lib", "cache", "--checkpoint", str(trained_model), "--impl", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and "08_cache_pointer.ipynb" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_graded_stage_8_counts_in_nbgrader(tmp_path, trained_model, graded_cache_config, prepared_data):
    """The instructor's other choice, through the whole `python -m autograder grade` (sandbox, judge, nbgrader):
    with `graded = true` stage 8 adds its points to nbgrader's total, the reference earns them, and a cache that
    lets position t see itself loses exactly that part's points (the ungraded default is tested by the hostile
    run, whose total stays 100, and test_autograder_mistakes)."""
    import csv
    import os

    from nbgrader.api import Gradebook

    from autograder import course
    from autograder.config import load as load_config
    from tests.fixtures.course_notebooks import with_test_cells
    from tests.fixtures.grading import reference_submission
    from tests.fixtures.mistakes import MISTAKES
    from tests.test_repository import written_answers

    config = load_config(graded_cache_config["path"])
    part = config.part("cache_pointer")
    subs, out = tmp_path / "submissions", tmp_path / "out"
    reference_submission(subs / "reference", trained_model)
    mistake = next(v for v in MISTAKES if v.name == "cache_sees_itself")
    mistake.make(reference_submission(subs / "sees_itself", trained_model))
    result = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", "--submissions", str(subs), "--out", str(out), "--config",
         str(graded_cache_config["path"]), "--source", str(with_test_cells(tmp_path / "source")), "--workers", "2"],
        cwd=REPO, env=dict(os.environ, HW4_DATA_DIR=str(prepared_data)), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    with open(out / "grades.csv") as f:
        rows = list(csv.DictReader(f))
    totals = {s: sum(float(r["score"]) for r in rows if r["student"] == s) for s in ("reference", "sees_itself")}
    cache_rows = {r["student"]: r for r in rows if r["grade_id"] == part.test_id}
    assert {s: float(r["max_score"]) for s, r in cache_rows.items()} == {"reference": 10, "sees_itself": 10}
    assert totals["reference"] == pytest.approx(110)
    lost = sum(w for name, w in part.weights.items() if name in mistake.fails["cache_pointer"])
    assert float(cache_rows["sees_itself"]["score"]) == pytest.approx(part.points - lost, abs=0.011)
    assert totals["sees_itself"] == pytest.approx(110 - lost, abs=0.011)
    with Gradebook(f"sqlite:///{out / 'course' / 'gradebook.db'}", course.COURSE_ID) as gb:
        sub = gb.find_submission(course.ASSIGNMENT, "reference")
        assert sub.max_score == 110 + sum(written_answers().values())
