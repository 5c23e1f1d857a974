"""The visible checks: silent on the reference, specific on broken components, friendly on stubs."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from hw4lib import checks
from hw4lib.components import load_components


@pytest.fixture(scope="module")
def ref() -> types.ModuleType:
    return load_components("solutions")


def failing(check, *args) -> str:
    """Runs a check that must fail; returns the text it printed plus the exception message."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(checks.CheckFailed) as info:
        check(*args)
    assert "\n" not in str(info.value), "the exception itself must be one line"
    return out.getvalue() + str(info.value)


def stub(*args, **kwargs):
    raise NotImplementedError()


# ---------------------------------------------------------------------------------------------- reference


@pytest.mark.parametrize(
    "check, names",
    [
        (checks.check_data_loader, ["LanguageModelDataLoader"]),
        (checks.check_locked_dropout, ["LockedDropout"]),
        (checks.check_embedded_dropout, ["embedded_dropout"]),
        (checks.check_weight_drop, ["WeightDrop"]),
        (checks.check_language_model, ["LanguageModel"]),
        (checks.check_ar_tar, ["activation_regularization", "temporal_activation_regularization"]),
        (checks.check_train_batch, ["train_batch"]),
        (checks.check_nt_asgd, ["NTASGD"]),
        (checks.check_prediction_generation, ["prediction", "generation"]),
    ],
)
def test_reference_passes(ref, check, names, capsys):
    check(*(getattr(ref, n) for n in names))
    assert capsys.readouterr().out.startswith("✓")


def test_stub_says_not_implemented():
    class Stub(nn.Module):
        def __init__(self, p=0.5):
            super().__init__()
            self.p = p

        def forward(self, x):
            raise NotImplementedError()

    text = failing(checks.check_locked_dropout, Stub)
    assert "not implemented yet" in text and "Traceback" not in text
    assert "not implemented yet" in failing(checks.check_ar_tar, stub, stub)
    assert "not implemented yet" in failing(checks.check_data_loader, stub)


def test_other_errors_are_named_with_the_line():
    def broken(x, alpha):
        return x.nonexistent_method()

    text = failing(checks.check_ar_tar, broken, broken)
    assert "AttributeError" in text and "nonexistent_method" in text


# ------------------------------------------------------------------------------------ broken components


def test_loader_fixed_windows_and_no_shift(ref):
    class Fixed(ref.LanguageModelDataLoader):
        def __init__(self, dataset, batch_size, bptt=70, **kwargs):
            kwargs.update(p_full=1.0, std=0.0)
            super().__init__(dataset, batch_size, bptt, **kwargs)

    assert "every window has length" in failing(checks.check_data_loader, Fixed)

    class NoShift(ref.LanguageModelDataLoader):
        def __iter__(self):
            for inputs, _, seq_len in super().__iter__():
                yield inputs, inputs, seq_len

    assert "the targets equal the inputs" in failing(checks.check_data_loader, NoShift)


def test_standard_dropout_is_not_locked():
    class Standard(nn.Module):
        def __init__(self, p=0.5):
            super().__init__()
            self.p = p

        def forward(self, x):
            return F.dropout(x, self.p, self.training)

    text = failing(checks.check_locked_dropout, Standard)
    assert "has another mask than timestep 0" in text and "once per sequence" in text


def test_locked_mask_shared_across_batch_and_unscaled():
    from hw4lib.properties.core import locked_mask_problems

    gen = torch.Generator().manual_seed(0)

    def mask_picture(p, one_for_batch, scale):
        x = torch.rand(5, 8, 50, generator=gen) + 0.5
        m = torch.bernoulli(torch.full((1, 1 if one_for_batch else 8, 50), 1 - p), generator=gen)
        return x, x * m * (1 / (1 - p) if scale else 1.0)

    assert locked_mask_problems(*mask_picture(0.5, False, True), 0.5, "d") == []
    assert any("same mask" in m for m in locked_mask_problems(*mask_picture(0.5, True, True), 0.5, "d"))
    assert any("not rescaled" in m for m in locked_mask_problems(*mask_picture(0.5, False, False), 0.5, "d"))
    x, y = mask_picture(0.3, False, True)  # a mask drawn with rate 0.3 where 0.5 was asked for
    assert any("right rate" in m for m in locked_mask_problems(x, y, 0.5, "d"))
    x, _ = mask_picture(0.5, False, True)
    assert any("nothing was dropped" in m for m in locked_mask_problems(x, x.clone(), 0.5, "d"))  # no dropout
    x, y = mask_picture(0.5, False, True)
    assert any("taken before this dropout" in m for m in locked_mask_problems(y, y, 0.5, "d"))  # input already dropped


