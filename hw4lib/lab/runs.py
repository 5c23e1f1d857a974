"""Sub-commands ``train``, ``evaluate`` and ``generate``: runs of the components of any notebook set."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType

import torch

from hw4lib import data as corpora
from hw4lib.checkpoint import build_model, load_checkpoint
from hw4lib.components import load_components, notebook_paths
from hw4lib.cpu_runtime import precision_context, tune_malloc
from hw4lib.errors import HW4Error
from hw4lib.lab.training import PRESETS, get_preset, resolve_device, train
from hw4lib.perplexity import evaluate_nll
from hw4lib.prompting import continue_prompt


def _impl_help() -> str:
    return "whose components: 'solutions' (reference), 'notebooks' (your release copy) or a folder/notebook path"


def _cmd_train(args: argparse.Namespace) -> int:
    tune_malloc()  # before the first big allocation; the trainer calls it too (for notebooks)
    config = get_preset(
        args.preset, args.dataset, epochs=args.epochs, time_budget_min=args.time_budget, lr=args.lr,
        max_train_tokens=args.max_train_tokens, seed=args.seed, device=args.device, batch_size=args.batch_size,
        wall_budget_min=args.wall_budget, eval_every_min=args.eval_every_min, precision=args.precision,
        threads=args.threads, bptt=args.bptt, lr_decay_frac=args.lr_decay_frac,
    )
    # The plain baseline brings its own model and optimizer (hw4lib.lab.baseline): no components to load.
    components = None if config.architecture == "plain" else components_of(args.impl)
    try:
        metrics = train(config, components, args.out, resume=not args.no_resume, progress=not args.no_progress)
    except NotImplementedError as err:
        raise HW4Error(f"{_unfinished(err)} in {_folder(args.impl)} still raises NotImplementedError: finish that "
                       "part (its visible check says what is missing), or pass --impl the folder that holds your "
                       "own notebooks") from err
    if args.plot:
        from hw4lib.lab.plots import plot_training

        plot_training(metrics["history"], Path(args.out) / "curves.png")
    print(json.dumps({k: metrics[k] for k in ("val_ppl", "steps", "epochs", "tokens", "elapsed_s", "wall_s",
                                              "precision")}, indent=2))
    return 0


def _folder(impl: str) -> Path:
    return notebook_paths(impl)[0].parent


def components_of(impl: str) -> ModuleType:
    """The components of ``--impl``, saying which folder they come from: ``notebooks`` means ``./notebooks`` when
    there is one, else the project's release copy, and a student who works in a folder of their own would
    otherwise train the release's stubs without knowing it."""
    folder = _folder(impl)
    print(f"components: the graded cells of the notebooks in {folder}", file=sys.stderr)
    here = Path.cwd().resolve()
    if impl == "notebooks" and folder.resolve() != here / "notebooks" and any(here.glob("0[1-7]_*.ipynb")):
        print(f"note: this folder holds stage notebooks but no notebooks/ folder, so 'notebooks' means {folder}; "
              "to train with the notebooks here, pass --impl .", file=sys.stderr)
    return load_components(impl)


def _unfinished(err: BaseException) -> str:
    """'04_model.ipynb, graded cell 9' for the student's notebook cell that raised, else 'a graded cell'."""
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        if frame.filename.startswith("<") and ".ipynb cell " in frame.filename:
            name, cell = frame.filename.strip("<>").split(" cell ")
            return f"{name}, graded cell {cell},"
    return "a graded cell"


def _cmd_finetune(args: argparse.Namespace) -> int:
    from hw4lib.lab.finetune import finetune

    tune_malloc()
    metrics = finetune(args.start, args.out, components_of(args.impl), minutes=args.minutes, patience=args.patience,
                       lr=args.lr, lr_decay_frac=args.lr_decay_frac, seed=args.seed, device=args.device,
                       eval_every_min=args.eval_every_min, resume=not args.no_resume, progress=not args.no_progress)
    if args.plot:
        from hw4lib.lab.plots import plot_training

        plot_training(metrics["history"], Path(args.out) / "curves.png")
    print(json.dumps({"val_ppl": metrics["val_ppl"], **metrics["finetune"], "steps": metrics["steps"],
                      "wall_s": metrics["wall_s"]}, indent=2))
    return 0


def load_model(args: argparse.Namespace) -> tuple[ModuleType, torch.nn.Module, dict]:
    """The components of ``--impl``, the model of ``--checkpoint`` built from them, and the checkpoint."""
    ckpt = load_checkpoint(args.checkpoint)
    if ckpt.get("meta", {}).get("config", {}).get("architecture") == "plain":
        from hw4lib.lab import baseline

        components = baseline.components()
    else:
        components = load_components(args.impl)
    return components, build_model(components, ckpt, resolve_device(args.device)), ckpt


