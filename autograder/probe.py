"""The probe: runs a student's components on grader-chosen inputs inside the sandbox and records the outputs.

It runs as ``python -m autograder.probe IO_DIR`` in a bubblewrap sandbox that holds only this module,
``autograder/harness.py``, ``hw4lib`` and a copy of the student's submission. It decides nothing: each part's
raw outputs go to ``IO_DIR/out/<part>.pt`` (tensors, numbers, strings and lists only, so the judge can load them
with ``weights_only=True``), and the validation logits stream as ``.npy`` frames over file descriptor 3.
Parts run in order; the first part without a result file is the one running, so the parent can tell which
part hung or crashed and rerun the probe for the parts after it.
"""

from __future__ import annotations

import errno
import io
import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from autograder import harness
from hw4lib import checkpoint, perplexity
from hw4lib.components import load_components
from hw4lib.errors import HW4Error

#: Notebooks (by prefix) each part needs; loading only those keeps a broken notebook from sinking other parts.
STAGES = {
    "data_loader": ("01",),
    "locked_dropout": ("02",),
    "embedded_dropout": ("02",),
    "weight_drop": ("03",),
    "language_model": ("02", "03", "04"),
    "ar_tar": ("05",),
    "train_batch": ("05",),
    "nt_asgd": ("06",),
    "prediction_generation": ("07",),
    "val_perplexity": ("02", "03", "04"),
}
_loaded: dict[tuple[str, ...], object] = {}


def components(sub: Path, part: str):
    stages = STAGES[part]
    if stages not in _loaded:
        _loaded[stages] = load_components(sub, stages=stages)
    return _loaded[stages]