def test_locked_dropout_on_in_eval(ref):
    class AlwaysOn(ref.LockedDropout):
        def forward(self, x):
            was = self.training
            self.training = True
            try:
                return super().forward(x)
            finally:
                self.training = was

    assert "in eval mode" in failing(checks.check_locked_dropout, AlwaysOn)


def test_embedding_dropout_per_position_and_padding(ref):
    def per_position(embed, words, dropout=0.1, scale=None):
        out = embed(words)
        if dropout:
            mask = torch.bernoulli(torch.full(words.shape + (1,), 1 - dropout)) / (1 - dropout)
            out = out * mask
        return out

    assert "at some positions and kept at others" in failing(checks.check_embedded_dropout, per_position)

    def minus_one(embed, words, dropout=0.1, scale=None):
        if embed.padding_idx is None:  # the peers' bug: padding_idx=-1 means "the last row is padding"
            embed.padding_idx = embed.num_embeddings - 1
        return ref.embedded_dropout(embed, words, dropout, scale)

    assert "last word's row" in failing(checks.check_embedded_dropout, minus_one)


def test_loader_last_window_not_cut_is_named_for_its_cause(ref):
    class Uncut(ref.LanguageModelDataLoader):
        def __iter__(self):
            batches = list(super().__iter__())
            yield from batches[:-1]
            x, y, n = batches[-1]
            # what a last window left at its drawn length gives: inputs one row past the last target
            yield torch.cat([x, x[-1:]]), y, n + 1

    text = failing(checks.check_data_loader, Uncut)
    assert "the epoch's last window" in text and "seq_len = min(seq_len, rows - 1 - i)" in text


def test_weight_drop_keeping_the_lstms_own_parameter_is_named_for_its_cause():
    class Kept(nn.Module):
        def __init__(self, module, weights, dropout=0.5):
            super().__init__()
            self.module, self.weights, self.dropout = module, list(weights), dropout
            for name in self.weights:  # registers the raw weight but never deletes the LSTM's own Parameter
                module.register_parameter(name + "_raw", nn.Parameter(getattr(module, name).detach().clone()))

        def forward(self, *args):
            for name in self.weights:
                raw = getattr(self.module, name + "_raw")
                setattr(self.module, name, F.dropout(raw, self.dropout, self.training) * 1)
            return self.module(*args)

    text = failing(checks.check_weight_drop, Kept)
    assert "a training forward raised TypeError" in text
    assert "del module._parameters['weight_hh_l0']" in text


def test_weight_drop_wrong_weight_recorded(ref):
    class Redraw(ref.WeightDrop):
        def forward(self, *args):
            out = super().forward(*args)
            if self.training:
                raw = self.module.weight_hh_l0_raw
                self.module.weight_hh_l0 = F.dropout(raw, self.dropout, True).detach()
            return out

    text = failing(checks.check_weight_drop, Redraw)
    assert "differs from a plain nn.LSTM" in text


def test_weight_drop_that_drops_nothing(ref):
    class NoDrop(ref.WeightDrop):
        def forward(self, *args):
            was = self.training
            self.training = False
            try:
                return super().forward(*args)
            finally:
                self.training = was

    assert "nothing was dropped" in failing(checks.check_weight_drop, NoDrop)


def test_model_with_copied_instead_of_tied_weight(ref):
    class Copied(ref.LanguageModel):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if self.tie_weights:
                self.decoder.weight = nn.Parameter(self.encoder.weight.detach().clone())

    assert "very same Parameter" in failing(checks.check_language_model, Copied)


def test_parameter_count_formula(ref):
    from hw4lib.properties.model import parameter_count

    for tie in (True, False):
        cfg = dict(vocab_size=30, embed_size=6, hidden_size=10, num_layers=2, tie_weights=tie)
        model = ref.LanguageModel(30, embed_size=6, hidden_size=10, num_layers=2, tie_weights=tie)
        assert sum(p.numel() for p in model.parameters()) == parameter_count(cfg)


def test_ar_sum_and_tar_over_t(ref):
    def ar_sum(x, alpha):
        return alpha * x.pow(2).sum()

    assert "use the mean" in failing(checks.check_ar_tar, ar_sum, ref.temporal_activation_regularization)

    def tar_over_t(x, beta):
        return beta * (x[1:] - x[:-1]).pow(2).sum() / x[0].numel() / x.size(0)

    assert "divided by T" in failing(checks.check_ar_tar, ref.activation_regularization, tar_over_t)


