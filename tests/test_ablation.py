"""The ablation (issue 12): every row is a valid run of the `cpu` preset with one technique removed, the
fixed-window row really has fixed windows, the script appends a CSV row from a real (tiny) PTB run; the paper's
Table 4 as quoted, our Δ beside the paper's from a CSV with known values, the errors for a missing CSV or budget,
the plot; and the optional notebook 09_ablation passes through the nbgrader release ungraded."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from hw4lib.components import load_components
from hw4lib.errors import HW4Error
from hw4lib.lab import ablation
from hw4lib.lab.training import get_preset

REPO = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("ablation_runner", REPO / "benchmarks" / "ablation.py")
runner = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runner)


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
    assert ablation.config_for(row, 7.0) == get_preset("cpu", "ptb", wall_budget_min=7.0, **ablation.ROWS[row])


def test_config_for_refuses_unknown_rows_and_sizes_that_undo_the_row():
    with pytest.raises(HW4Error, match="unknown ablation row"):
        ablation.config_for("no_everything", 1.0)
    with pytest.raises(HW4Error, match="wdrop"):
        ablation.config_for("no_weight_drop", 1.0, wdrop=0.5)


def test_fixed_windows_for_the_variable_bptt_row(C, tmp_path):
    import numpy as np

    from hw4lib.lab.training import RunData, Trainer

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
            "--max-train-tokens", "3000", "--sitting", "s1"]
    assert runner.main(argv) == 0
    # The sitting had no full row: it is measured first, so that no_ar_tar's Δ is against a full of its speed.
    full, rows = list(csv.DictReader(open(table, newline=""))), None
    assert [r["row"] for r in full] == ["full", "no_ar_tar"] and {r["sitting"] for r in full} == {"s1"}
    rows = full[1:]
    assert rows[0]["dataset"] == "ptb"
    assert json.loads(rows[0]["overrides"]) == {"alpha": 0.0, "beta": 0.0}
    # The line is the run's own final score: how far a few steps get depends on the machine's load, so no bound on
    # the perplexity itself, but the CSV must report exactly what the run measured.
    metrics = json.loads((tmp_path / "runs" / "no_ar_tar-0.05min" / "metrics.json").read_text())
    assert metrics["finished"] and metrics["preset_config"]["alpha"] == 0.0 and metrics["val_ppl"] > 1
    assert float(rows[0]["val_ppl"]) == round(metrics["val_ppl"], 3) and int(rows[0]["tokens"]) == metrics["tokens"] > 0
    capsys.readouterr()
    assert runner.main([*argv[:-1], "s2"]) == 0  # another sitting, nothing to measure: no full row either
    assert "already in" in capsys.readouterr().out
    assert len(list(csv.DictReader(open(table, newline="")))) == 2
    _, run = ablation.read_runs(table)  # what the notebook reads back
    assert run["row"] == "no_ar_tar" and run["minutes"] == 0.05 and run["val_ppl"] == float(rows[0]["val_ppl"])
    assert run["sitting"] == "s1"


def test_a_file_from_before_sittings_gets_the_column(tmp_path):
    old = tmp_path / "old.csv"
    old.write_text("row,overrides,dataset,minutes,val_ppl,tokens,tokens_per_s,asgd_trigger_step,wall_s\n"
                   "full,{},ptb,10.0,138.268,1673020,3053.4,,601.18\n")
    assert ablation.read_runs(old)[0]["sitting"] == ""  # read as it is: one sitting
    runner.add_sitting_column(old)
    rows = list(csv.DictReader(open(old, newline="")))
    assert list(rows[0]) == ablation.FIELDS and rows[0]["sitting"] == "" and rows[0]["val_ppl"] == "138.268"


# --- the paper's Table 4 and the comparison -------------------------------------------------------------------


def test_the_paper_table_is_quoted_and_every_mapped_row_exists():
    table = ablation.read_paper_table()
    assert table["AWD-LSTM (tied)"] == {"ptb_val": 60.0, "ptb_test": 57.3, "wt2_val": 68.6, "wt2_test": 65.8}
    assert table["– weight-dropping"] == {"ptb_val": 71.1, "ptb_test": 68.9, "wt2_val": 78.4, "wt2_test": 74.9}
    assert table["– full sized embedding"]["ptb_val"] == 68.0 and table["– NT-AvSGD"]["wt2_test"] == 69.7
    assert len(table) == 9
    mapped = {v for v in ablation.PAPER_ROWS.values() if v is not None}
    assert mapped <= set(table)
    # fine-tuning is a phase after training, not a row of the runner: the only paper row without one of ours
    assert set(table) - mapped == {"– fine-tuning"}
    assert set(ablation.PAPER_ROWS) == set(ablation.ROWS)


def _write_runs(path: Path, rows: list[tuple]) -> Path:
    """A CSV in the runner's format: (row, minutes, val_ppl[, sitting]); the other columns filled plausibly."""
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=ablation.FIELDS)
        writer.writeheader()
        for name, minutes, ppl, *sitting in rows:
            writer.writerow({"row": name, "overrides": json.dumps(ablation.ROWS[name]), "dataset": "ptb",
                             "minutes": minutes, "val_ppl": ppl, "tokens": 1_000_000, "tokens_per_s": 1600.0,
                             "asgd_trigger_step": 900 if name == "full" else "", "wall_s": minutes * 60,
                             "sitting": sitting[0] if sitting else "s1"})
    return path


