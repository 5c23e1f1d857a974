"""The judge: turns the probe's recorded outputs into a score and a message per part.

It never imports student code: it reads the probe's data files with ``torch.load(weights_only=True)``, rebuilds
the same inputs from the grading seed (``harness``), and compares with properties from the paper (one mask for
all timesteps, a scale of 1/(1-p), ...) or with the reference from ``solutions/`` run here on the same inputs
(``probe.probe_<part>`` called with the reference components). Nothing the student's process did to torch,
numpy or the checks exists in this process, so no monkeypatching can change a verdict.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from autograder import harness, probe
from autograder.config import Config, Part
from hw4lib import checkpoint, perplexity
from hw4lib.components import REPO_ROOT, load_components
from hw4lib.errors import HW4Error

SOLUTIONS = REPO_ROOT / "solutions"


@dataclass
class Check:
    name: str
    weight: float
    ok: bool
    detail: str = ""


@dataclass
class Verdict:
    part: str
    notebook: str
    points: float
    score: float
    message: str
    checks: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@cache
def reference(part: str):
    """The reference components a part needs, loaded from solutions/ (trusted code)."""
    return load_components(SOLUTIONS, stages=probe.STAGES[part])


def close(a, b, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    try:
        a, b = torch.as_tensor(a), torch.as_tensor(b)
        return a.shape == b.shape and bool(torch.allclose(a.double(), b.double(), atol=atol, rtol=rtol))
    except (TypeError, RuntimeError):
        return False


def verdict(part: Part, checks: list[Check], error: str | None = None) -> Verdict:
    """Score = points x the weighted share of passed checks; a message that names every check and its result."""
    if error is not None:
        return Verdict(part.name, part.notebook, part.points, 0.0, error)
    total = sum(c.weight for c in checks)
    passed = sum(c.weight for c in checks if c.ok)
    score = round(part.points * passed / total, 2) if total else 0.0
    lines = [
        f"{'PASS' if c.ok else 'FAIL'}  {c.name}" + ("" if c.ok or not c.detail else f": {c.detail}") for c in checks
    ]
    return Verdict(
        part.name,
        part.notebook,
        part.points,
        score,
        "\n".join(lines),
        [{"name": c.name, "ok": c.ok, "weight": c.weight, "detail": c.detail} for c in checks],
    )


def _tensor(x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a tensor, got {type(x).__name__}")
    return x


# --- parts -------------------------------------------------------------------------------------------------


def judge_data_loader(d: dict, seed: int) -> list[Check]:
    dataset = harness.articles(seed, 80, 30, 400)
    starts = {int(a[0]): len(a) for a in dataset}
    total = sum(len(a) for a in dataset)
    B, rows = 4, total // 4
    shapes_ok, shift_ok, cover_ok, lengths, orders = True, True, True, [], []
    detail = {"shape": "", "shift": "", "cover": ""}
    for e, epoch in enumerate(d["epochs"]):
        batches = epoch["batches"]
        cols: list[list[int]] = [[] for _ in range(B)]
        prev = None
        for i, (x, y, seq_len) in enumerate(batches):
            if not (
                isinstance(x, torch.Tensor)
                and isinstance(y, torch.Tensor)
                and x.dtype == torch.int64
                and y.dtype == torch.int64
                and x.dim() == 2
                and x.shape == (int(seq_len), B) == y.shape
            ):
                shapes_ok = False
                detail["shape"] = (
                    f"batch {i}: expected LongTensors of shape (seq_len, {B}) = ({seq_len}, {B}), "
                    f"got {getattr(x, 'dtype', type(x))} {tuple(getattr(x, 'shape', ()))}"
                )
                return [Check("inputs/targets are LongTensors of shape (seq_len, B)", 2, False, detail["shape"])]
            if not torch.equal(y[:-1], x[1:]) or (prev is not None and not torch.equal(x[0], prev[-1])):
                shift_ok, detail["shift"] = False, f"epoch {e}, batch {i}: targets are not the next tokens"
            prev = y
            for b in range(B):
                cols[b] += x[:, b].tolist()
            if i < len(batches) - 1:
                lengths.append(int(seq_len))
        if prev is None:
            return [Check("the loader yields batches", 10, False, "an epoch yielded no batches")]
        stream = []
        for b in range(B):
            stream += cols[b] + [int(prev[-1, b])]
            if len(cols[b]) != rows - 1:
                cover_ok = False
                detail["cover"] = f"epoch {e}: column {b} has {len(cols[b])} inputs, expected {rows - 1}"
        # The stream must be whole articles back to back (shuffled), cut only by the last N mod B tokens.
        order, i = [], 0
        while cover_ok and i < len(stream):
            length = starts.get(stream[i])
            if length is None:
                cover_ok, detail["cover"] = False, f"epoch {e}: token order breaks at stream position {i}"
                break
            piece = stream[i : i + length]
            if piece != list(range(stream[i], stream[i] + len(piece))) or (
                len(piece) < length and i + len(piece) != len(stream)
            ):
                cover_ok, detail["cover"] = False, f"epoch {e}: article starting at token {stream[i]} is broken"
                break
            order.append(stream[i])
            i += length
        if cover_ok and (len(stream) != rows * B or len(set(order)) != len(order)):
            cover_ok, detail["cover"] = False, f"epoch {e}: {len(stream)} tokens covered, expected {rows * B}"
        orders.append(order)
    identity = [int(a[0]) for a in dataset]
    epochs_after = [ep["epoch_after"] for ep in d["epochs"]]
    ident_data = perplexity.batchify(torch.cat([torch.as_tensor(a) for a in dataset]), B)
    first = d["unshuffled_first"]
    shuffle_ok = (
        len(orders) == 3
        and orders[0] != orders[1]
        and orders[0] != identity
        and epochs_after == [1, 2, 3]
        and isinstance(first, torch.Tensor)
        and first.dim() == 2
        and torch.equal(first, ident_data[: first.shape[0]])
    )
    n_batches = len(d["epochs"][0]["batches"])
    lens = torch.tensor(lengths, dtype=torch.float64)
    short = float((lens <= 12).double().mean()) if len(lens) else 0.0
    long = lens[lens > 15]
    mean, std = float(lens.mean()) if len(lens) else 0.0, float(long.std()) if len(long) > 1 else 0.0
    len_ok = (
        len(lens) > 100
        and 18.7 <= mean <= 20.3
        and 0.01 <= short <= 0.09
        and 2.0 <= std <= 4.5
        and float(lens.min()) >= 5
        and float(lens.max()) <= 29
    )
    return [
        Check(
            "inputs/targets are LongTensors of shape (seq_len, B); len(loader) is an estimate",
            2,
            shapes_ok and 0.8 * n_batches <= d["len"] <= 1.25 * n_batches,
            f"len(loader) = {d['len']}, one epoch yielded {n_batches} batches",
        ),
        Check("targets are the inputs shifted by one token, across batches too", 2, shift_ok, detail["shift"]),
        Check(
            "every position of each column is an input exactly once per epoch; columns are contiguous "
            "slices of the concatenated articles",
            2,
            cover_ok,
            detail["cover"],
        ),
        Check(
            "articles shuffled with a new order each epoch (epoch counter), unshuffled order kept with shuffle=False",
            1,
            shuffle_ok,
            f"epoch counter after each epoch: {epochs_after}",
        ),
        Check(
            "window lengths: Normal(bptt or bptt/2, std), p_full = 0.95, clamped to [min_len, max_len]",
            3,
            len_ok,
            f"bptt=20, std=3 gave mean {mean:.2f} (expected 19.5), {short:.1%} windows <= 12 "
            f"(expected ~4%), std of the full windows {std:.2f} (expected ~3), "
            f"range [{lens.min() if len(lens) else 0:.0f}, {lens.max() if len(lens) else 0:.0f}]",
        ),
    ]


def judge_locked_dropout(d: dict, seed: int) -> list[Check]:
    x = harness.dropout_input(seed, (12, 20, 100))
    y1, y2 = _tensor(d["y1"]), _tensor(d["y2"])
    if y1.shape != x.shape or y2.shape != x.shape:
        return [Check("output shape (T, B, H)", 1, False, f"input {tuple(x.shape)}, output {tuple(y1.shape)}")]
    r1, r2 = (y1 / x).double(), (y2 / x).double()
    scale = 1 / 0.7
    on_grid = bool(((r1.abs() < 1e-4) | ((r1 - scale).abs() < 1e-4)).all())
    rate = float((r1[0].abs() < 1e-4).double().mean())
    return [
        Check("output shape (T, B, H)", 1, True),
        Check("survivors scaled by 1/(1-p)", 1, on_grid, "output/input is not always 0 or 1/(1-p)"),
        Check(
            "one mask shared by every timestep",
            2,
            bool((r1 - r1[0:1]).abs().max() < 1e-4),
            "the mask differs between timesteps",
        ),
        Check(
            "mask differs across batch elements and features",
            1,
            bool((r1[0] != r1[0, :1]).any() and (r1[0] != r1[0, :, :1]).any()),
            "the mask is constant along the batch or the feature axis",
        ),
        Check("drop rate is p", 1, abs(rate - 0.3) < 0.06, f"p = 0.3 dropped {rate:.1%}"),
        Check(
            "identity in eval mode and for p = 0",
            1,
            close(d["y_eval"], x, 0, 0) and close(d["y_zero"], x),
            "eval mode or p = 0 changed the input",
        ),
        Check("a new mask on every call", 1, bool((r1[0] != r2[0]).any()), "two calls used the same mask"),
    ]


def judge_embedded_dropout(d: dict, seed: int) -> list[Check]:
    embed, words = probe.embedding(seed)
    w = embed.weight.detach().double()
    out = _tensor(d["out"]).double()
    if out.shape != (*words.shape, w.shape[1]):
        return [Check("output shape (T, B, E)", 1, False, f"got {tuple(out.shape)}")]
    looked = w[words]
    ratio = out / looked  # embedding weights from N(0, 1): no zeros
    per_position = ratio.mean(-1)
    uniform = bool((ratio - per_position.unsqueeze(-1)).abs().max() < 1e-4)
    scale, consistent, dropped, types = 1 / 0.6, uniform, 0, 0
    factor = {}
    for word in words.unique().tolist():
        values = per_position[words == word]
        factor[word] = float(values[0])
        if (values - values[0]).abs().max() > 1e-4 or min(abs(values[0]), abs(values[0] - scale)) > 1e-4:
            consistent = False
        dropped += int(abs(float(values[0])) < 1e-4)
        types += 1
    rate = dropped / max(types, 1)
    expected_grad = torch.zeros_like(w)
    for word in factor:
        expected_grad[word] = float((words == word).sum()) * factor[word]
    grad = d["grad"]
    return [
        Check("output shape (T, B, E)", 1, True),
        Check(
            "whole word types dropped, the same at every position, survivors scaled by 1/(1-p)",
            2,
            consistent,
            "the same word is kept at some positions and dropped (or scaled differently) at others",
        ),
        Check(
            "drop rate over word types is p",
            1,
            consistent and abs(rate - 0.4) < 0.12,
            f"dropout = 0.4 dropped {rate:.1%} of the word types",
        ),
        Check(
            "gradients reach embed.weight (every word, including the last one)",
            1,
            consistent and grad is not None and close(grad, expected_grad, 1e-4),
            "embed.weight.grad is not count x mask for every word",
        ),
        Check("dropout = 0 is a plain lookup", 1, close(d["out_zero"], looked, 1e-6), ""),
    ]


def _lstm_run(inp: dict, weight_hh: torch.Tensor, requires_grad: bool = False):
    lstm = nn.LSTM(8, 10)
    state = {k: v.detach().clone() for k, v in inp["lstm"].state_dict().items()}
    state["weight_hh_l0"] = weight_hh.detach().clone().float()
    lstm.load_state_dict(state)
    lstm.weight_hh_l0.requires_grad_(requires_grad)
    out, (h, c) = lstm(inp["x"], (inp["h0"], inp["c0"]))
    return out, h, c, lstm


def judge_weight_drop(d: dict, seed: int) -> list[Check]:
    inp = probe.weight_drop_inputs(seed)
    raw = inp["lstm"].weight_hh_l0.detach()
    w1, w2, w_eval = _tensor(d["w1"]), _tensor(d["w2"]), _tensor(d["w_eval"])
    if w1.shape != raw.shape:
        return [Check("module.weight_hh_l0 holds the weight used", 1, False, f"shape {tuple(w1.shape)}")]
    # Kept = not exactly zero (dropout zeroes exactly); comparing with 2 x raw alone misreads raw weights near 0.
    kept = w1 != 0
    is_drop = bool(((w1 - 2 * raw).abs() < 1e-5)[kept].all())
    rate = float((~kept).double().mean())
    out1, h1, c1, lstm = _lstm_run(inp, w1, requires_grad=True)
    out1.sum().backward()
    expected_grad = lstm.weight_hh_l0.grad * kept.float() * 2
    same_mask = close(d["out1"], out1, 1e-5) and close(d["h1"], h1, 1e-5) and close(d["c1"], c1, 1e-5)
    out2 = _lstm_run(inp, w2)[0]
    out_eval = _lstm_run(inp, raw)[0]
    params = d["parameters"]
    return [
        Check(
            "the learnable weight is the Parameter module.weight_hh_l0_raw",
            1,
            d["raw_is_parameter"] and "module.weight_hh_l0_raw" in params and "module.weight_hh_l0" not in params,
            f"parameters: {params}",
        ),
        Check(
            "the weight used is the raw weight with elements dropped at rate p, scaled by 1/(1-p)",
            2,
            is_drop and abs(rate - 0.5) < 0.1,
            f"{rate:.1%} of the elements dropped; kept ones must equal raw / (1 - p)",
        ),
        Check(
            "one W_hh mask for every timestep of a forward pass (LSTM recomputed with the weight used)",
            4,
            same_mask,
            "the outputs differ from an LSTM run with module.weight_hh_l0 over the whole sequence",
        ),
        Check(
            "a new mask on the next forward pass",
            1,
            not close(w1, w2, 0, 0) and close(d["out2"], out2, 1e-5),
            "the second pass reused the mask or its output does not match its weight",
        ),
        Check(
            "gradients reach the raw weight through the mask",
            3,
            d["grad"] is not None and close(d["grad"], expected_grad, 1e-5),
            "weight_hh_l0_raw.grad is not the LSTM's gradient times the mask",
        ),
        Check(
            "eval mode uses the full weight",
            1,
            close(w_eval, raw, 1e-6) and close(d["out_eval"], out_eval, 1e-5),
            "in eval mode the weight or the output differs from the undropped LSTM",
        ),
    ]


def judge_language_model(d: dict, seed: int) -> list[Check]:
    cfg = harness.lm_config()
    T, B, V = 7, 3, cfg["vocab_size"]
    sizes = [cfg["hidden_size"]] * (cfg["num_layers"] - 1) + [cfg["embed_size"]]
    logits = _tensor(d["logits"])

    def pairs_ok(hidden) -> bool:
        return len(hidden) == len(sizes) and all(
            len(h) == 2 and all(isinstance(t, torch.Tensor) and t.shape == (1, B, s) for t in h)
            for h, s in zip(hidden, sizes, strict=False)
        )

    shapes_ok = (
        logits.shape == (T, B, V)
        and pairs_ok(d["hidden"])
        and pairs_ok(d["init_hidden"])
        and all(float(t.abs().max()) == 0 for h in d["init_hidden"] for t in h)
        and len(d["raw"]) == len(sizes) == len(d["dropped"])
        and all(r.shape == (T, B, s) == q.shape for r, q, s in zip(d["raw"], d["dropped"], sizes, strict=False))
    )
    state = d["state"]
    enc, bias = state.get("encoder.weight"), state.get("decoder.bias")
    init_ok = enc is not None and bias is not None and float(enc.abs().max()) <= 0.1 and float(bias.abs().max()) == 0
    ref = reference("language_model").LanguageModel(**cfg)
    if not d["tied"] and "decoder.weight" in state:
        # Judge the forward pass apart from the tying: give the reference its own decoder weight too.
        ref.decoder.weight = nn.Parameter(state["decoder.weight"].clone())
    try:
        ref.load_state_dict(state, strict=True)
        ref.eval()
        inputs = torch.randint(0, V, (T, B), generator=harness.generator(seed, 7))
        with torch.no_grad():
            expected = ref(inputs)[0]
        forward_ok, why = (
            close(logits, expected, 1e-5) and close(d["again"], logits, 0, 0),
            "eval-mode logits differ from the contract's forward pass on your own weights",
        )
    except (RuntimeError, KeyError) as err:
        forward_ok, why = False, f"state_dict does not follow the contract's attribute names: {str(err)[:300]}"
    return [
        Check(
            "shapes of logits, hidden, raw_outputs, dropped_outputs and init_hidden",
            3,
            shapes_ok,
            f"logits {tuple(logits.shape)}, expected {(T, B, V)}; layer sizes should be {sizes}",
        ),
        Check(
            "weight tying: decoder.weight is encoder.weight (and untied when tie_weights=False)",
            2,
            bool(d["tied"]) and d["untied_decoder_shape"] == [V, cfg["hidden_size"]] and not d["untied_shared"],
            f"tied: {d['tied']}; untied decoder weight shape {d['untied_decoder_shape']}",
        ),
        Check("initialisation: embedding U(-0.1, 0.1), decoder bias 0", 1, init_ok, ""),
        Check("eval-mode forward (deterministic) matches the AWD-LSTM forward on your own weights", 4, forward_ok, why),
        Check(
            "dropout active in training mode",
            2,
            not close(d["train_logits"], logits, 1e-4),
            "training-mode logits equal the eval-mode logits",
        ),
    ]


def judge_ar_tar(d: dict, seed: int) -> list[Check]:
    ref = probe.probe_ar_tar(reference("ar_tar"), seed)
    return [
        Check(
            "activation_regularization = alpha * mean(dropped_last^2)",
            1,
            all(math.isclose(d[k], ref[k], rel_tol=1e-5) for k in ("ar2", "ar05")) and d["ar2_is_tensor"],
            f"got {d['ar2']:.6f} for alpha=2, expected {ref['ar2']:.6f} (a tensor)",
        ),
        Check(
            "temporal_activation_regularization = beta * mean((raw[t+1] - raw[t])^2)",
            1,
            all(math.isclose(d[k], ref[k], rel_tol=1e-5) for k in ("tar1", "tar3")) and d["tar1_is_tensor"],
            f"got {d['tar1']:.6f} for beta=1, expected {ref['tar1']:.6f} (a tensor)",
        ),
    ]


def judge_train_batch(d: dict, seed: int) -> list[Check]:
    ref = probe.probe_train_batch(reference("train_batch"), seed)
    steps = d["steps"]
    one = len(steps) == 1
    grads_ok = (
        one
        and len(steps[0]["grads"]) == len(ref["steps"][0]["grads"])
        and all(close(a, b, 1e-6, 1e-4) for a, b in zip(steps[0]["grads"], ref["steps"][0]["grads"], strict=False))
    )
    return [
        Check(
            "returns the cross-entropy (without AR/TAR) as a float",
            2,
            d["loss_type"] == "float" and math.isclose(d["loss"], ref["loss"], rel_tol=1e-5),
            f"returned {d['loss_type']} {d['loss']:.6f}, expected float {ref['loss']:.6f}",
        ),
        Check(
            "one optimizer step with the gradient of CE + AR(dropped) + TAR(raw), norm clipped",
            4,
            grads_ok,
            f"{len(steps)} optimizer step(s); the gradient differs from CE + AR on dropped_outputs[-1] + "
            "TAR on raw_outputs[-1] with the global norm clipped to 0.25",
        ),
        Check(
            "optimizer.step(lr_scale=seq_len / bptt)",
            1,
            one and math.isclose(steps[0]["lr_scale"], ref["steps"][0]["lr_scale"]),
            f"lr_scale {[s['lr_scale'] for s in steps]}, expected {ref['steps'][0]['lr_scale']}",
        ),
        Check(
            "the new hidden state is returned, detached",
            1,
            not d["hidden_requires_grad"]
            and len(d["hidden"]) == len(ref["hidden"])
            and all(
                close(a, b)
                for h, r in zip(d["hidden"], ref["hidden"], strict=False)
                for a, b in zip(h, r, strict=False)
            ),
            "the hidden state is still attached to the graph or differs",
        ),
    ]


def judge_nt_asgd(d: dict, seed: int) -> list[Check]:
    ref = probe.probe_nt_asgd(reference("nt_asgd"), seed)
    runs, refs = d["runs"], ref["runs"]
    trigger = [
        r["returned"] == e["returned"] and r["averaging"] == e["averaging"] for r, e in zip(runs, refs, strict=False)
    ]
    first_bad = next((i for i, ok in enumerate(trigger) if not ok), None)
    seqs = harness.nt_asgd_sequences(seed)
    why = (
        ""
        if first_bad is None
        else (
            f"nonmono={seqs[first_bad][0]}, losses {[round(x, 3) for x in seqs[first_bad][1]]}: record() returned "
            f"{runs[first_bad]['returned']}, expected {refs[first_bad]['returned']}"
        )
    )
    return [
        Check(
            "record() switches to averaging on exactly the call Algorithm 1 says",
            5,
            len(runs) == len(refs) and all(trigger),
            why,
        ),
        Check(
            "trigger_step counts the steps taken when it switched",
            1,
            all(r["trigger_step"] == e["trigger_step"] for r, e in zip(runs, refs, strict=False)),
            "",
        ),
        Check(
            "step(lr_scale) and the running average of the iterates (averaged() swaps in and restores)",
            3,
            all(
                close(r["averaged"], e["averaged"], 1e-6) and close(r["live"], e["live"], 1e-6)
                for r, e in zip(runs, refs, strict=False)
            ),
            "the parameters or their average differ from the reference",
        ),
        Check(
            "state_dict() holds plain data (loads with weights_only=True)",
            1,
            all(r["state"] == "ok" for r in runs),
            next((r["state"] for r in runs if r["state"] != "ok"), ""),
        ),
    ]


def judge_prediction_generation(d: dict, seed: int) -> list[Check]:
    ref = probe.probe_prediction_generation(reference("prediction_generation"), seed)
    return [
        Check(
            "prediction: eval-mode logits (B, V) for the next word",
            2,
            close(d["prediction"], ref["prediction"]),
            "differs from the model's eval-mode logits at the last timestep",
        ),
        Check("the model's training mode is restored", 1, bool(d["restored"]), ""),
        Check(
            "greedy generation carries the hidden state and takes the arg-max",
            2,
            close(d["greedy"], ref["greedy"], 0, 0),
            f"got {d['greedy'].tolist()}, expected {ref['greedy'].tolist()}",
        ),
        Check("sampling with temperature and the given generator", 2, close(d["sampled"], ref["sampled"], 0, 0), ""),
        Check("top-k sampling", 1, close(d["top_k"], ref["top_k"], 0, 0), ""),
    ]


# --- validation perplexity ---------------------------------------------------------------------------------


class LogitStream:
    """Consumes the probe's validation logits window by window (bounded memory) and sums the NLL."""

    def __init__(self, tokens: torch.Tensor, batch_size: int, bptt: int, expected: dict[int, torch.Tensor]):
        self.data = perplexity.batchify(tokens, batch_size)
        self.windows = perplexity.window_bounds(self.data.size(0), bptt)
        self.expected = expected  # reference logits of secretly chosen windows (the student's weights)
        self.total, self.count, self.received, self.error = 0.0, 0, 0, None
        self.spot_diff = 0.0

    def read(self, stream) -> None:
        try:
            for index, (start, length) in enumerate(self.windows):
                version = np.lib.format.read_magic(stream)
                header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )(stream)
                shape, fortran, dtype = header
                want = (length, self.data.size(1))
                if fortran or dtype != np.dtype("<f4") or len(shape) != 3 or shape[:2] != want:
                    raise ValueError(f"window {index}: logits of shape {shape} {dtype}, expected {want} + (V,)")
                size = int(np.prod(shape)) * 4
                buffer = stream.read(size)
                if buffer is None or len(buffer) != size:
                    raise ValueError(f"window {index}: the stream ended early")
                logits = torch.from_numpy(np.frombuffer(buffer, dtype="<f4").reshape(shape).copy())
                if index in self.expected:
                    self.spot_diff = max(self.spot_diff, float((logits - self.expected[index]).abs().max()))
                targets = self.data[start + 1 : start + 1 + length]
                self.total += perplexity.nll_sum(logits, targets)
                self.count += targets.numel()
                self.received = index + 1
        except (ValueError, OSError, RuntimeError, HW4Error) as err:
            self.error = str(err)[:300]