def test_train_batch_without_clipping_or_scale(ref):
    def no_clip(*args, **kwargs):
        kwargs["clip"] = 0
        return ref.train_batch(*args, **kwargs)

    assert "clip it to clip = 0.25" in failing(checks.check_train_batch, no_clip)

    def no_tar(*args, **kwargs):
        kwargs["beta"] = 0.0
        return ref.train_batch(*args, **kwargs)

    assert "changing beta does not change the gradient" in failing(checks.check_train_batch, no_tar)


def test_ntasgd_returning_true_after_switch(ref):
    class Sticky(ref.NTASGD):
        def record(self, val_loss):
            super().record(val_loss)
            return self.averaging

    assert "only the call that switches returns True" in failing(checks.check_nt_asgd, Sticky)


def test_reference_passes_under_other_global_seeds(ref):
    """The checks draw from their own generators: the global seed (and its use by others) changes nothing."""
    out = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        out.append([checks.problems(part, ref) for part in ("locked_dropout", "weight_drop", "nt_asgd")])
    assert out[0] == out[1] == out[2] == [[], [], []]


def test_prediction_in_training_mode_and_generation_without_hidden(ref):
    def train_mode_prediction(model, inputs):
        return model(inputs)[0][-1]

    text = failing(checks.check_prediction_generation, train_mode_prediction, ref.generation)
    assert "eval-mode logits" in text and "model.eval()" in text

    def forgetful(model, inputs, n_words, greedy=True, temperature=1.0, top_k=None, generator=None):
        was_training = model.training
        model.eval()
        words, x = [], inputs
        with torch.no_grad():
            for _ in range(n_words):
                word = model(x)[0][-1].argmax(-1)
                words.append(word)
                x = word.unsqueeze(0)
        model.train(was_training)
        return torch.stack(words, 1)

    text = failing(checks.check_prediction_generation, ref.prediction, forgetful)
    assert "with the hidden state" in text