def test_each_row_is_compared_with_the_full_row_of_its_own_sitting(tmp_path):
    """The host ran faster in the second sitting: its full row is better, and so are its rows; a Δ across sittings
    would be the host's speed, not the technique."""
    path = _write_runs(tmp_path / "runs.csv", [
        ("full", 10.0, 140.0, "slow"), ("no_weight_drop", 10.0, 135.0, "slow"),
        ("full", 10.0, 120.0, "fast"), ("no_embedding_dropout", 10.0, 119.0, "fast"),
        ("no_ar_tar", 10.0, 150.0, "alone"),
    ])
    result = ablation.compare(ablation.read_runs(path), 10.0)
    by = {r.row: r for r in result.rows}
    assert result.full.ppl == 120.0  # the latest full is the one shown
    assert by["no_weight_drop"].delta == pytest.approx(-5.0) and by["no_weight_drop"].ratio == pytest.approx(135 / 140)
    assert by["no_embedding_dropout"].delta == pytest.approx(-1.0)
    assert by["no_ar_tar"].ppl == 150.0 and by["no_ar_tar"].delta is None and by["no_ar_tar"].rank is None
    assert result.differences[-1].startswith("no_ar_tar: measured in a sitting without a full row (alone)")


def test_our_deltas_beside_the_papers_and_where_the_orderings_differ(tmp_path):
    path = _write_runs(tmp_path / "runs.csv", [
        ("full", 10.0, 150.0),
        ("no_weight_drop", 10.0, 160.0),       # +10: the costliest here, as in the paper (+11.1)
        ("no_embedding_dropout", 10.0, 148.0),  # -2: removing it helped (paper +5.1, its rank 2 of 3)
        ("no_ar_tar", 10.0, 170.0),            # an earlier measurement of the row ...
        ("no_ar_tar", 10.0, 155.0),            # ... and the latest one, which counts: +5 (paper +2.7, rank 3)
        ("no_locked_dropout", 10.0, 190.0),    # no row in the paper
        ("full", 5.0, 200.0),                  # another budget: ignored
        ("no_weight_drop", 5.0, 999.0),
    ])
    runs = ablation.read_runs(path)
    assert runs[0]["asgd_trigger_step"] == 900 and runs[1]["asgd_trigger_step"] is None
    assert ablation.budgets(runs) == [5.0, 10.0]
    result = ablation.compare(runs, 10.0)
    by = {r.row: r for r in result.rows}
    assert result.full.ppl == 150.0 and result.full.paper_ppl == 60.0
    assert by["no_weight_drop"].delta == pytest.approx(10.0)
    assert by["no_weight_drop"].paper_delta == pytest.approx(11.1)
    assert by["no_weight_drop"].ratio == pytest.approx(160 / 150)
    assert by["no_embedding_dropout"].delta == pytest.approx(-2.0)
    assert by["no_ar_tar"].delta == pytest.approx(5.0) and by["no_ar_tar"].paper_delta == pytest.approx(2.7)
    assert by["no_locked_dropout"].delta == pytest.approx(40.0) and by["no_locked_dropout"].paper_delta is None
    assert by["no_locked_dropout"].rank is None  # ranks only among rows both tables have
    assert by["no_nt_asgd"].delta is None and by["no_nt_asgd"].paper_delta == pytest.approx(6.3)
    assert {r: (by[r].rank, by[r].paper_rank) for r in ("no_weight_drop", "no_ar_tar", "no_embedding_dropout")} == {
        "no_weight_drop": (1, 1), "no_ar_tar": (2, 3), "no_embedding_dropout": (3, 2)}
    assert result.differences == [
        "no_embedding_dropout: rank 3 of 3 here (Δ -2.0), rank 2 in the paper (Δ +5.1)",
        "no_ar_tar: rank 2 of 3 here (Δ +5.0), rank 3 in the paper (Δ +2.7)",
        "no_embedding_dropout: removing it did not cost perplexity here (Δ -2.0); in the paper it costs +5.1",
    ]
    table = result.table()
    assert "no_ar_tar" in table and "+5.0" in table and "(no such row)" in table
    assert ablation.compare(runs, 5.0).rows[0].delta == pytest.approx(799.0)