def spot_windows(n_windows: int, k: int) -> list[int]:
    """Windows the judge recomputes, drawn from the OS's randomness: the sandbox cannot know which ones."""
    rng = random.SystemRandom()
    return sorted(rng.sample(range(n_windows), min(k, n_windows)))


def reference_logits(ckpt: dict | None, tokens: torch.Tensor, cfg: dict) -> tuple[dict, str | None]:
    """Logits of a few secretly chosen windows from the reference LanguageModel on the student's weights.

    Returns ({window: logits}, None), or ({}, why) when the weights do not fit the contract's architecture:
    then the sandbox's logits cannot be verified and the part scores 0 (the contract fixes the parameter names).
    """
    if ckpt is None:
        return {}, "model.pt is missing or cannot be read safely (save it with hw4lib.checkpoint.save_model)"
    try:
        model = checkpoint.build_model(reference("val_perplexity"), ckpt)
    except Exception as err:
        return {}, (
            "the weights in model.pt do not fit the contract's LanguageModel (parameter names and shapes), so "
            f"its logits cannot be verified: {str(err)[:300]}"
        )
    model.eval()
    data = perplexity.batchify(tokens, cfg["batch_size"])
    all_windows = perplexity.window_bounds(data.size(0), cfg["bptt"])
    chosen = spot_windows(len(all_windows), int(cfg["spot_check_windows"]))
    out, hidden = {}, None
    with torch.no_grad():
        for index, (start, length) in enumerate(all_windows[: max(chosen) + 1]):
            logits, hidden = model(data[start : start + length], hidden)[:2]
            if index in chosen:
                out[index] = logits.float()
    return out, None


