"""Stage 4, ``LanguageModel``: structure, tying, shapes, and every dropout where the model uses it
(docs/components.md, stage 4).

Everything is judged by values, from what the contract makes the model expose, never by how a submodule is called
(no hooks): ``raw_outputs`` / ``dropped_outputs`` give each layer's output before and after its locked dropout;
the logits are recomputed from ``dropped_outputs[-1]`` and ``decoder.weight`` / ``decoder.bias`` (so
``self.decoder(x)``, the decoder on the flattened ``(T*B, H)`` output, or ``F.linear`` all pass); what a layer
received is read off its own output, by giving every layer's LSTM weights under which its output reveals its input
(``_reveal``); and each layer's weight drop is recomputed from ``rnns[l].module.weight_hh_l0``, the weight its
forward used. So a model whose dropouts are ``nn.Dropout`` (a new mask at every timestep), or that drops with the
wrong rate or in the wrong place, shows it.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn

from hw4lib.properties.core import (
    Part,
    as_mask_problems,
    attempt,
    close,
    failed,
    generator,
    knock_on,
    locked_mask_problems,
    rate_ok,
    shape_of,
)
from hw4lib.properties.weight_drop import reassigned_parameter

SMALL = {"vocab_size": 37, "embed_size": 10, "hidden_size": 14, "num_layers": 3, "dropout": 0.4,
         "dropouth": 0.3, "dropouti": 0.5, "dropoute": 0.1, "wdrop": 0.5, "tie_weights": True}
# Distinct rates, so a dropout applied in the wrong place (or with the wrong argument) shows in its rate.
MASKS = {"vocab_size": 2000, "embed_size": 48, "hidden_size": 64, "num_layers": 3, "dropout": 0.2,
         "dropouth": 0.35, "dropouti": 0.6, "dropoute": 0.0, "wdrop": 0.5, "tie_weights": True}
EMBED = {**MASKS, "dropout": 0.0, "dropouth": 0.0, "dropouti": 0.0, "dropoute": 0.4}
WDROP = {**MASKS, "dropout": 0.0, "dropouth": 0.0, "dropouti": 0.0, "dropoute": 0.0}  # only the weight drop
T, B = 7, 3
TM, BM = 12, 32
HEAD = 40  # the logits' first words are enough to see that they are the decoder's output


def sizes(cfg: dict) -> list[int]:
    """Layer input/output sizes: E -> H -> ... -> H -> (E if tied else H)."""
    last = cfg["embed_size"] if cfg["tie_weights"] else cfg["hidden_size"]
    return [cfg["embed_size"]] + [cfg["hidden_size"]] * (cfg["num_layers"] - 1) + [last]


def parameter_count(cfg: dict) -> int:
    s = sizes(cfg)
    lstm = sum(4 * o * (i + o) + 8 * o for i, o in zip(s[:-1], s[1:], strict=True))
    V, E = cfg["vocab_size"], cfg["embed_size"]
    return V * E + lstm + V + (0 if cfg["tie_weights"] else V * s[-1])


def inputs(seed: int) -> dict:
    gen = generator(seed, 31)
    hidden = [(torch.randn(1, B, s, generator=gen) * 0.5, torch.randn(1, B, s, generator=gen) * 0.5)
              for s in sizes(SMALL)[1:]]
    # An embedding without small entries (|w| in [0.05, 0.1]), so input / embedding reveals a dropout mask.
    signs = torch.randint(0, 2, (MASKS["vocab_size"], MASKS["embed_size"]), generator=gen) * 2 - 1
    embedding = signs * (0.05 + 0.05 * torch.rand(MASKS["vocab_size"], MASKS["embed_size"], generator=gen))
    return {"words": torch.randint(0, SMALL["vocab_size"], (T, B), generator=gen), "hidden": hidden,
            "mask_words": torch.randint(0, MASKS["vocab_size"], (TM, BM), generator=gen), "embedding": embedding}


def _structure(model: nn.Module, cfg: dict) -> dict:
    rnns = getattr(model, "rnns", None)
    layers = []
    for rnn in rnns if isinstance(rnns, nn.ModuleList) else []:
        lstm = getattr(rnn, "module", None)
        layers.append({"type": type(rnn).__name__, "lstm": isinstance(lstm, nn.LSTM),
                       "in": getattr(lstm, "input_size", None), "out": getattr(lstm, "hidden_size", None)})
    decoder, encoder = getattr(model, "decoder", None), getattr(model, "encoder", None)
    return {
        "types": {name: type(getattr(model, name, None)).__name__ for name in
                  ("encoder", "rnns", "decoder", "idrop", "hdrop", "odrop")},
        "is": {"encoder": isinstance(encoder, nn.Embedding), "rnns": isinstance(rnns, nn.ModuleList),
               "decoder": isinstance(decoder, nn.Linear)},
        "layers": layers,
        "encoder_shape": list(encoder.weight.shape) if isinstance(encoder, nn.Embedding) else None,
        "decoder_shape": list(decoder.weight.shape) if isinstance(decoder, nn.Linear) else None,
        "tied": isinstance(decoder, nn.Linear) and isinstance(encoder, nn.Embedding)
        and decoder.weight is encoder.weight,
        "n_params": sum(p.numel() for p in model.parameters()),
    }


GATE = 30.0  # a gate bias that opens (sigmoid = 1) or shuts (sigmoid = 0) a gate in float32
LAYOUT = ("cannot be checked until the model has the contract's layout: encoder (V, E), rnns[l].module an nn.LSTM "
          "with weight_ih_l0, bias_ih_l0, bias_hh_l0 and the Parameter weight_hh_l0_raw (see above)")


def _reveal(model: nn.Module, embedding: torch.Tensor) -> None:
    """Gives the model weights under which each layer's raw output reveals what the layer received.

    Every layer's LSTM gets W_hh = 0 (so its dropped copy is 0 too), the input and output gates open, the forget
    gate shut, and a cell candidate g = x on the first min(in, out) units: then h_t = tanh(tanh(x_t)) unit by unit,
    and ``_revealed_input`` inverts it. Only names the contract gives are used (``encoder``,
    ``rnns[l].module.weight_ih_l0``, its biases, and ``weight_hh_l0_raw``).
    """
    with torch.no_grad():
        model.encoder.weight.copy_(embedding)
        for rnn in model.rnns:
            lstm = rnn.module
            n_in, n_out = lstm.input_size, lstm.hidden_size
            n = min(n_in, n_out)
            weight = torch.zeros(4 * n_out, n_in)
            weight[2 * n_out: 2 * n_out + n, :n] = torch.eye(n)  # gates in PyTorch's order: i, f, g, o
            bias = torch.zeros(4 * n_out)
            bias[:n_out], bias[n_out: 2 * n_out], bias[3 * n_out:] = GATE, -GATE, GATE
            lstm.weight_ih_l0.copy_(weight)
            lstm.bias_ih_l0.copy_(bias)
            lstm.bias_hh_l0.zero_()
            lstm.weight_hh_l0_raw.zero_()


def _revealed_input(raw: torch.Tensor, n_in: int) -> torch.Tensor:
    """What a revealing layer (``_reveal``) received, from its raw output: its first min(in, out) features."""
    n = min(n_in, raw.shape[-1])
    return torch.atanh(torch.atanh(raw[..., :n].double()))


def _training_forward(model: nn.Module, words: torch.Tensor) -> dict:
    """A training-mode forward and what the contract lets us read from it, all detached."""
    model.train()
    logits, _, raw, dropped = model(words)
    state = {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("decoder")}
    decoder = model.decoder
    return {"logits": logits[..., :HEAD].detach().clone(), "raw": [r.detach().clone() for r in raw],
            "dropped": [d.detach().clone() for d in dropped], "state": state,
            "decoder_weight": decoder.weight[:HEAD].detach().clone(),
            "decoder_bias": None if decoder.bias is None else decoder.bias[:HEAD].detach().clone(),
            "used_hh": [getattr(rnn.module, "weight_hh_l0", None) for rnn in model.rnns],
            "sizes": [(rnn.module.input_size, rnn.module.hidden_size) for rnn in model.rnns]}


def _revealed_forward(model: nn.Module, inp: dict) -> dict:
    """A training-mode forward of a revealing model (``_reveal``): what each layer received, and the outputs."""
    try:
        _reveal(model, inp["embedding"])
    except (AttributeError, RuntimeError, TypeError) as err:
        raise RuntimeError(f"{LAYOUT} ({type(err).__name__}: {err})") from None
    seen = _training_forward(model, inp["mask_words"])
    seen["received"] = [_revealed_input(r, n_in) for r, (n_in, _) in zip(seen["raw"], seen["sizes"], strict=False)]
    seen["embedding_after"] = seen["state"].get("encoder.weight")
    return seen


def observe(c: Any, inp: dict) -> dict:
    LM = c.LanguageModel
    model = LM(**SMALL)
    obs: dict = {"structure": _structure(model, SMALL),
                 "untied": attempt(lambda: _structure(LM(**{**SMALL, "tie_weights": False}),
                                                      {**SMALL, "tie_weights": False})),
                 "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
    words, hidden = inp["words"], inp["hidden"]

    def evaluation() -> dict:
        model.eval()
        with torch.no_grad():
            logits, new_hidden, raw, dropped = model(words)
            again = model(words)[0]
            given = model(words, [tuple(t.clone() for t in h) for h in hidden])
            first = model(words[:4])
            second = model(words[4:], first[1])
        return {"logits": logits, "hidden": [list(h) for h in new_hidden], "raw": list(raw),
                "dropped": list(dropped), "again": again, "given_logits": given[0],
                "given_hidden": [list(h) for h in given[1]], "halves": torch.cat([first[0], second[0]])}

    obs["eval"] = attempt(evaluation)
    obs["init_hidden"] = attempt(lambda: [list(h) for h in model.init_hidden(B)])
    obs["init_hidden_meta"] = attempt(lambda: [[str(t.device) for t in h]
                                               for h in copy.deepcopy(model).to("meta").init_hidden(B)])
    obs["train_logits"] = attempt(lambda: model.train()(words)[0].detach())

    masks = LM(**MASKS)
    obs["init"] = {"encoder": masks.encoder.weight.detach().clone() if isinstance(getattr(masks, "encoder", None),
                                                                                 nn.Embedding) else None,
                   "decoder_bias": getattr(getattr(masks, "decoder", None), "bias", None)}
    obs["masks"] = attempt(lambda: _training_forward(masks, inp["mask_words"]))

    def gradients() -> list[str]:
        masks.zero_grad(set_to_none=True)
        masks.train()
        masks(inp["mask_words"])[0].sum().backward()
        return [name for name, p in masks.named_parameters() if p.grad is None]

    obs["no_grad"] = attempt(gradients)
    obs["revealed"] = attempt(lambda: _revealed_forward(LM(**MASKS), inp))
    obs["wdrop"] = attempt(lambda: _training_forward(LM(**WDROP), inp["mask_words"]))
    embed = LM(**EMBED)
    obs["embed"] = attempt(lambda: _revealed_forward(embed, inp))

    def embed_eval() -> Any:
        embed.eval()
        with torch.no_grad():
            embed(inp["mask_words"])
        return None

    obs["embed_eval_ok"] = attempt(embed_eval)
    return obs


PART = Part("language_model", ("LanguageModel",), inputs, observe)


@PART.prop("encoder nn.Embedding(V, E); rnns an nn.ModuleList of WeightDrop-wrapped one-layer nn.LSTMs with sizes "
           "E -> H -> ... -> (E if tied else H); decoder nn.Linear; the exact parameter count")
def structure(inp: dict, obs: dict) -> list[str]:
    problems = []
    for name, cfg, s in (("tie_weights=True", SMALL, obs["structure"]),
                         ("tie_weights=False", {**SMALL, "tie_weights": False}, obs["untied"])):
        if failed(s):
            problems.append(f"{name}: building the model raised {failed(s)}")
            continue
        for attr, kind in (("encoder", "nn.Embedding"), ("rnns", "nn.ModuleList"), ("decoder", "nn.Linear")):
            if not s["is"][attr]:
                problems.append(f"model.{attr} must be an {kind} (found {s['types'][attr]})")
        if problems:
            return problems
        want = sizes(cfg)
        if len(s["layers"]) != cfg["num_layers"]:
            return [f"model.rnns has {len(s['layers'])} layers; expected num_layers = {cfg['num_layers']}"]
        for layer, info in enumerate(s["layers"]):
            if not info["lstm"]:
                problems.append(f"model.rnns[{layer}] must be a WeightDrop wrapping an nn.LSTM (found "
                                f"{info['type']})")
            elif (info["in"], info["out"]) != (want[layer], want[layer + 1]):
                problems.append(f"{name}: layer {layer} maps {info['in']} -> {info['out']}; expected "
                                f"{want[layer]} -> {want[layer + 1]} (E -> H -> ... -> "
                                f"{'E' if cfg['tie_weights'] else 'H'})")
        if problems:
            return problems
        if s["n_params"] != parameter_count(cfg):
            problems.append(f"{name}: the model has {s['n_params']:,} parameters; expected "
                            f"{parameter_count(cfg):,} (V={cfg['vocab_size']}, E={cfg['embed_size']}, "
                            f"H={cfg['hidden_size']}, {cfg['num_layers']} layers)")
    return problems


@PART.prop("weight tying: with tie_weights, decoder.weight is encoder.weight; without, the decoder has its own "
           "(V, H) weight")
def tied(inp: dict, obs: dict) -> list[str]:
    s, u = obs["structure"], obs["untied"]
    problems = []
    if not s["tied"]:
        problems.append("with tie_weights=True, model.decoder.weight must be the very same Parameter as "
                        "model.encoder.weight (self.decoder.weight = self.encoder.weight)")
    if failed(u):
        problems.append(f"with tie_weights=False the model could not be built: {failed(u)}")
    elif u["tied"] or u["decoder_shape"] != [SMALL["vocab_size"], SMALL["hidden_size"]]:
        problems.append(f"with tie_weights=False the decoder must have its own weight of shape (V, H) = "
                        f"({SMALL['vocab_size']}, {SMALL['hidden_size']}); found {u['decoder_shape']}"
                        + (", shared with the encoder" if u["tied"] else ""))
    return problems


@PART.prop("initialisation: embedding U(-0.1, 0.1), decoder bias 0")
def initialised(inp: dict, obs: dict) -> list[str]:
    enc, bias = obs["init"]["encoder"], obs["init"]["decoder_bias"]
    problems = []
    if not isinstance(enc, torch.Tensor) or float(enc.abs().max()) > 0.1 + 1e-6 or not 0.05 < float(enc.std()) < 0.065:
        problems.append("initialise the embedding uniformly in [-0.1, 0.1] (nn.init.uniform_(w, -0.1, 0.1))")
    if not isinstance(bias, torch.Tensor) or float(bias.detach().abs().max()) != 0:
        problems.append("initialise the decoder bias to zeros")
    return problems


@PART.prop("init_hidden(B): one (h, c) per layer, each (1, B, H_l) zeros on the model's device")
def initial_hidden(inp: dict, obs: dict) -> list[str]:
    init = obs["init_hidden"]
    if failed(init):
        return [f"init_hidden raised {failed(init)}"]
    want = sizes(SMALL)[1:]
    if len(init) != len(want):
        return [f"init_hidden gave {len(init)} entries; expected one (h, c) per layer ({len(want)})"]
    for layer, (pair, s) in enumerate(zip(init, want, strict=True)):
        if len(pair) != 2 or any(not isinstance(t, torch.Tensor) or t.shape != (1, B, s) for t in pair):
            return [f"init_hidden[{layer}] is {[shape_of(t) for t in pair]}; expected two (1, B, {s}) tensors"]
        if any(float(t.abs().max()) != 0 for t in pair):
            return [f"init_hidden[{layer}] is not all zeros"]
    meta = obs["init_hidden_meta"]
    if failed(meta):
        return [f"after model.to(device), init_hidden failed: {failed(meta)}"]
    if any(d != "meta" for pair in meta for d in pair):
        return ["init_hidden makes its tensors on the CPU whatever device the model is on; make them like the "
                "model's weights, e.g. self.encoder.weight.new_zeros(1, batch_size, size)"]
    return []


@PART.prop("forward(inputs, hidden=None) returns logits (T, B, V), one new (h, c) per layer, and raw_outputs / "
           "dropped_outputs, one (T, B, H_l) per layer")
def forward_shapes(inp: dict, obs: dict) -> list[str]:
    e = obs["eval"]
    if failed(e):
        return [f"an eval-mode forward raised {failed(e)}{reassigned_parameter(failed(e))}"]
    want, V = sizes(SMALL)[1:], SMALL["vocab_size"]
    problems = []
    if not isinstance(e["logits"], torch.Tensor) or e["logits"].shape != (T, B, V):
        problems.append(f"logits are {shape_of(e['logits'])}; expected (T, B, V) = ({T}, {B}, {V})")
    if len(e["hidden"]) != len(want) or any(
            len(h) != 2 or any(not isinstance(t, torch.Tensor) or t.shape != (1, B, s) for t in h)
            for h, s in zip(e["hidden"], want, strict=False)):
        problems.append(f"hidden must hold one (h, c) pair per layer, shapes {[(1, B, s) for s in want]}")
    for name in ("raw", "dropped"):
        shapes = [tuple(o.shape) if isinstance(o, torch.Tensor) else None for o in e[name]]
        if shapes != [(T, B, s) for s in want]:
            problems.append(f"{name}_outputs have shapes {shapes}; expected {[(T, B, s) for s in want]}")
    return problems


@PART.prop("eval mode is deterministic with no dropout (dropped_outputs equal raw_outputs); the hidden state given "
           "is used and the new one carries the sequence on")
def eval_and_hidden(inp: dict, obs: dict) -> list[str]:
    e = obs["eval"]
    if failed(e) or forward_shapes(inp, obs):
        return [knock_on("cannot be checked until forward returns the right shapes (see above)")]
    problems = []
    if not close(e["again"], e["logits"], 0, 0):
        problems.append("in eval mode two forwards of the same input differ: every dropout must be off in eval "
                        "(embedding dropout included: pass dropoute only when self.training)")
    if any(not close(r, d, 0, 0) for r, d in zip(e["raw"], e["dropped"], strict=True)):
        problems.append("in eval mode dropped_outputs differ from raw_outputs")
    if close(e["given_logits"], e["logits"], 1e-6, 1e-6):
        problems.append("forward ignores the hidden state it is given: pass hidden[layer] to each layer's LSTM")
    if not close(e["halves"], e["logits"], 1e-4, 1e-4):
        problems.append("running the sequence in two halves (carrying hidden) differs from one pass: return each "
                        "layer's new (h, c), in layer order")
    return problems


def _pass(obs: dict, key: str) -> tuple[str | None, dict]:
    m = obs[key]
    if failed(m):
        if LAYOUT in failed(m):  # the structure (or the weight drop) that names the cause failed
            return knock_on(failed(m).split(": ", 1)[-1]), {}
        return f"a training-mode forward raised {failed(m)}", {}
    L = MASKS["num_layers"]
    if len(m["raw"]) != L or len(m["dropped"]) != L:
        return knock_on("cannot be checked until raw_outputs and dropped_outputs hold one tensor per layer "
                        "(see above)"), {}
    return None, m


def _in_place(obs: dict) -> list[str]:
    """A locked dropout that changed its input in place: in training (every rate > 0 in MASKS) a layer's raw output
    came back equal to its dropped output."""
    m = obs["masks"]
    if failed(m):
        return []
    for layer, (raw, dropped) in enumerate(zip(m["raw"], m["dropped"], strict=False)):
        if isinstance(raw, torch.Tensor) and isinstance(dropped, torch.Tensor) and torch.equal(raw, dropped):
            return [f"in training, raw_outputs[{layer}] is the very same as dropped_outputs[{layer}]: the locked "
                    "dropout changed its input in place (x.mul_(mask)), so raw_outputs lost the values before "
                    "dropout that TAR is computed on. LockedDropout must return a new tensor, x * mask"]
    return []


@PART.prop("embedding dropout (dropoute) drops whole word types in training, survivors scaled by 1/(1-p)")
def embedding_dropout_inside(inp: dict, obs: dict) -> list[str]:
    error, m = _pass(obs, "embed")
    if error:
        return [error]
    if failed(obs["embed_eval_ok"]):
        message = f"an eval-mode forward raised {failed(obs['embed_eval_ok'])}"
        return [knock_on(message) if failed(obs["eval"]) else message]
    words, p, embedding = inp["mask_words"], EMBED["dropoute"], inp["embedding"].double()
    after = m["embedding_after"]
    if isinstance(after, torch.Tensor) and after.shape == embedding.shape and not close(after, embedding, 1e-7, 0):
        return ["a training forward changed model.encoder.weight: embedding dropout must build a dropped copy of "
                "the weight (weight * mask) and leave the Parameter as it is"]
    ratio = m["received"][0] / embedding[words]
    per_position = ratio.mean(-1)
    if bool((ratio - per_position.unsqueeze(-1)).abs().max() > 1e-4):
        return ["with only dropoute > 0, the first LSTM's input is not whole embedding rows kept or dropped: "
                "embedding dropout drops word types (embedded_dropout(self.encoder, inputs, dropoute))"]
    fates = {}
    for word in words.unique().tolist():
        values = per_position[words == word]
        if float((values - values[0]).abs().max()) > 1e-4:
            return [f"inside the model, word id {word} is dropped at some positions and kept at others: use "
                    "embedded_dropout (one mask entry per word type), not a dropout on the looked-up vectors"]
        fates[word] = float(values[0])
    values = torch.tensor(list(fates.values()), dtype=torch.float64)
    if bool((values - 1).abs().max() < 1e-6):
        return ["with dropoute = 0.4 no word was dropped in training mode: call embedded_dropout(self.encoder, "
                "inputs, self.dropoute if self.training else 0)"]
    problems = as_mask_problems(values, p, "embedding dropout")
    rate = float((values.abs() < 1e-6).double().mean())
    if not problems and not rate_ok(rate, p, len(values)):
        problems.append(f"inside the model {rate:.1%} of the word types were dropped; expected dropoute = {p:.0%}")
    return problems


@PART.prop("input dropout: a locked mask with rate dropouti on the embedded input (one mask per sequence, reused at "
           "every timestep)")
def input_dropout_locked(inp: dict, obs: dict) -> list[str]:
    error, m = _pass(obs, "revealed")
    if error:
        return [error]
    if _in_place(obs):  # the raw output that reveals the input was itself changed
        return [knock_on("cannot be checked while the locked dropout changes raw_outputs in place (see above)")]
    emb = inp["embedding"].double()[inp["mask_words"]]
    return locked_mask_problems(emb, m["received"][0], MASKS["dropouti"],
                                "input dropout (what model.rnns[0] receives / the embedding)")


@PART.prop("between layers: a locked mask with rate dropouth on each lower layer's output, and the next layer reads "
           "that dropped output")
def hidden_dropout_locked(inp: dict, obs: dict) -> list[str]:
    error, m = _pass(obs, "masks")
    if not error:
        error, seen = _pass(obs, "revealed")
    if error:
        return [error]
    if _in_place(obs):
        return _in_place(obs)
    L = MASKS["num_layers"]
    for layer in range(L - 1):
        got = seen["received"][layer + 1]
        if not close(got, seen["dropped"][layer][..., : got.shape[-1]], 1e-5, 1e-4):
            given = ("raw_outputs" if close(got, seen["raw"][layer][..., : got.shape[-1]], 1e-5, 1e-4)
                     else "something else")
            return [f"model.rnns[{layer + 1}] receives {given}, not dropped_outputs[{layer}]: feed each layer the "
                    "locked-dropped output of the layer below"]
        found = locked_mask_problems(
            m["raw"][layer], m["dropped"][layer], MASKS["dropouth"],
            f"hidden dropout after layer {layer} (dropped_outputs[{layer}] / raw_outputs[{layer}])")
        if found:
            return found
    return []


@PART.prop("output dropout: a locked mask with rate dropout on the last layer's output, which is what the decoder "
           "reads: logits = decoder.weight @ dropped_outputs[-1] + decoder.bias")
def output_dropout_locked(inp: dict, obs: dict) -> list[str]:
    error, m = _pass(obs, "masks")
    if error:
        return [error]

    def decoded(x: torch.Tensor) -> torch.Tensor:
        out = x.double() @ m["decoder_weight"].double().t()
        return out if m["decoder_bias"] is None else out + m["decoder_bias"].double()

    if not close(m["logits"], decoded(m["dropped"][-1])):
        if close(m["logits"], decoded(m["raw"][-1])):
            return ["the logits are the decoder applied to raw_outputs[-1]: apply it to the output after locked "
                    "dropout, dropped_outputs[-1]"]
        return ["the logits are not the decoder applied to dropped_outputs[-1]: logits[t, b] must be decoder.weight "
                "@ dropped_outputs[-1][t, b] + decoder.bias"]
    return _in_place(obs) or locked_mask_problems(
        m["raw"][-1], m["dropped"][-1], MASKS["dropout"], "output dropout (dropped_outputs[-1] / raw_outputs[-1])")


@PART.prop("every layer's LSTM runs with one DropConnect mask on W_hh (rate wdrop) over the whole sequence")
def weight_drop_in_every_layer(inp: dict, obs: dict) -> list[str]:
    # Only the weight drop is on here: layer 0 reads the embedding, layer l the output of layer l - 1.
    error, m = _pass(obs, "wdrop")
    if error:
        return [error]
    s = sizes(WDROP)
    for layer in range(WDROP["num_layers"]):
        used = m["used_hh"][layer]
        raw = m["state"].get(f"rnns.{layer}.module.weight_hh_l0_raw")
        if not isinstance(used, torch.Tensor) or raw is None or used.shape != raw.shape:
            return [f"layer {layer}: rnns[{layer}].module.weight_hh_l0 does not hold the weight its forward used "
                    "(use the WeightDrop of stage 3 for every layer)"]
        found = as_mask_problems(used.double() / raw.double(), WDROP["wdrop"], f"layer {layer}'s W_hh")
        rate = float((used == 0).double().mean())
        if found or not rate_ok(rate, WDROP["wdrop"], used.numel()):
            return found or [f"layer {layer}: {rate:.1%} of W_hh was dropped; expected wdrop = {WDROP['wdrop']:.0%}"]
        lstm = nn.LSTM(s[layer], s[layer + 1])
        state = {k.split("module.")[-1]: v for k, v in m["state"].items() if k.startswith(f"rnns.{layer}.module.")}
        state.pop("weight_hh_l0_raw", None)
        state["weight_hh_l0"] = used
        try:
            lstm.load_state_dict(state)
        except RuntimeError as err:
            return [f"layer {layer}'s LSTM weights do not fit an nn.LSTM: {str(err)[:200]}"]
        given = m["state"]["encoder.weight"][inp["mask_words"]] if layer == 0 else m["dropped"][layer - 1]
        with torch.no_grad():
            out = lstm(given.float())[0]
        if not close(out, m["raw"][layer], 1e-5, 1e-4):
            return [f"layer {layer}: raw_outputs[{layer}] differs from its LSTM run over the whole sequence with the "
                    "dropped W_hh it reports: one mask per forward pass, the wrapped LSTM called once"]
    return []


@PART.prop("gradients reach every parameter in training")
def gradient_everywhere(inp: dict, obs: dict) -> list[str]:
    missing = obs["no_grad"]
    if failed(missing):
        message = f"backward through a training forward failed: {failed(missing)}"
        if _in_place(obs) and "modified by an inplace operation" in failed(missing):
            return [knock_on(message)]  # the in-place locked dropout, named above, took what backward needs
        return [message]
    if missing:
        return [f"no gradient reaches {', '.join(missing[:3])}: every parameter must be used in forward"]
    return []