def test_load_earlier_names_the_notebook_to_fix(tmp_path, capsys):
    import nbformat

    from tests.notebook_tools import SOLUTIONS

    for path in sorted(SOLUTIONS.glob("0[0-3]*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        if path.name.startswith("02"):
            for cell in nb.cells:
                if cell.metadata.get("nbgrader", {}).get("grade_id") == "locked_dropout":
                    cell.source = cell.source.replace("x.size(2)).bernoulli_", "x.size(2)).bernoulli_").replace(
                        "x.new_empty(1, x.size(1), x.size(2))", "x.new_empty(x.size(0), x.size(1), x.size(2))"
                    )
        nbformat.write(nb, str(tmp_path / path.name))
    module = checks.load_earlier("04_model.ipynb", tmp_path)
    out = capsys.readouterr().out
    assert module is not None
    assert "✗ LockedDropout (from 02_dropout.ipynb)" in out and "open 02_dropout.ipynb" in out
    assert "✓ WeightDrop (from 03_weight_drop.ipynb)" in out


# ------------------------------------------------------------------------- each cause once, and by its value


def problem_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("  • ")]


def test_knock_ons_are_left_out_and_each_cause_printed_once(ref):
    """A property that cannot judge its promise because of another's failure does not print; one error that two
    properties trip over prints once."""
    def from_data(embed, words, dropout=0.1, scale=None):
        weight = embed.weight.data  # cuts the graph: only the gradient is wrong
        if dropout:
            weight = weight * (weight.new_empty(weight.size(0), 1).bernoulli_(1 - dropout) / (1 - dropout))
        return F.embedding(words, weight, embed.padding_idx)

    text = failing(checks.check_embedded_dropout, from_data)
    assert problem_lines(text) == [line for line in problem_lines(text) if "not .data" in line]
    assert len(problem_lines(text)) == 1 and "cannot be checked" not in text

    class EvalParameter(ref.WeightDrop):  # assigns the raw Parameter under the old name in eval mode
        def forward(self, *args):
            for name in self.weights:
                raw = getattr(self.module, name + "_raw")
                drop = self.training and self.dropout > 0
                setattr(self.module, name, F.dropout(raw, self.dropout, True) if drop else raw)
            out = self.module(*args)
            for name in self.weights:
                setattr(self.module, name, getattr(self.module, name).detach())
            return out

    text = failing(checks.check_weight_drop, EvalParameter)
    assert len(problem_lines(text)) == 1 and "registers it as a Parameter again" in text


def test_in_place_locked_dropout_is_named_for_its_real_reason(ref):
    class InPlace(ref.LockedDropout):
        def forward(self, x):
            if not self.training or self.p == 0:
                return x
            return x.mul_(x.new_empty(1, x.size(1), x.size(2)).bernoulli_(1 - self.p) / (1 - self.p))

    text = failing(checks.check_locked_dropout, InPlace)
    assert len(problem_lines(text)) == 1 and "raw_outputs must keep the values before dropout" in text


def test_call_style_is_not_judged(ref, capsys):
    """WeightDrop calling self.module.forward (no hooks run), layers called by .forward and logits by F.linear on
    the flattened output pass their checks: values are judged, not calls."""
    class ForwardCall(ref.WeightDrop):
        def forward(self, *args):
            for name in self.weights:
                raw = getattr(self.module, name + "_raw")
                weight = F.dropout(raw, self.dropout, True) if self.training and self.dropout else raw * 1
                setattr(self.module, name, weight)
            out = self.module.forward(*args)
            for name in self.weights:
                setattr(self.module, name, getattr(self.module, name).detach())
            return out

    checks.check_weight_drop(ForwardCall)

    class Linear(ref.LanguageModel):  # calls each layer's forward directly, decodes flattened with F.linear
        def forward(self, inputs, hidden=None):
            if hidden is None:
                hidden = self.init_hidden(inputs.size(1))
            x = self.idrop(ref.embedded_dropout(self.encoder, inputs, self.dropoute if self.training else 0))
            new_hidden, raw_outputs, dropped_outputs = [], [], []
            for layer, rnn in enumerate(self.rnns):
                raw, h = rnn.forward(x, hidden[layer])
                new_hidden.append(h)
                raw_outputs.append(raw)
                x = self.hdrop(raw) if layer < self.num_layers - 1 else self.odrop(raw)
                dropped_outputs.append(x)
            T, B, H = x.shape
            logits = F.linear(x.reshape(T * B, H), self.decoder.weight, self.decoder.bias).view(T, B, -1)
            return logits, new_hidden, raw_outputs, dropped_outputs

    checks.check_language_model(Linear)
    assert capsys.readouterr().out.count("✓") == 2


def test_ntasgd_counting_checks_for_trigger_step(ref):
    class Checks(ref.NTASGD):
        def record(self, val_loss):
            switched = super().record(val_loss)
            if switched:
                self.trigger_step = len(self.logs) - 1
            return switched

    assert "count optimizer steps" in failing(checks.check_nt_asgd, Checks)


def test_contract_renders_a_stages_rows_and_section():
    """checks.contract(2) shows stage 2's rows of the table and its "easy to miss" section, nothing of the others."""
    from IPython.display import Markdown

    shown = checks.contract(2)
    assert isinstance(shown, Markdown)
    text = shown.data
    assert "| stage | name | signature | contract |" in text
    assert "| 2 | `LockedDropout` |" in text and "| 2 | `embedded_dropout` |" in text
    assert "### Stage 2: LockedDropout and embedded_dropout" in text
    assert "scale.expand_as(weight) * weight" in text  # a bullet of the section
    assert "| 1 |" not in text and "| 3 |" not in text
    assert [line for line in text.splitlines() if line.startswith("#")] == [
        "### Stage 2: LockedDropout and embedded_dropout"]  # the section stops at the next heading
    # Stage 7 has rows and no section; stage 8's rows say "8 (optional)" and its section is the last one.
    seven = checks.contract_text(7)
    assert "| 7 | `prediction` |" in seven and "| 7 | `generation` |" in seven and "###" not in seven
    eight = checks.contract_text(8)
    assert "| 8 (optional) | `cache_probs` |" in eight
    assert eight.rstrip().endswith("`python -m hw4lib cache --impl ...`).")  # the file's last section, to its end
    with pytest.raises(ValueError, match="no stage 9"):
        checks.contract(9)


def test_contract_reads_a_section_up_to_the_next_heading():
    text = "\n".join(["| stage | name | signature | contract |", "|---|---|---|---|", "| 1 | `A` | `()` | a |",
                      "| 2 | `B` | `()` | b |", "", "### Stage 1: A", "* one", "### Stage 2: B", "* two", "## After"])
    assert checks.contract_text(1, text).splitlines()[4:] == ["| 1 | `A` | `()` | a |", "", "### Stage 1: A", "* one"]
    assert checks.contract_text(2, text).splitlines()[-2:] == ["### Stage 2: B", "* two"]

