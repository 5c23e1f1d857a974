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