def judge_val_perplexity(d: dict, stream: LogitStream, config: Config) -> list[Check] | str:
    if stream.error or stream.received != len(stream.windows):
        return f"the model's validation logits were not all produced: {stream.error or 'incomplete'}"
    nll = stream.total / stream.count
    if not math.isfinite(nll):
        return "the model's validation logits are not finite (NaN or infinite weights?): perplexity undefined"
    full, zero = config.thresholds
    ppl = math.exp(nll) if math.isfinite(nll) and nll < 700 else float("inf")
    causal = d.get("causal_max_diff", float("nan"))
    if not (isinstance(causal, float) and causal <= 1e-4):
        return (
            f"the model looks ahead: changing the last 5 tokens of a window changed the logits of earlier "
            f"positions by {causal:.3g}; a language model may only see the past (score 0)"
        )
    if not stream.spot_diff <= config.perplexity["spot_check_atol"]:
        return (
            f"the logits your LanguageModel produced differ (by {stream.spot_diff:.3g}) from the reference "
            "AWD-LSTM on the very weights in model.pt (score 0)"
        )
    share = 1.0 if ppl <= full else 0.0 if ppl >= zero else (zero - ppl) / (zero - full)
    tokens = config.perplexity["tokens"]
    return [
        Check(
            f"validation perplexity {ppl:.2f} on the first {tokens} tokens of {config.perplexity['dataset']} "
            f"valid (full credit <= {full:g}, zero >= {zero:g}; {len(stream.expected)} secretly chosen windows "
            "verified against the reference model on your weights)",
            1,
            share == 1.0,
            f"{share:.0%} of the points",
        ),
        share,
    ]


