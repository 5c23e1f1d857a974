"""Training throughput of the regularized AWD-LSTM against a plain ``nn.LSTM`` stack of the same sizes.

Both are trained on the same random batches in alternating rounds inside one process, so a noisy, shared
machine slows both alike; the report is the median of the per-round ratios. The AWD-LSTM step is the
components' own ``train_batch`` (embedding, locked and weight dropout, AR/TAR, clipping, NT-ASGD); the plain
step is cross-entropy, backward, the same clipping and a plain SGD step.

    python benchmarks/throughput.py --preset cpu --impl solutions
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hw4lib.components import load_components  # noqa: E402
from hw4lib.training import get_preset  # noqa: E402


class PlainStack(nn.Module):
    """Embedding, one ``nn.LSTM`` per layer with the AWD-LSTM's sizes, tied decoder; no regularization."""

    def __init__(self, vocab_size: int, embed_size: int, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        sizes = [embed_size] + [hidden_size] * (num_layers - 1) + [embed_size]
        self.encoder = nn.Embedding(vocab_size, embed_size)
        self.rnns = nn.ModuleList(nn.LSTM(sizes[i], sizes[i + 1]) for i in range(num_layers))
        self.decoder = nn.Linear(embed_size, vocab_size)
        self.decoder.weight = self.encoder.weight

    def forward(self, x: torch.Tensor, hidden=None):
        out, new_hidden = self.encoder(x), []
        for i, rnn in enumerate(self.rnns):
            out, h = rnn(out, None if hidden is None else hidden[i])
            new_hidden.append(tuple(t.detach() for t in h))
        return self.decoder(out), new_hidden


def measure(preset: str, impl: str, vocab_size: int, steps: int, rounds: int, batch_size: int | None,
            bptt: int | None, device: str) -> dict:
    cfg = get_preset(preset, batch_size=batch_size, bptt=bptt)
    dev = torch.device(device)
    C = load_components(impl)
    torch.manual_seed(0)
    awd = C.LanguageModel(**cfg.model_config(vocab_size)).to(dev)
    awd_opt = C.NTASGD(awd.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    plain = PlainStack(vocab_size, cfg.embed_size, cfg.hidden_size, cfg.num_layers).to(dev)
    plain_opt = torch.optim.SGD(plain.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, vocab_size, (cfg.bptt, cfg.batch_size), generator=gen).to(dev)
    y = torch.randint(0, vocab_size, (cfg.bptt, cfg.batch_size), generator=gen).to(dev)
    state = {"awd": None, "plain": None}

    def awd_step() -> None:
        _, state["awd"] = C.train_batch(awd, awd_opt, x, y, state["awd"], cfg.bptt, cfg.bptt, alpha=cfg.alpha,
                                        beta=cfg.beta, clip=cfg.clip)

    def plain_step() -> None:
        plain_opt.zero_grad()
        logits, state["plain"] = plain(x, state["plain"])
        F.cross_entropy(logits.reshape(-1, vocab_size), y.reshape(-1)).backward()
        nn.utils.clip_grad_norm_(plain.parameters(), cfg.clip)
        plain_opt.step()

    def timed(step) -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    awd_step(), plain_step()  # warm-up: allocator and kernel selection
    tokens = steps * cfg.bptt * cfg.batch_size
    rows = []
    for r in range(rounds):
        # Alternate which goes first, so a slow spell of the machine does not favour one side.
        if r % 2 == 0:
            t_awd, t_plain = timed(awd_step), timed(plain_step)
        else:
            t_plain, t_awd = timed(plain_step), timed(awd_step)
        rows.append({"awd_tok_s": tokens / t_awd, "plain_tok_s": tokens / t_plain, "ratio": t_plain / t_awd})
    return {
        "preset": preset,
        "impl": impl,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "sizes": {"vocab": vocab_size, "embed": cfg.embed_size, "hidden": cfg.hidden_size, "layers": cfg.num_layers,
                  "batch": cfg.batch_size, "bptt": cfg.bptt},
        "rounds": rows,
        "median_ratio": statistics.median(r["ratio"] for r in rows),
        "median_awd_tok_s": statistics.median(r["awd_tok_s"] for r in rows),
        "median_plain_tok_s": statistics.median(r["plain_tok_s"] for r in rows),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--impl", default="solutions")
    p.add_argument("--vocab-size", type=int, default=33278)
    p.add_argument("--steps", type=int, default=5, help="training steps per side and round")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--bptt", type=int)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", type=Path, help="also write the report here")
    args = p.parse_args(argv)
    report = measure(args.preset, args.impl, args.vocab_size, args.steps, args.rounds, args.batch_size, args.bptt,
                     args.device)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    print(f"AWD-LSTM / plain nn.LSTM throughput: {report['median_ratio']:.3f} "
          f"({report['median_awd_tok_s']:.0f} vs {report['median_plain_tok_s']:.0f} tokens/s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
