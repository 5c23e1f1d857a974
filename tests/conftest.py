"""Shared fixtures: the real corpora, prepared once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from hw4lib import data


def _prepared_officially(root: Path) -> bool:
    """Both datasets prepared in ``root`` from the pinned raw files (not from some other corpus)."""
    for dataset, spec in data.DATASETS.items():
        if not data.is_prepared(dataset, root):
            return False
        raw = data.load_meta(dataset, root)["raw"]
        if any(raw[split]["sha256"] != spec.sha256[split] for split in data.SPLITS):
            return False
    return True


@pytest.fixture(scope="session")
def prepared_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder holding prepared ``wikitext2/`` and ``ptb/``.

    Reuses ``data_dir()`` when it is already prepared (``bash setup.sh`` did it), else prepares from
    ``../shared/data`` into a temporary folder (a few seconds), else fails saying how to get the data.
    """
    if _prepared_officially(data.data_dir()):
        return data.data_dir()
    shared = data.shared_data_dir()
    if all((shared / spec.shared_subdir).is_dir() for spec in data.DATASETS.values()):
        root = tmp_path_factory.mktemp("data")
        for dataset, spec in data.DATASETS.items():
            data.prepare(shared / spec.shared_subdir, dataset, out=root / dataset, quiet=True)
        return root
    pytest.fail(
        f"no prepared data in {data.data_dir()} and no raw corpora in {shared}: "
        "run `bash setup.sh` or `python -m hw4lib data download --dataset wikitext2` "
        "and `python -m hw4lib data download --dataset ptb`"
    )


@pytest.fixture(scope="session")
def data_env(prepared_data: Path):
    """Points ``HW4_DATA_DIR`` (this process and the subprocesses it starts) at the prepared data."""
    import os

    old = os.environ.get("HW4_DATA_DIR")
    os.environ["HW4_DATA_DIR"] = str(prepared_data)
    yield prepared_data
    if old is None:
        os.environ.pop("HW4_DATA_DIR", None)
    else:
        os.environ["HW4_DATA_DIR"] = old


# --- grading fixtures: a small trained model and a grading config whose bar is measured on it -------------------

from tests.fixtures.grading import GRADED_TOKENS, QUICK_FIXTURE  # noqa: E402


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory, prepared_data) -> Path:
    """model.pt of the quick preset (a small AWD-LSTM) trained on a small WikiText-2 slice."""
    import os

    from hw4lib.components import load_components
    from hw4lib.lab import training

    os.environ["HW4_DATA_DIR"] = str(prepared_data)
    run = tmp_path_factory.mktemp("quick_run")
    training.train(training.get_preset("quick", "wikitext2", **QUICK_FIXTURE), load_components("solutions"), run,
                   resume=False, progress=False, log=lambda *_: None)
    return run / "model.pt"


@pytest.fixture(scope="session")
def grading_config(tmp_path_factory, trained_model, prepared_data) -> dict:
    """A grading config for tests: the 2,000-token slice, short part budgets, and a perplexity bar measured on the
    fixture model (full credit just above its perplexity, so the reference must earn every point)."""
    import re

    from autograder.config import DEFAULT_CONFIG
    from hw4lib import checkpoint, perplexity
    from hw4lib import data as hw4data
    from hw4lib.components import load_components

    ckpt = checkpoint.load_checkpoint(trained_model)
    model = checkpoint.build_model(load_components("solutions"), ckpt)
    valid = hw4data.load_split("wikitext2", "valid")
    ppl = perplexity.perplexity(model, valid, batch_size=10, bptt=70, max_tokens=GRADED_TOKENS)
    text = DEFAULT_CONFIG.read_text()
    text = re.sub(r"(?m)^tokens = \d+", f"tokens = {GRADED_TOKENS}", text)
    text = re.sub(r"(?m)^part_wall_s = \d+", "part_wall_s = 15", text)
    text = re.sub(r"(?m)^memory_mb = \d+", "memory_mb = 3072", text)
    # The cpu track's thresholds: the first `full` and `zero` of the file ([perplexity.tracks.cpu] comes first).
    assert text.index("[perplexity.tracks.cpu]") < text.index("[perplexity.tracks.gpu]")
    text = re.sub(r"(?m)^full = [0-9.]+$", f"full = {ppl * 1.01:.3f}", text, count=1)
    text = re.sub(r"(?m)^zero = [0-9.]+$", f"zero = {ppl * 3:.3f}", text, count=1)
    path = tmp_path_factory.mktemp("grading_config") / "test_config.toml"
    path.write_text(text)
    return {"path": path, "ppl": ppl}


@pytest.fixture(scope="session")
def graded_cache_config(grading_config, tmp_path_factory) -> dict:
    """``grading_config`` with the optional stage 8 (the cache pointer) graded: the instructor's other choice."""
    import re

    text = grading_config["path"].read_text()
    switch = re.compile(r"(?m)^graded = false$")
    assert len(switch.findall(text)) == 1 and switch.search(text).start() > text.index("[parts.cache_pointer]")
    path = tmp_path_factory.mktemp("graded_cache_config") / "test_config.toml"
    path.write_text(switch.sub("graded = true", text))
    return {**grading_config, "path": path}


@pytest.fixture(scope="session")
def validation_trained_model(tmp_path_factory, prepared_data) -> Path:
    """A quick model trained on the graded validation slice itself (the cheat the grader must refuse)."""
    from hw4lib import data as hw4data
    from hw4lib.components import load_components
    from hw4lib.lab import training

    valid = hw4data.load_split("wikitext2", "valid")
    sliced = training.take_tokens(valid, GRADED_TOKENS)
    config = training.get_preset("quick", "wikitext2", epochs=12, max_valid_tokens=GRADED_TOKENS)
    run_data = training.RunData(train=sliced, valid=sliced, vocab_size=len(hw4data.load_vocab("wikitext2")))
    run = tmp_path_factory.mktemp("valid_run")
    training.train(config, load_components("solutions"), run, run_data=run_data, resume=False, progress=False,
                   log=lambda *_: None)
    return run / "model.pt"