JUDGES = {
    name[len("judge_") :]: fn
    for name, fn in dict(globals()).items()
    if name.startswith("judge_") and name != "judge_val_perplexity"
}


def judge_part(part: Part, data: dict | None, seed: int, failure: str | None = None) -> Verdict:
    """One part's verdict from its probe data (``None`` with ``failure`` when the probe died)."""
    if data is None:
        return verdict(part, [], failure or "no result")
    if "error" in data:
        trace = data.get("traceback", "")
        return verdict(part, [], f"your code raised an error: {data['error']}\n{trace}".strip())
    try:
        return verdict(part, JUDGES[part.name](data, seed))
    except Exception as err:  # malformed data from the sandbox: the student's outputs had the wrong structure
        return verdict(
            part, [], f"your outputs had an unexpected type or structure ({type(err).__name__}: {str(err)[:200]})"
        )


def val_verdict(
    part: Part, data: dict | None, failure: str | None, stream: LogitStream, unverifiable: str | None, config: Config
) -> Verdict:
    if data is None:
        return verdict(part, [], failure or "no result")
    if "error" in data:
        return verdict(part, [], f"{data['error']}\n{data.get('traceback', '')}".strip())
    if unverifiable:
        return verdict(part, [], unverifiable)
    result = judge_val_perplexity(data, stream, config)
    if isinstance(result, str):
        return verdict(part, [], result)
    check, share = result
    v = verdict(part, [check])
    v.score = round(part.points * share, 2)
    return v


def load_data(path: Path) -> dict | None:
    """A probe data file, loaded without executing anything (weights_only)."""
    if not path.is_file():
        return None
    try:
        data = torch.load(path, weights_only=True)
    except Exception as err:
        return {"error": f"unreadable probe output ({type(err).__name__})"}
    return data if isinstance(data, dict) else {"error": "malformed probe output"}
