"""How a probe's observations leave the sandbox: one pipe, framed, capped and validated; never a file to follow.

The sandbox has no writable folder of the grader's: the probe writes each part's observation to a pipe whose write
end it inherits (``send``), as a header line ``<part> <length>`` and ``length`` bytes of ``torch.save`` output. The
grader reads the other end in a thread (``Receiver``), accepts only the parts it asked for, each once and within a
size cap, and stops reading at the first frame that breaks the rules (the student's process then gets EPIPE).
``decode`` loads a payload with ``weights_only=True`` (no code runs) and ``validate`` bounds what it holds before any
property reads it: a tensor must be dense and contiguous (a stride-0 "10^9 x 4" view of one number is refused, not
expanded), of a plain dtype, within a size cap; containers are bounded in length and depth.

Student code runs in the probe's process and can write to the pipe too: it can only forge its own observations,
which is no more than monkeypatching its own ``observe`` could do, and which the properties judge by values.
"""

from __future__ import annotations

import io
import os
import threading
import time
from typing import Any, BinaryIO

import torch

MAX_PART_BYTES = 32 * 2**20  # the largest honest observation (language_model) is about 4.3 MB
MAX_TENSOR_ELEMENTS = 4 * 2**20
MAX_TOTAL_ELEMENTS = 8 * 2**20  # over all tensors of one observation (views of one storage count each time)
MAX_ITEMS = 100_000  # tensors, numbers and strings in one observation
MAX_CONTAINER = 20_000
MAX_DEPTH = 16
MAX_STRING = 20_000
DTYPES = {torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8, torch.uint8, torch.int16,
          torch.int32, torch.int64, torch.bool}
_HEADER_MAX = 128
#: The empty frame the probe sends once its imports are done, before any student code: when it arrives tells the
#: grader's timing table how long the sandbox's start and the imports took.
READY = "_ready"


class BadObservation(ValueError):
    """An observation that breaks the channel's rules; the message is shown to the student as the part's failure."""


def send(stream: BinaryIO, part: str, payload: bytes) -> None:
    """Writes one frame (the probe's side)."""
    stream.write(f"{part} {len(payload)}\n".encode() + payload)
    stream.flush()


class Receiver:
    """Reads frames from ``fd`` in a thread until EOF or the first broken rule (the grader's side).

    ``payloads[part]`` holds each part's bytes as it arrives, so a watchdog can tell which part is running;
    ``problem`` says why reading stopped early, if it did. ``arrived`` holds the monotonic time each frame
    (``READY`` included) was complete, for the timing table only: student code could send frames early, which
    changes nothing but its own timings.
    """

    def __init__(self, fd: int, parts: list[str]) -> None:
        self.expected = list(parts)
        self.payloads: dict[str, bytes] = {}
        self.problem: str | None = None
        self.started = time.monotonic()
        self.arrived: dict[str, float] = {}
        self._file = os.fdopen(fd, "rb", buffering=0)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read_exactly(self, n: int) -> bytes | None:
        chunks, left = [], n
        while left:
            chunk = self._file.read(min(left, 2**20))
            if not chunk:
                return None
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _header(self) -> bytes | None:
        line = b""
        while not line.endswith(b"\n"):
            byte = self._file.read(1)
            if not byte:
                return None if not line else line
            line += byte
            if len(line) > _HEADER_MAX:
                break
        return line

    def _read(self) -> None:
        try:
            while True:
                line = self._header()
                if line is None:
                    return
                fields = line.decode("ascii", "replace").split()
                if len(fields) != 2 or not fields[1].isdigit():
                    self.problem = "the probe's result channel received something that is not a result"
                    return
                part, size = fields[0], int(fields[1])
                if part == READY and size == 0 and READY not in self.arrived:
                    self.arrived[READY] = time.monotonic()
                    continue
                if part not in self.expected or part in self.payloads:
                    self.problem = f"a result for {part[:40]!r} that was not asked for (or sent twice)"
                    return
                if size > MAX_PART_BYTES:
                    self.problem = f"the result of {part} is {size:,} bytes, over the {MAX_PART_BYTES:,}-byte limit"
                    return
                payload = self._read_exactly(size)
                if payload is None:
                    self.problem = f"the result of {part} was cut off"
                    return
                self.payloads[part] = payload
                self.arrived[part] = time.monotonic()
        finally:
            self._file.close()

    def finish(self, timeout: float = 10.0) -> None:
        """Waits for EOF (every process holding the write end has ended)."""
        self._thread.join(timeout)


def decode(payload: bytes) -> dict:
    """A payload as a validated observation dict (``weights_only``: nothing in it can run)."""
    try:
        data = torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - anything the sandbox wrote
        raise BadObservation(f"unreadable probe output ({type(err).__name__})") from err
    if not isinstance(data, dict):
        raise BadObservation("malformed probe output (not a dict)")
    validate(data)
    return data


def validate(value: Any) -> None:
    """Raises ``BadObservation`` unless ``value`` is plain data within the caps (see the module's docstring)."""
    count = elements = 0

    def walk(v: Any, depth: int) -> None:
        nonlocal count, elements
        count += 1
        if count > MAX_ITEMS or depth > MAX_DEPTH:
            raise BadObservation("the observation is nested too deeply or holds too many items")
        if isinstance(v, torch.Tensor):
            if type(v) is not torch.Tensor or v.dtype not in DTYPES or v.layout != torch.strided:
                raise BadObservation(f"a result tensor of type {type(v).__name__}, dtype {v.dtype} is not plain data")
            if not v.is_contiguous() or v.untyped_storage().nbytes() < v.numel() * v.element_size():
                raise BadObservation(f"a result tensor of shape {tuple(v.shape)} is not dense")
            elements += v.numel()
            if v.numel() > MAX_TENSOR_ELEMENTS or elements > MAX_TOTAL_ELEMENTS:
                raise BadObservation(f"a result tensor of shape {tuple(v.shape)} is over the size limit")
        elif isinstance(v, (list, tuple, dict)):
            if len(v) > MAX_CONTAINER:
                raise BadObservation(f"a result {type(v).__name__} of {len(v):,} items is over the size limit")
            items = v.items() if isinstance(v, dict) else enumerate(v)
            for key, item in items:
                if isinstance(v, dict) and not isinstance(key, str):
                    raise BadObservation("a result dict with keys that are not strings")
                walk(item, depth + 1)
        elif isinstance(v, str):
            if len(v) > MAX_STRING:
                raise BadObservation("a result string is over the size limit")
        elif not (v is None or isinstance(v, (bool, int, float))):
            raise BadObservation(f"a result of type {type(v).__name__} is not plain data")

    walk(value, 0)
