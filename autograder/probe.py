"""The probe: runs a student's components on grader-chosen inputs inside the sandbox and records what they do.

It runs as ``python -m autograder.probe IN_DIR FD`` in a bubblewrap sandbox that holds only this module, ``hw4lib``
and a read-only copy of the student's submission; ``IN_DIR`` (read-only) holds the request and the consistency
windows. It decides nothing: for each part it builds the inputs from the grading seed and calls that part's
``observe`` from ``hw4lib.properties`` (the same function the student's visible check calls); the observation goes
down the pipe ``FD`` as plain data (tensors, numbers, strings, lists; see ``autograder.results``), which the judge
loads with ``weights_only=True`` and validates. For the perplexity it only runs the student's model on the first
validation windows; the judge computes the perplexity itself.
Parts run in order; the first part without a result is the one running, so the parent can tell which part hung or
crashed and rerun the probe for the parts after it.
"""

from __future__ import annotations

import errno
import io
import json
import os
import sys
import time
import traceback
import zlib
from pathlib import Path

import torch

from autograder import results
from hw4lib import checkpoint, perplexity
from hw4lib.components import load_components
from hw4lib.errors import HW4Error
from hw4lib.properties import PARTS

_loaded: dict[tuple[str, ...], object] = {}


def components(sub: Path, stages: tuple[str, ...], context: tuple[str, ...]):
    if (stages, context) not in _loaded:
        _loaded[stages, context] = load_components(sub, stages=stages, context=context)
    return _loaded[stages, context]


def plain(value, depth: int = 0):
    """Only plain data within the channel's caps leaves the sandbox (``autograder.results.validate`` refuses the
    rest): a student's Tensor subclass, object, giant tensor or list becomes a short description instead."""
    if depth > results.MAX_DEPTH - 2:
        return "<nested too deeply>"
    if isinstance(value, torch.Tensor):
        if value.numel() > results.MAX_TENSOR_ELEMENTS:
            return f"<Tensor of shape {tuple(value.shape)}, too large to return>"
        value = value.detach().cpu()
        value = value.to_dense() if value.layout != torch.strided else value
        if value.dtype not in results.DTYPES:
            return f"<Tensor of dtype {value.dtype}>"
        return value.as_subclass(torch.Tensor).clone().contiguous()
    if isinstance(value, (list, tuple, dict)) and len(value) > results.MAX_CONTAINER:
        return f"<{type(value).__name__} of {len(value)} items, too many to return>"
    if isinstance(value, (list, tuple)):
        return [plain(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k)[:200]: plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, str):
        return value[: results.MAX_STRING]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return f"<{type(value).__name__}>"


def run_part(part: str, request: dict, in_dir: Path) -> dict:
    sub, seed = Path(request["submission"]), int(request["seed"])
    # The student's code may draw from torch's global generator (dropout masks), and only that generator can make
    # it reproducible: seed it per part, so a rerun after another part crashed draws the same numbers. This is the
    # sandboxed probe process of ONE student, single-threaded; the grading threads never run this line, and the
    # properties' own inputs and draws come from torch.Generators.
    torch.manual_seed(zlib.crc32(f"{seed}:{part}".encode()))
    try:
        c = components(sub, tuple(request["stages"][part]), tuple(request["context"][part]))
        if part == "val_perplexity":
            return log_probs_of_student_model(c, request, in_dir)
        props = PARTS[part]
        return props.observe(c, props.inputs(seed))
    except BaseException as err:  # noqa: B036 - a student's SystemExit/KeyboardInterrupt is this part's failure
        if isinstance(err, OSError) and err.errno == errno.EFBIG:
            return {"error": "your code printed more output than the limit allows (it was stopped there)"}
        if isinstance(err, NotImplementedError):
            return {"error": "not implemented (the graded cell still raises NotImplementedError)"}
        frames = [line for line in traceback.format_exception(err) if "probe.py" not in line]
        return {"error": f"{type(err).__name__}: {err}", "traceback": "".join(frames[-6:])[-3000:]}


def log_probs_of_student_model(c, request: dict, in_dir: Path) -> dict:
    windows = torch.load(in_dir / "consistency.pt", weights_only=True)
    try:
        ckpt = checkpoint.load_checkpoint(request["checkpoint"])
    except HW4Error as err:
        return {"error": f"model.pt: {err}".replace(str(request["checkpoint"]), "model.pt")}
    model = checkpoint.build_model(c, ckpt)
    model.eval()
    return {"log_probs": perplexity.target_log_probs(model, windows["data"], [tuple(b) for b in windows["bounds"]])}


def main(in_dir: str, fd: str) -> int:
    in_dir = Path(in_dir)
    request = json.loads((in_dir / "request.json").read_text())
    torch.set_num_threads(int(request.get("threads", 1)))
    channel = os.fdopen(int(fd), "wb")
    results.send(channel, results.READY, b"")
    for part in request["parts"]:
        started = time.monotonic()
        result = plain(run_part(part, request, in_dir))
        buffer = io.BytesIO()
        torch.save(result, buffer)
        results.send(channel, part, buffer.getvalue())
        try:
            print(f"probe: {part} {time.monotonic() - started:.2f} s", flush=True)
        except OSError:  # the student's output filled the log (RLIMIT_FSIZE): keep going without it
            pass
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1], sys.argv[2])
    # Every result has been sent: skip the interpreter's clean-up of torch's modules (about half a second of CPU
    # per submission) and whatever the student's code registered to run at exit.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # the student's output filled the log
            pass
    os._exit(code)