def test_the_same_ordering_reports_no_difference(tmp_path):
    path = _write_runs(tmp_path / "runs.csv", [
        ("full", 10.0, 100.0), ("no_weight_drop", 10.0, 120.0), ("no_nt_asgd", 10.0, 110.0),
        ("no_variable_bptt", 10.0, 101.0),
    ])
    result = ablation.compare(ablation.read_runs(path), 10.0)
    assert result.differences == []
    assert [(r.row, r.rank) for r in result.rows if r.rank] == [
        ("no_weight_drop", 1), ("no_nt_asgd", 2), ("no_variable_bptt", 3)]


def test_a_missing_csv_or_budget_says_what_to_run(tmp_path):
    with pytest.raises(HW4Error, match="benchmarks/ablation.py") as err:
        ablation.read_runs(tmp_path / "absent.csv")
    assert "does not exist" in str(err.value)
    runs = ablation.read_runs(_write_runs(tmp_path / "runs.csv", [("full", 10.0, 150.0), ("no_ar_tar", 3.0, 160.0)]))
    with pytest.raises(HW4Error, match=r"no `full` row at 3 minutes .*full rows exist at 10 minutes"):
        ablation.compare(runs, 3.0)
    (tmp_path / "other.csv").write_text("row,val_ppl\nfull,150\n")
    with pytest.raises(HW4Error, match="lacks the columns"):
        ablation.read_runs(tmp_path / "other.csv")


def test_the_plot_draws_one_bar_per_known_value_and_marks_the_missing_ones(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = _write_runs(tmp_path / "runs.csv", [("full", 10.0, 150.0), ("no_weight_drop", 10.0, 165.0),
                                              ("no_weight_tying", 10.0, 140.0)])
    result = ablation.compare(ablation.read_runs(path), 10.0)
    fig = ablation.plot(result)
    ax = fig.axes[0]
    heights = sorted(round(p.get_height(), 3) for p in ax.patches)
    paper = [round(100 * (r.paper_ratio - 1), 3) for r in result.rows if r.paper_ratio is not None]
    assert heights == sorted([10.0, round(100 * (140 / 150 - 1), 3), *paper])  # 2 ours + 7 of the paper's
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("not measured") == len(ablation.ROWS) - 3 and texts.count("no row in the paper") == 2
    assert "10-minute budget" in ax.get_title()
    plt.close(fig)
    fig = ablation.plot(ablation.paper_only())
    assert "no measured rows yet" in fig.axes[0].get_title()
    assert [t.get_text() for t in fig.axes[0].texts].count("not measured") == len(ablation.ROWS) - 1
    plt.close(fig)


# --- the optional notebook: ungraded, through the same release as the graded stages --------------------------

NOTEBOOK = "09_ablation.ipynb"


@pytest.mark.parametrize("folder", ["solutions", "notebooks"])
def test_the_ablation_notebook_is_ungraded_and_exports_nothing(folder):
    import nbformat

    from hw4lib.components import graded_cells

    path = REPO / folder / NOTEBOOK
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        assert not meta.get("grade") and not meta.get("solution") and "points" not in meta, cell.source[:80]
        assert "### BEGIN" not in cell.source
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "commit the notebook without outputs"
    # the component loader runs solution and hw4-export cells of every notebook: this one must give it none
    assert graded_cells(path) == []
    text = "\n".join(c.source for c in nb.cells)
    assert "ablation.read_runs()" in text and "ablation.plot(" in text and "checks.load_earlier(" in text
    assert "training.train(config, components" in text and "progress=True" in text


@pytest.mark.slow
def test_the_release_carries_the_ablation_notebook_and_hw4_keeps_its_points(tmp_path):
    """nbgrader's generate_assignment (autograder/course.py) releases 09 as it is, and the gradebook's hw4 is
    still 100 autograded points plus the written answers, with 0 in the ablation notebook."""
    from nbgrader.api import Gradebook

    from autograder import course
    from tests.test_repository import written_answers

    root = tmp_path / "course"
    released = course.release(root, tmp_path / "release")
    assert NOTEBOOK in [p.name for p in released]
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", course.COURSE_ID) as gb:
        assignment = gb.find_assignment(course.ASSIGNMENT)
        assert assignment.max_score == 100 + sum(written_answers().values())
        notebook = gb.find_notebook(NOTEBOOK.removesuffix(".ipynb"), course.ASSIGNMENT)
        assert notebook.max_score == 0 and notebook.grade_cells == [] and notebook.solution_cells == []
