"""An LSTM language model with no regularization at all, on a slice of Penn Treebank: it over-fits.

The picture that motivates the whole course (stage 0 plots it): training perplexity keeps falling while
validation perplexity turns around and climbs. No dropout of any kind, no AR/TAR, no weight decay, no weight
tying, plain SGD at a constant learning rate. After every epoch both perplexities are measured the same way
(eval mode, hidden state carried across windows, on ``--eval-tokens`` tokens of each split), so the gap between
the curves is over-fitting and not a difference of measurement.

    python benchmarks/overfit_unregularized.py            # writes docs/data/overfit_unregularized.csv

The committed CSV was made by one run of this command; its header comment records the settings and runtime.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hw4lib import data  # noqa: E402


class PlainLSTM(nn.Module):
    """Embedding, a stack of nn.LSTM layers, an untied decoder: nothing that regularizes."""

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.encoder = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers)
        self.decoder = nn.Linear(hidden, vocab)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, inputs: torch.Tensor, hidden=None):
        out, hidden = self.lstm(self.encoder(inputs), hidden)
        return self.decoder(out), hidden


def batchify(tokens: torch.Tensor, batch: int) -> torch.Tensor:
    """(N // batch, batch): column b is the b-th contiguous slice of the stream."""
    rows = len(tokens) // batch
    return tokens[: rows * batch].view(batch, rows).t().contiguous()


@torch.no_grad()
def perplexity(model: PlainLSTM, columns: torch.Tensor, bptt: int) -> float:
    model.eval()
    hidden, total, count = None, 0.0, 0
    for i in range(0, columns.size(0) - 1, bptt):
        n = min(bptt, columns.size(0) - 1 - i)
        logits, hidden = model(columns[i : i + n], hidden)
        total += F.cross_entropy(logits.view(-1, logits.size(-1)), columns[i + 1 : i + 1 + n].reshape(-1),
                                 reduction="sum").item()
        count += columns[i + 1 : i + 1 + n].numel()
    return math.exp(total / count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ptb")
    parser.add_argument("--train-tokens", type=int, default=40_000)
    parser.add_argument("--eval-tokens", type=int, default=10_000)
    parser.add_argument("--embed", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--bptt", type=int, default=35)
    parser.add_argument("--lr", type=float, default=20.0)
    parser.add_argument("--clip", type=float, default=0.25)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "data" / "overfit_unregularized.csv")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    vocab = len(data.load_vocab(args.dataset))
    train = torch.as_tensor(data.stream(data.load_split(args.dataset, "train"))[: args.train_tokens])
    valid = torch.as_tensor(data.stream(data.load_split(args.dataset, "valid"))[: args.eval_tokens])
    train_cols = batchify(train, args.batch)
    train_eval = batchify(train[: args.eval_tokens], 10)  # the same measurement on both splits
    valid_eval = batchify(valid, 10)

    model = PlainLSTM(vocab, args.embed, args.hidden, args.layers)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    rows = [{"epoch": 0, "train_ppl": perplexity(model, train_eval, args.bptt),
             "valid_ppl": perplexity(model, valid_eval, args.bptt), "seconds": 0.0}]
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        hidden = None
        for i in range(0, train_cols.size(0) - 1, args.bptt):
            n = min(args.bptt, train_cols.size(0) - 1 - i)
            if hidden is not None:
                hidden = tuple(h.detach() for h in hidden)
            logits, hidden = model(train_cols[i : i + n], hidden)
            loss = F.cross_entropy(logits.view(-1, vocab), train_cols[i + 1 : i + 1 + n].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            optimizer.step()
        rows.append({"epoch": epoch, "train_ppl": perplexity(model, train_eval, args.bptt),
                     "valid_ppl": perplexity(model, valid_eval, args.bptt),
                     "seconds": time.perf_counter() - start})
        r = rows[-1]
        print(f"epoch {epoch:3d}  train ppl {r['train_ppl']:8.1f}  valid ppl {r['valid_ppl']:8.1f}  "
              f"{r['seconds']:6.0f} s", flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    with open(args.out, "w", newline="") as f:
        f.write("# python benchmarks/overfit_unregularized.py: an LSTM with no regularization on a slice of "
                f"{args.dataset}\n")
        f.write("# settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()) + "\n")
        f.write(f"# runtime: {rows[-1]['seconds']:.0f} s of training on {args.threads} thread(s), "
                f"torch {torch.__version__}\n")
        writer = csv.DictWriter(f, fieldnames=["epoch", "train_ppl", "valid_ppl", "seconds"])
        writer.writeheader()
        for r in rows:
            writer.writerow({"epoch": r["epoch"], "train_ppl": f"{r['train_ppl']:.2f}",
                             "valid_ppl": f"{r['valid_ppl']:.2f}", "seconds": f"{r['seconds']:.1f}"})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
