"""The ablation runner (issue 12): every row is a valid run of the `cpu` preset with one technique removed, the
fixed-window row really has fixed windows, and the script appends a CSV row from a real (tiny) PTB run."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from hw4lib.components import load_components
from hw4lib.training import get_preset

REPO = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("ablation", REPO / "benchmarks" / "ablation.py")
ablation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ablation)


@pytest.fixture(scope="module")
def C():
    return load_components("solutions")


@pytest.mark.parametrize("row", sorted(ablation.ROWS))
def test_every_row_removes_what_it_says(C, row):
    full, cfg = get_preset("cpu", "ptb"), get_preset("cpu", "ptb", **ablation.ROWS[row])
    changed = {k for k, v in cfg.__dict__.items() if full.__dict__[k] != v}
    assert changed == set(ablation.ROWS[row])
    model = C.LanguageModel(**cfg.model_config(50))
    if row == "no_weight_tying":
        assert model.decoder.weight is not model.encoder.weight and model.decoder.in_features == cfg.hidden_size
    if row == "no_independent_embedding":
        assert model.encoder.embedding_dim == cfg.hidden_size
    if row == "no_weight_drop":
        assert all(rnn.dropout == 0 for rnn in model.rnns)


def test_fixed_windows_for_the_variable_bptt_row(C, tmp_path):
    import numpy as np

    from hw4lib.training import RunData, Trainer

    data = RunData([np.arange(2000) % 50], [np.arange(300) % 50], 50)
    cfg = get_preset("cpu", "ptb", embed_size=8, hidden_size=16, batch_size=4, device="cpu",
                     **ablation.ROWS["no_variable_bptt"])
    trainer = Trainer(cfg, C, tmp_path / "fixed", run_data=data, progress=False,
                      log=lambda *_: None, resume=False)
    lengths = [seq_len for _, _, seq_len in trainer.loader]
    assert set(lengths[:-1]) == {cfg.bptt}
    variable = Trainer(get_preset("cpu", "ptb", embed_size=8, hidden_size=16, batch_size=4, device="cpu"), C,
                       tmp_path / "variable", run_data=data, progress=False, log=lambda *_: None,
                       resume=False)
    assert len({seq_len for _, _, seq_len in variable.loader}) > 3


def test_the_script_appends_a_row_and_skips_it_the_second_time(data_env, tmp_path, capsys):
    table = tmp_path / "ablation.csv"
    argv = ["no_ar_tar", "--minutes", "0.05", "--csv", str(table), "--out", str(tmp_path / "runs"),
            "--max-train-tokens", "3000"]
    assert ablation.main(argv) == 0
    rows = list(csv.DictReader(open(table, newline="")))
    assert len(rows) == 1 and rows[0]["row"] == "no_ar_tar" and rows[0]["dataset"] == "ptb"
    assert json.loads(rows[0]["overrides"]) == {"alpha": 0.0, "beta": 0.0}
    assert 1 < float(rows[0]["val_ppl"]) < 10_000 * 1.5 and int(rows[0]["tokens"]) > 0
    assert ablation.main(argv) == 0
    assert "already in" in capsys.readouterr().out
    assert len(list(csv.DictReader(open(table, newline="")))) == 1