def plain(value):
    """Only plain data leaves the sandbox: a student's Tensor subclass or object would not load safely."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone().as_subclass(torch.Tensor)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return f"<{type(value).__name__}>"


def probe_data_loader(c, seed: int) -> dict:
    dataset = harness.articles(seed, 80, 30, 400)
    loader = c.LanguageModelDataLoader(dataset, batch_size=4, bptt=20, shuffle=True, seed=seed % 1000, std=3.0)
    epochs = []
    for _ in range(3):
        batches = []
        for n, batch in enumerate(loader):
            if n > 5000:
                return {"error": "one epoch yielded more than 5000 batches (it never ends?)"}
            inputs, targets, seq_len = batch
            batches.append([torch.as_tensor(inputs), torch.as_tensor(targets), seq_len])
        epochs.append({"batches": batches, "epoch_after": getattr(loader, "epoch", None)})
    fixed = c.LanguageModelDataLoader(dataset, batch_size=4, bptt=20, shuffle=False, seed=0, std=3.0)
    first = next(iter(fixed))
    return {"epochs": epochs, "len": len(loader), "unshuffled_first": torch.as_tensor(first[0])}


def probe_locked_dropout(c, seed: int) -> dict:
    x = harness.dropout_input(seed, (12, 20, 100))
    torch.manual_seed(seed)
    m = c.LockedDropout(p=0.3)
    m.train()
    y1, y2 = m(x), m(x)
    m.eval()
    y_eval = m(x)
    y_zero = c.LockedDropout(p=0.0).train()(x)
    return {"y1": y1, "y2": y2, "y_eval": y_eval, "y_zero": y_zero}


def embedding(seed: int) -> tuple[nn.Embedding, torch.Tensor]:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        embed = nn.Embedding(400, 8)
    words = torch.randint(0, 400, (40, 20), generator=harness.generator(seed, 5))
    words[0, 0] = 399  # the last word type: a padding_idx=-1 bug freezes its gradient
    return embed, words


def probe_embedded_dropout(c, seed: int) -> dict:
    embed, words = embedding(seed)
    torch.manual_seed(seed + 1)
    out = c.embedded_dropout(embed, words, dropout=0.4)
    out.sum().backward()
    grad = embed.weight.grad
    out_zero = c.embedded_dropout(embed, words, dropout=0.0)
    return {"out": out, "grad": grad, "out_zero": out_zero}


def weight_drop_inputs(seed: int) -> dict:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        lstm = nn.LSTM(8, 10)
    g = harness.generator(seed, 6)
    return {"lstm": lstm, "x": torch.randn(15, 3, 8, generator=g), "h0": torch.randn(1, 3, 10, generator=g),
            "c0": torch.randn(1, 3, 10, generator=g)}


def probe_weight_drop(c, seed: int) -> dict:
    inp = weight_drop_inputs(seed)
    lstm, x, state = inp["lstm"], inp["x"], (inp["h0"], inp["c0"])
    torch.manual_seed(seed)
    wd = c.WeightDrop(lstm, ["weight_hh_l0"], dropout=0.5)
    wd.train()
    out1, (h1, c1) = wd(x, state)
    w1 = wd.module.weight_hh_l0
    raw = getattr(wd.module, "weight_hh_l0_raw", None)
    out1.sum().backward()
    grad = None if raw is None or raw.grad is None else raw.grad
    out2, _ = wd(x, state)
    w2 = wd.module.weight_hh_l0
    wd.eval()
    out_eval, _ = wd(x, state)
    w_eval = wd.module.weight_hh_l0
    return {"out1": out1, "h1": h1, "c1": c1, "w1": w1, "grad": grad, "out2": out2, "w2": w2,
            "out_eval": out_eval, "w_eval": w_eval, "raw_is_parameter": isinstance(raw, nn.Parameter),
            "parameters": [name for name, _ in wd.named_parameters()]}


def probe_language_model(c, seed: int) -> dict:
    cfg = harness.lm_config()
    torch.manual_seed(seed)
    model = c.LanguageModel(**cfg)
    state = {k: v for k, v in model.state_dict().items()}
    tied = model.decoder.weight is model.encoder.weight
    inputs = torch.randint(0, cfg["vocab_size"], (7, 3), generator=harness.generator(seed, 7))
    model.eval()
    logits, hidden, raw, dropped = model(inputs)
    again = model(inputs)[0]
    init = model.init_hidden(3)
    model.train()
    torch.manual_seed(seed + 1)
    train_logits = model(inputs)[0]
    untied = c.LanguageModel(**{**cfg, "tie_weights": False})
    return {"state": state, "tied": tied, "logits": logits, "again": again, "train_logits": train_logits,
            "hidden": [list(h) for h in hidden], "raw": list(raw), "dropped": list(dropped),
            "init_hidden": [list(h) for h in init],
            "untied_decoder_shape": list(untied.decoder.weight.shape),
            "untied_shared": untied.decoder.weight is untied.encoder.weight}


def probe_ar_tar(c, seed: int) -> dict:
    x = torch.randn(9, 4, 6, generator=harness.generator(seed, 8))
    values = {}
    for name, fn, weight in [("ar2", c.activation_regularization, 2.0), ("ar05", c.activation_regularization, 0.5),
                             ("tar1", c.temporal_activation_regularization, 1.0),
                             ("tar3", c.temporal_activation_regularization, 3.0)]:
        v = fn(x, weight)
        values[name] = float(v)
        values[name + "_is_tensor"] = isinstance(v, torch.Tensor)
    return values


def probe_train_batch(c, seed: int) -> dict:
    tb = harness.train_batch_inputs(seed)
    model = harness.TinyLM(seed=tb["model_seed"])
    opt = harness.RecordingOptimizer(model.parameters())
    hidden = model(tb["inputs"])[1]  # still attached to a graph: train_batch must detach it
    loss, new_hidden = c.train_batch(model, opt, tb["inputs"], tb["targets"], hidden, tb["seq_len"], tb["bptt"])
    return {"loss_type": type(loss).__name__, "loss": float(loss), "steps": opt.steps,
            "hidden": [list(h) for h in new_hidden],
            "hidden_requires_grad": any(t.requires_grad for h in new_hidden for t in h)}


def probe_nt_asgd(c, seed: int) -> dict:
    runs = []
    for index, (nonmono, losses) in enumerate(harness.nt_asgd_sequences(seed)):
        g = harness.generator(seed, 100 + index)
        p = nn.Parameter(torch.zeros(5))
        opt = c.NTASGD([p], lr=0.1, nonmono=nonmono)
        returned, averaged, live_after = [], None, None
        for step, loss in enumerate(losses):
            for _ in range(2):
                opt.zero_grad()
                p.grad = torch.randn(5, generator=g)
                opt.step(lr_scale=0.5 if step % 2 else 1.0)
            returned.append(bool(opt.record(loss)))
        with opt.averaged():
            averaged = p.detach().clone()
        live_after = p.detach().clone()
        buffer = io.BytesIO()
        try:
            torch.save(opt.state_dict(), buffer)
            buffer.seek(0)
            torch.load(buffer, weights_only=True)
            state_ok = "ok"
        except Exception as err:  # reported to the student as the reason
            state_ok = f"{type(err).__name__}: {err}"
        runs.append({"returned": returned, "averaging": bool(opt.averaging), "trigger_step": opt.trigger_step,
                     "averaged": averaged, "live": live_after, "state": state_ok})
    return {"runs": runs}


def probe_prediction_generation(c, seed: int) -> dict:
    model = harness.TinyLM(seed=seed % 9973)
    model.train()
    inputs = torch.randint(0, model.vocab_size, (6, 3), generator=harness.generator(seed, 9))
    pred = c.prediction(model, inputs)
    restored = model.training
    greedy = c.generation(model, inputs, 5)
    sampled = c.generation(model, inputs, 5, greedy=False, temperature=0.8,
                           generator=torch.Generator().manual_seed(seed))
    top_k = c.generation(model, inputs, 5, greedy=False, top_k=3, generator=torch.Generator().manual_seed(seed + 1))
    return {"prediction": pred, "restored": restored and model.training, "greedy": greedy, "sampled": sampled,
            "top_k": top_k}


def probe_val_perplexity(c, seed: int, request: dict, io_dir: Path) -> dict:
    tokens = torch.load(io_dir / "valid.pt", weights_only=True)
    (io_dir / "valid.pt").unlink()
    try:
        ckpt = checkpoint.load_checkpoint(request["checkpoint"])
    except HW4Error as err:
        return {"error": f"model.pt: {err}".replace(str(request["checkpoint"]), "model.pt")}
    model = checkpoint.build_model(c, ckpt)
    model.eval()
    data = perplexity.batchify(tokens, request["batch_size"])
    out = os.fdopen(int(request["logits_fd"]), "wb", buffering=1 << 20)
    hidden = None
    with torch.no_grad():
        for start, length in perplexity.window_bounds(data.size(0), request["bptt"]):
            logits, hidden = model(data[start:start + length], hidden)[:2]
            array = np.ascontiguousarray(logits.float().numpy(), dtype="<f4")
            np.lib.format.write_array_header_1_0(out, np.lib.format.header_data_from_array_1_0(array))
            out.write(array.tobytes())  # a pipe: ndarray.tofile needs a seekable file
        out.flush()
        out.close()
        probe_in = data[:20, :2].clone()
        changed = probe_in.clone()
        changed[15:] = (changed[15:] + 7) % int(ckpt["model_config"]["vocab_size"])
        first = model(probe_in)[0][:15]
        second = model(changed)[0][:15]
    return {"causal_max_diff": float((first - second).abs().max()) if first.numel() else float("nan")}


def run_part(part: str, sub: Path, seed: int, request: dict, io_dir: Path) -> dict:
    try:
        c = components(sub, part)
        if part == "val_perplexity":
            return probe_val_perplexity(c, seed, request, io_dir)
        return globals()[f"probe_{part}"](c, seed)
    except BaseException as err:  # noqa: B036 - a student's SystemExit/KeyboardInterrupt is this part's failure
        if isinstance(err, OSError) and err.errno == errno.EFBIG:
            return {"error": "your code printed more output than the limit allows (it was stopped there)"}
        frames = [line for line in traceback.format_exception(err) if "probe.py" not in line]
        return {"error": f"{type(err).__name__}: {err}", "traceback": "".join(frames[-6:])[-3000:]}


def main(io_dir: str) -> int:
    io_dir = Path(io_dir)
    request = json.loads((io_dir / "request.json").read_text())
    torch.set_num_threads(int(request.get("threads", 1)))
    out = io_dir / "out"
    for part in request["parts"]:
        started = time.monotonic()
        result = plain(run_part(part, Path(request["submission"]), int(request["seed"]), request, io_dir))
        tmp = out / f".{part}.tmp"
        torch.save(result, tmp)
        tmp.rename(out / f"{part}.pt")
        try:
            print(f"probe: {part} {time.monotonic() - started:.2f} s", flush=True)
        except OSError:  # the student's output filled the log (RLIMIT_FSIZE): keep going without it
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
