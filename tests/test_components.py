"""Properties of the reference components, loaded from solutions/ through the one loader."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from hw4lib.components import ComponentLoadError, load_components


@pytest.fixture(scope="module")
def C():
    return load_components("solutions")


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------------- the loader
def test_loader_builds_every_component(C):
    for name in ("LanguageModelDataLoader", "LockedDropout", "embedded_dropout", "WeightDrop", "LanguageModel",
                 "activation_regularization", "temporal_activation_regularization", "train_batch", "NTASGD",
                 "prediction", "generation"):
        assert callable(getattr(C, name)), name


def test_loader_filters_stages(C):
    early = load_components("solutions", before="03_weight_drop.ipynb")
    assert hasattr(early, "LockedDropout") and not hasattr(early, "WeightDrop")
    only = load_components("solutions", stages=["06"])
    assert hasattr(only, "NTASGD") and not hasattr(only, "LockedDropout")


def _notebook(path, source: str) -> None:
    cell = {"cell_type": "code", "execution_count": None, "outputs": [], "source": source,
            "metadata": {"nbgrader": {"solution": True, "grade": False, "grade_id": "x", "locked": False,
                                      "schema_version": 3, "task": False}}}
    path.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 4}))


def test_loader_names_the_cell_of_a_syntax_error(tmp_path):
    _notebook(tmp_path / "02_dropout.ipynb", "def f(:\n    pass\n")
    with pytest.raises(ComponentLoadError, match=r"02_dropout.ipynb, cell 0: syntax error on line 1"):
        load_components(tmp_path)


def test_loader_reports_a_corrupt_notebook(tmp_path):
    (tmp_path / "01_data_loader.ipynb").write_text('{"cells": [ {"cell_type": "code", ')
    with pytest.raises(ComponentLoadError, match="not a readable notebook"):
        load_components(tmp_path)


@pytest.mark.parametrize("cells", [
    "not a list",
    [["a cell that is a list"]],
    [{"cell_type": "code", "source": 7}],
    [{"cell_type": "code", "source": "x = 1", "metadata": {"nbgrader": "solution"}}],
    [{"cell_type": "code", "source": "x = 1", "metadata": {"tags": "hw4-export"}}],
])
def test_loader_refuses_json_that_is_no_notebook(tmp_path, cells):
    # The loader reads the notebook's JSON itself (no nbformat): a submission's odd JSON is a clear error, never a
    # crash inside the loader
    (tmp_path / "01_data_loader.ipynb").write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4}))
    with pytest.raises(ComponentLoadError, match="not a readable notebook"):
        load_components(tmp_path)


def test_loader_reads_sources_stored_as_lines_and_old_notebooks(tmp_path):
    _notebook(tmp_path / "02_a.ipynb", "")
    nb = json.loads((tmp_path / "02_a.ipynb").read_text())
    nb["cells"][0]["source"] = ["def f():\n", "    return 4\n"]  # how Jupyter writes a cell to disk
    (tmp_path / "02_a.ipynb").write_text(json.dumps(nb))
    import nbformat
    from nbformat.v3 import new_code_cell, new_notebook, new_worksheet

    old = new_notebook(worksheets=[new_worksheet(cells=[new_code_cell(input="def g():\n    return 5\n")])])
    old.worksheets[0].cells[0].metadata = {"tags": ["hw4-export"]}
    (tmp_path / "03_b.ipynb").write_text(nbformat.v3.nbjson.writes(old))
    mod = load_components(tmp_path)
    assert mod.f() == 4 and mod.g() == 5


def test_importing_the_loader_does_not_import_nbformat():
    # nbformat's validator imports jsonschema's format checkers, about a second in every notebook and every
    # sandboxed probe: the loader reads the JSON itself
    import subprocess
    import sys

    code = "import sys, hw4lib.components; print('nbformat' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_tracebacks_show_the_students_own_lines(tmp_path):
    _notebook(tmp_path / "05.ipynb", "def boom():\n    raise ValueError('mine')\n")
    mod = load_components(tmp_path)
    with pytest.raises(ValueError) as info:
        mod.boom()
    assert "raise ValueError('mine')" in "".join(info.traceback[-1].statement.lines)


# ---------------------------------------------------------------------------------------------- data loader
def _articles(seed=0, n=30):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 1000, size=int(rng.integers(50, 400))) for _ in range(n)]


def test_loader_covers_every_token_once_and_shifts_targets(C):
    arts = _articles()
    loader = C.LanguageModelDataLoader(arts, batch_size=7, bptt=20, seed=3)
    batches = list(loader)
    inputs = torch.cat([x for x, _, _ in batches])
    targets = torch.cat([y for _, y, _ in batches])
    assert all(x.shape == y.shape == (n, 7) for x, y, n in batches)
    assert all(x.dtype == torch.long for x, _, _ in batches)
    rows = sum(len(a) for a in arts) // 7
    # Every position of a column but the last is an input exactly once, and targets are the next positions.
    assert inputs.shape == (rows - 1, 7)
    assert torch.equal(inputs[1:], targets[:-1])
    # The columns are the shuffled concatenation cut into 7 contiguous slices.
    gen = torch.Generator().manual_seed(3)
    order = torch.randperm(len(arts), generator=gen).tolist()
    stream = np.concatenate([arts[i] for i in order])[: rows * 7].reshape(7, rows).T
    assert np.array_equal(inputs.numpy(), stream[:-1])
    assert np.array_equal(targets.numpy(), stream[1:])


def test_loader_shuffles_per_epoch_reproducibly(C):
    arts = _articles()
    a = C.LanguageModelDataLoader(arts, 4, 20, seed=1)
    b = C.LanguageModelDataLoader(arts, 4, 20, seed=1)
    e0a, e0b = next(iter(a))[0], next(iter(b))[0]
    assert torch.equal(e0a, e0b)
    list(a)  # finish epoch 0 (the first iter was abandoned, so a.epoch is still 0)
    assert a.epoch == 1
    assert not torch.equal(next(iter(a))[0][:5], e0a[:5])


def test_loader_length_distribution(C):
    arts = [np.arange(200_000) % 1000]
    loader = C.LanguageModelDataLoader(arts, batch_size=1, bptt=70, seed=0)
    lengths = np.array([n for _, _, n in loader][:-1])  # the last window is cut to what is left
    short = lengths < 52
    assert 0.03 < short.mean() < 0.07  # base bptt/2 with probability 0.05
    assert abs(lengths[~short].mean() - 70) < 0.6
    assert 4.0 < lengths[~short].std() < 6.0
    assert lengths.min() >= 5 and lengths.max() <= 85
    assert abs(len(loader) - (len(lengths) + 1)) / len(lengths) < 0.05


# ---------------------------------------------------------------------------------------- locked dropout
def test_locked_dropout_mask_shared_across_time_and_distinct_across_batch(C):
    torch.manual_seed(0)
    drop = C.LockedDropout(p=0.4)
    out = drop(torch.ones(30, 16, 64))
    mask = out[0]
    assert torch.equal(out, mask.expand_as(out)), "the mask changes over time"
    assert len({tuple(row.tolist()) for row in mask}) == 16, "batch elements share a mask"
    values = torch.unique(out)
    assert len(values) == 2 and values[0] == 0 and torch.isclose(values[1], torch.tensor(1 / 0.6))
    assert abs((mask == 0).float().mean().item() - 0.4) < 0.04


def test_locked_dropout_identity_in_eval_and_p0(C):
    x = torch.randn(5, 3, 8)
    assert torch.equal(C.LockedDropout(0.5).eval()(x), x)
    assert torch.equal(C.LockedDropout(0.0)(x), x)
    assert "p=0.5" in repr(C.LockedDropout(0.5))


# ------------------------------------------------------------------------------------- embedding dropout
def test_embedding_dropout_drops_whole_word_types(C):
    torch.manual_seed(1)
    embed = nn.Embedding(50, 16)
    words = torch.randint(0, 50, (40, 8))
    out = C.embedded_dropout(embed, words, dropout=0.5)
    assert out.shape == (40, 8, 16)
    dropped = (out == 0).all(dim=-1)
    for w in words.unique():
        where = dropped[words == w]
        assert where.all() or not where.any(), f"word {w} dropped at some positions only"
    kept = ~dropped
    assert torch.allclose(out[kept], embed.weight[words][kept] * 2)
    assert 0.25 < dropped[:, :].float().mean() < 0.75


def test_embedding_dropout_gradient_reaches_the_last_word(C):
    embed = nn.Embedding(10, 4)  # no padding_idx: -1 would silently freeze word 9
    assert embed.padding_idx is None
    C.embedded_dropout(embed, torch.tensor([[9, 3]]), dropout=0.0).sum().backward()
    assert embed.weight.grad[9].abs().sum() > 0
    assert torch.equal(C.embedded_dropout(embed, torch.tensor([[1]]), dropout=0.0)[0, 0], embed.weight[1])


# --------------------------------------------------------------------------------------------- weight drop
def _wd(C, p=0.5, seed=0):
    torch.manual_seed(seed)
    return C.WeightDrop(nn.LSTM(6, 5), ["weight_hh_l0"], dropout=p)


def _recompute(module: nn.LSTM, x, state=None):
    plain = nn.LSTM(module.input_size, module.hidden_size)
    with torch.no_grad():
        for name in ("weight_ih_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(plain, name).copy_(getattr(module, name))
        plain.weight_hh_l0.copy_(module.weight_hh_l0)
    return plain(x, state)[0]


def test_weight_drop_one_mask_for_every_timestep(C):
    wd = _wd(C)
    x = torch.randn(25, 3, 6)
    out, _ = wd(x)
    used = wd.module.weight_hh_l0
    raw = wd.module.weight_hh_l0_raw
    zeros = used == 0
    assert 0.3 < zeros.float().mean() < 0.7
    assert torch.allclose(used[~zeros], raw[~zeros] * 2)
    # The same dropped weight explains every timestep of the output.
    assert torch.allclose(_recompute(wd.module, x), out, atol=1e-6)
    out2, _ = wd(x)
    assert not torch.equal(wd.module.weight_hh_l0, used), "the mask must be new on the next forward pass"


def test_weight_drop_gradients_reach_raw_weights_and_eval_uses_full_weights(C):
    wd = _wd(C)
    out, _ = wd(torch.randn(7, 2, 6))
    out.sum().backward()
    raw = wd.module.weight_hh_l0_raw
    assert isinstance(raw, nn.Parameter) and raw.grad is not None and raw.grad.abs().sum() > 0
    assert "weight_hh_l0" not in dict(wd.named_parameters(recurse=True))
    wd.eval()
    x = torch.randn(7, 2, 6)
    out_eval, _ = wd(x)
    assert torch.equal(wd.module.weight_hh_l0, raw.detach())
    assert torch.allclose(_recompute(wd.module, x), out_eval, atol=1e-6)


def test_weight_drop_survives_mode_switches_copies_and_state_dicts(C):
    wd = _wd(C)
    x = torch.randn(4, 2, 6)
    for training in (True, False, True, False, True):
        wd.train(training)
        wd(x)
    clone = copy.deepcopy(wd)
    fresh = _wd(C, seed=5)
    fresh.load_state_dict(wd.state_dict())
    wd.eval(), clone.eval(), fresh.eval()
    assert torch.allclose(wd(x)[0], clone(x)[0]) and torch.allclose(wd(x)[0], fresh(x)[0])
    assert set(wd.state_dict()) == {"module.weight_ih_l0", "module.bias_ih_l0", "module.bias_hh_l0",
                                    "module.weight_hh_l0_raw"}
    zero = _wd(C, p=0.0)
    zero(x), zero.eval(), zero(x), zero.train(), zero(x)  # p = 0 must not re-register the Parameter


def test_weight_drop_keeps_the_fused_kernel(C):
    wd = _wd(C)
    x = torch.randn(30, 2, 6)
    with torch.profiler.profile() as prof:
        wd(x)
    names = [e.name for e in prof.events()]
    assert names.count("aten::lstm") == 1, "one fused LSTM call for the whole sequence"


# -------------------------------------------------------------------------------------------------- model
def test_language_model_shapes_and_outputs(C):
    torch.manual_seed(0)
    model = C.LanguageModel(100, embed_size=12, hidden_size=20, num_layers=3)
    x = torch.randint(0, 100, (9, 4))
    logits, hidden, raw, dropped = model(x)
    assert logits.shape == (9, 4, 100)
    assert [r.shape for r in raw] == [(9, 4, 20), (9, 4, 20), (9, 4, 12)]
    assert [d.shape for d in dropped] == [r.shape for r in raw]
    assert [h[0].shape for h in hidden] == [(1, 4, 20), (1, 4, 20), (1, 4, 12)]
    assert len(model.rnns) == 3 and all(isinstance(r, C.WeightDrop) for r in model.rnns)
    model.eval()
    for r, d in zip(*model(x)[2:], strict=True):
        assert torch.equal(r, d), "no dropout in eval mode"


def test_weight_tying_is_one_parameter(C):
    tied = C.LanguageModel(1000, embed_size=16, hidden_size=32, num_layers=2, tie_weights=True)
    untied = C.LanguageModel(1000, embed_size=16, hidden_size=32, num_layers=2, tie_weights=False)
    assert tied.decoder.weight is tied.encoder.weight
    assert untied.decoder.weight is not untied.encoder.weight
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # Untied: a separate V x 32 decoder; its last layer is 32 wide instead of 16.
    lstm = lambda i, h: 4 * h * (i + h) + 8 * h  # noqa: E731
    expected_tied = 1000 * 16 + lstm(16, 32) + lstm(32, 16) + 1000
    expected_untied = 1000 * 16 + lstm(16, 32) + lstm(32, 32) + 1000 * 32 + 1000
    assert count(tied) == expected_tied
    assert count(untied) == expected_untied
    assert abs(tied.encoder.weight).max() <= 0.1 and tied.decoder.bias.abs().sum() == 0


def test_model_is_causal(C):
    torch.manual_seed(0)
    model = C.LanguageModel(50, 8, 16, 2).eval()
    x = torch.randint(0, 50, (12, 2))
    y = x.clone()
    y[8:] = (y[8:] + 1) % 50
    assert torch.allclose(model(x)[0][:8], model(y)[0][:8])


# ----------------------------------------------------------------------------------------------- AR / TAR
def test_ar_tar_formulas(C):
    h = torch.randn(6, 3, 4)
    assert torch.isclose(C.activation_regularization(h, 2.0), 2.0 * (h**2).sum() / h.numel())
    diff = h[1:] - h[:-1]
    assert torch.isclose(C.temporal_activation_regularization(h, 1.5), 1.5 * (diff**2).sum() / diff.numel())


# ------------------------------------------------------------------------------------------------- NT-ASGD
def _opt(C, nonmono=2, lr=0.5):
    p = nn.Parameter(torch.zeros(3))
    return p, C.NTASGD([p], lr=lr, nonmono=nonmono)


@pytest.mark.parametrize(
    ("losses", "trigger_at"),
    [
        ([5.0, 4.0, 3.0, 2.0, 1.0, 0.5], None),  # always improving
        ([5.0, 4.0, 3.0, 3.5], None),  # t=3 > 2 but 3.5 < min(logs[:1]) = 5.0
        ([5.0, 4.0, 3.0, 6.0], 3),  # 6.0 > min(5.0)
        ([5.0, 4.0, 6.0], None),  # t=2 is not > nonmono=2
        ([5.0, 4.0, 3.0, 4.5, 4.2, 3.9], 4),  # 4.2 > min(5, 4) = 4
    ],
)
def test_nt_asgd_trigger_on_scripted_sequences(C, losses, trigger_at):
    _, opt = _opt(C)
    switched = [opt.record(v) for v in losses]
    expected = [i == trigger_at for i in range(len(losses))]
    assert switched == expected
    assert opt.averaging == any(expected)


def test_nt_asgd_averages_iterates_since_the_trigger(C):
    p, opt = _opt(C, nonmono=0)
    iterates = []
    for step in range(6):
        if step == 2:
            assert opt.record(1.0) is False  # t=0
            assert opt.record(2.0) is True  # t=1 > 0 and 2.0 > min([1.0])
            assert opt.trigger_step == 2
        p.grad = torch.tensor([1.0, -2.0, float(step)])
        opt.step()
        if opt.averaging:
            iterates.append(p.detach().clone())
    live = p.detach().clone()
    with opt.averaged():
        assert torch.allclose(p, torch.stack(iterates).mean(0))
    assert torch.equal(p.detach(), live)


def test_nt_asgd_lr_scale_applies_on_that_step_and_state_round_trips(C):
    p, opt = _opt(C, lr=0.5)
    p.grad = torch.ones(3)
    opt.step(lr_scale=0.25)
    assert torch.allclose(p.detach(), torch.full((3,), -0.125))
    p.grad = torch.ones(3)
    opt.step(lr_scale=2.0)
    assert torch.allclose(p.detach(), torch.full((3,), -1.125))
    for v in (3.0, 2.0, 2.5, 2.6):
        opt.record(v)
    p2, opt2 = _opt(C, lr=9.0)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.state_dict()["logs"] == opt.state_dict()["logs"]
    assert (opt2.averaging, opt2.trigger_step, opt2.lr) == (opt.averaging, opt.trigger_step, 0.5)


# ------------------------------------------------------------------------------------------- train_batch
class _Recorder:
    def __init__(self, inner):
        self.inner, self.scales = inner, []

    def zero_grad(self):
        self.inner.zero_grad()

    def step(self, lr_scale=1.0):
        self.scales.append(lr_scale)
        self.inner.step(lr_scale=lr_scale)


def test_train_batch_detaches_clips_and_scales(C):
    torch.manual_seed(0)
    model = C.LanguageModel(60, 8, 16, 2)
    opt = _Recorder(C.NTASGD(model.parameters(), lr=1.0))
    x, y = torch.randint(0, 60, (10, 3)), torch.randint(0, 60, (10, 3))
    loss, hidden = C.train_batch(model, opt, x, y, None, 10, 20)
    assert isinstance(loss, float) and 3.0 < loss < 5.0  # about log(60) at initialization
    assert all(not t.requires_grad for h in hidden for t in h)
    assert opt.scales == [0.5]
    norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in model.parameters() if p.grad is not None))
    assert norm <= 0.25 + 1e-4
    loss2, _ = C.train_batch(model, opt, x, y, hidden, 10, 20)  # backward through a detached state
    assert math.isfinite(loss2)


# --------------------------------------------------------------------------------- prediction, generation
def test_prediction_and_greedy_generation(C):
    torch.manual_seed(0)
    model = C.LanguageModel(40, 8, 16, 2)
    x = torch.randint(0, 40, (6, 3))
    pred = C.prediction(model, x)
    assert pred.shape == (3, 40) and model.training
    model.eval()
    assert torch.allclose(pred, model(x)[0][-1])
    model.train()
    out = C.generation(model, x, 5)
    assert out.shape == (3, 5) and out.dtype == torch.long and model.training
    # Greedy: each word is the arg-max given the prefix and the words generated before it.
    model.eval()
    seq = x
    for i in range(5):
        nxt = model(seq)[0][-1].argmax(-1)
        assert torch.equal(nxt, out[:, i])
        seq = torch.cat([seq, nxt[None]])
    top1 = C.generation(model, x, 5, greedy=False, top_k=1, generator=g(3))
    assert torch.equal(top1, out)
    s1 = C.generation(model, x, 8, greedy=False, temperature=2.0, generator=g(7))
    s2 = C.generation(model, x, 8, greedy=False, temperature=2.0, generator=g(7))
    assert torch.equal(s1, s2)