def dataset_of(args: argparse.Namespace, ckpt: dict) -> str:
    return args.dataset or ckpt.get("meta", {}).get("dataset", "wikitext2")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    tune_malloc()  # each window's logits (70 x 10 x V floats) reuse the same memory instead of fresh mmaps
    _, model, ckpt = load_model(args)
    dataset = dataset_of(args, ckpt)
    split = corpora.load_split(dataset, args.split)
    device = next(model.parameters()).device
    start = time.perf_counter()
    with precision_context(args.precision, device):
        nll = evaluate_nll(model, split, batch_size=args.batch_size, bptt=args.bptt, max_tokens=args.max_tokens,
                           progress=True)
    print(json.dumps({"dataset": dataset, "split": args.split, "nll": nll,
                      "perplexity": math.exp(nll) if math.isfinite(nll) else None, "precision": args.precision,
                      "seconds": round(time.perf_counter() - start, 2)}, indent=2))
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    components, model, ckpt = load_model(args)
    vocab = corpora.load_vocab(dataset_of(args, ckpt))
    result = continue_prompt(model, vocab, components.generation, args.prompt, args.words, greedy=args.greedy,
                             temperature=args.temperature, top_k=args.top_k, seed=args.seed)
    if result.unknown_note:
        print(result.unknown_note, file=sys.stderr)
    print(" ".join(result.prompt.words), "|", result.text)
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--impl", default="solutions", help=_impl_help())
    p.add_argument("--device", default="auto", help="'auto' (GPU when there is one), 'cpu', 'cuda', 'cuda:1' ...")


def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train an AWD-LSTM (or the plain baseline) from a preset; resumes RUN_DIR "
                                     "when it has a checkpoint")
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    p.add_argument("--dataset", choices=["wikitext2", "ptb"], default="wikitext2")
    p.add_argument("--out", required=True, help="run folder (checkpoint.pt, model.pt, metrics.json, train.log)")
    _common(p)
    p.add_argument("--epochs", type=int)
    p.add_argument("--time-budget", type=float, help="minutes of training steps before stopping (default: preset's)")
    p.add_argument("--wall-budget", type=float,
                   help="minutes on the wall clock for everything, checks and the final evaluation included")
    p.add_argument("--eval-every-min", type=float, help="a validation check every this many wall-clock minutes")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                   help="autocast precision (default: preset's; 'auto' = bf16 where the CPU runs it natively)")
    p.add_argument("--threads", type=int, help="torch threads (1 is faster when another job keeps a core busy)")
    p.add_argument("--lr", type=float)
    p.add_argument("--lr-decay-frac", type=float,
                   help="lower the learning rate linearly to 0 over this last fraction of the wall budget (0: off)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--bptt", type=int, help="mean BPTT length of training windows")
    p.add_argument("--max-train-tokens", type=int, help="train on the first N tokens only")
    p.add_argument("--seed", type=int)
    p.add_argument("--no-resume", action="store_true", help="start over even if RUN_DIR has a checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    p.add_argument("--plot", action="store_true", help="also write RUN_DIR/curves.png")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("finetune", help="the paper's fine-tuning: restart from a model.pt with averaging from the "
                                        "first step; stop when non-monotone or at the wall budget")
    p.add_argument("--start", required=True, help="the model.pt of a finished `train` run")
    p.add_argument("--out", required=True, help="run folder of the fine-tuning (resumed when it has a checkpoint)")
    _common(p)
    p.add_argument("--minutes", type=float, default=15.0, help="wall-clock budget, checks and final evaluation "
                                                                "included (default 15)")
    p.add_argument("--patience", type=int, help="the stop's nonmono (default: the start run's, 5 in the paper)")
    p.add_argument("--lr", type=float, help="default: the start run's rate")
    p.add_argument("--lr-decay-frac", type=float, default=0.0,
                   help="lower the rate linearly to 0 over this last fraction of the budget (default 0: the paper)")
    p.add_argument("--eval-every-min", type=float)
    p.add_argument("--seed", type=int, help="default: the start run's seed + 1 (a new batch order)")
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--plot", action="store_true")
    p.set_defaults(func=_cmd_finetune)

    p = sub.add_parser("evaluate", help="perplexity of a model.pt on a split")
    p.add_argument("--checkpoint", required=True, help="a model.pt written by training")
    _common(p)
    p.add_argument("--dataset", choices=["wikitext2", "ptb"], help="default: the one the model was trained on")
    p.add_argument("--split", choices=["train", "valid", "test"], default="valid")
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--bptt", type=int, default=70)
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16 autocast for the model (scores still summed in float64); fp32 is the grader's number")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("generate", help="continue a prompt with a model.pt")
    p.add_argument("--checkpoint", required=True)
    _common(p)
    p.add_argument("--dataset", choices=["wikitext2", "ptb"])
    p.add_argument("--prompt", required=True, help="words, separated by spaces (unknown words become <unk>)")
    p.add_argument("--words", type=int, default=20)
    p.add_argument("--greedy", action="store_true", help="arg-max instead of sampling")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_generate)
