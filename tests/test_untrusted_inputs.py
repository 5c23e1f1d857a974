"""What the grader reads from a submission or its sandbox is data to validate and bound before use: results come
through a framed pipe, observations must be dense plain data, files are regular files within caps, and model.pt's
settings are checked before anything is built from them."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import torch

from autograder import model_file, results, untrusted_files
from hw4lib import checkpoint


def _frame(part: str, payload: bytes) -> bytes:
    return f"{part} {len(payload)}\n".encode() + payload


def _saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _receive(data: bytes, parts: list[str]) -> results.Receiver:
    read_end, write_end = os.pipe()
    receiver = results.Receiver(read_end, parts)
    with os.fdopen(write_end, "wb") as w:
        try:
            w.write(data)
        except BrokenPipeError:
            pass
    receiver.finish()
    return receiver


def test_receiver_takes_the_parts_asked_for_once_each():
    ok = _saved({"x": torch.ones(3)})
    receiver = _receive(_frame("a", ok) + _frame("b", ok), ["a", "b"])
    assert set(receiver.payloads) == {"a", "b"} and receiver.problem is None
    assert torch.equal(results.decode(receiver.payloads["a"])["x"], torch.ones(3))
    twice = _receive(_frame("a", ok) + _frame("a", ok), ["a", "b"])
    assert list(twice.payloads) == ["a"] and "sent twice" in twice.problem
    other = _receive(_frame("../../b", ok), ["a"])
    assert not other.payloads and "not asked for" in other.problem
    garbage = _receive(b"x" * 1000, ["a"])
    assert not garbage.payloads and garbage.problem
    huge = _receive(f"a {results.MAX_PART_BYTES + 1}\n".encode(), ["a"])
    assert not huge.payloads and "limit" in huge.problem
    cut = _receive(b"a 100\n" + b"x" * 10, ["a"])
    assert not cut.payloads and "cut off" in cut.problem


@pytest.mark.parametrize("forged, why", [
    ({"t": torch.zeros(1).expand(10**9, 4)}, "not dense"),
    ({"t": torch.zeros(results.MAX_TENSOR_ELEMENTS + 1)}, "over the size limit"),
    ({"t": torch.zeros(4, 4).t()}, "not dense"),
    ({"views": [torch.zeros(2**20)] * 9}, "over the size limit"),  # one storage, nine views
    ({"l": list(range(results.MAX_CONTAINER + 1))}, "over the size limit"),
    ({"s": "x" * (results.MAX_STRING + 1)}, "over the size limit"),
    ({1: 2}, "not strings"),
    ({"t": torch.zeros(2, dtype=torch.complex64)}, "not plain data"),
])
def test_forged_observations_are_refused_before_any_property_reads_them(forged, why):
    payload = _saved(forged)
    with pytest.raises(results.BadObservation, match=why):
        results.decode(payload)


def test_payloads_that_are_not_observations_are_refused():
    with pytest.raises(results.BadObservation, match="unreadable"):
        results.decode(b"not a torch file")
    with pytest.raises(results.BadObservation, match="not a dict"):
        results.decode(_saved([1, 2]))


def test_files_are_read_only_when_regular_and_within_the_cap(tmp_path):
    secret = tmp_path / "gradebook.db"
    secret.write_bytes(b"secret")
    (tmp_path / "link.ipynb").symlink_to(secret)
    with pytest.raises(untrusted_files.Refused, match="not a regular file"):
        untrusted_files.read_regular(tmp_path / "link.ipynb", 100)
    (tmp_path / "dir.ipynb").mkdir()
    assert not untrusted_files.copy_regular(tmp_path / "dir.ipynb", tmp_path / "copy", 100)
    os.mkfifo(tmp_path / "fifo.ipynb")  # would block a plain open() forever
    with pytest.raises(untrusted_files.Refused, match="not a regular file"):
        untrusted_files.read_regular(tmp_path / "fifo.ipynb", 100)
    with pytest.raises(untrusted_files.Refused, match="larger"):
        untrusted_files.read_regular(secret, 3)
    assert untrusted_files.read_regular(secret, 6) == b"secret"


def _checkpoint(tmp_path: Path, **changes) -> Path:
    from hw4lib.components import load_components

    cfg = {"vocab_size": 50, "embed_size": 8, "hidden_size": 12, "num_layers": 2, "dropout": 0.1, "dropouth": 0.1,
           "dropouti": 0.1, "dropoute": 0.1, "wdrop": 0.1, "tie_weights": True}
    model = load_components("solutions", stages=("02", "03", "04")).LanguageModel(**cfg)
    path = tmp_path / "model.pt"
    checkpoint.save_model(path, model, {**cfg, **changes})
    return path


@pytest.mark.parametrize("changes, why", [
    ({"hidden_size": 10**6, "num_layers": 1000}, "num_layers is 1000"),
    ({"hidden_size": 10**6}, "hidden_size is 1000000"),
    ({"vocab_size": 51}, "vocabulary has 50"),
    ({"tie_weights": "yes"}, "not a bool"),
    ({"num_layers": 2.0}, "not a int"),
    ({"dropout": float("nan")}, "dropout rate"),
    ({"__class__": 1}, "does not take"),
])
def test_model_config_is_bounded_before_anything_is_built(tmp_path, changes, why):
    ckpt, unusable = model_file.read(_checkpoint(tmp_path, **changes))
    assert unusable is None
    cfg, refused = model_file.checked_config(ckpt, 50, 10**6)
    assert cfg is None and why in refused


def test_a_checkpoint_is_built_on_meta_and_must_match_its_config(tmp_path):
    from hw4lib.components import load_components

    c = load_components("solutions", stages=("02", "03", "04"))
    ckpt, _ = model_file.read(_checkpoint(tmp_path))
    cfg, refused = model_file.checked_config(ckpt, 50, 10**6)
    assert refused is None
    model = model_file.build(c, ckpt, cfg)
    assert all(p.device.type == "cpu" and p.is_contiguous() for p in model.parameters())
    too_many, refused = model_file.checked_config(ckpt, 50, 1000)
    assert too_many is None and "parameters" in refused
    ckpt["state_dict"]["decoder.bias"] = torch.zeros(1).expand(49)
    with pytest.raises(Exception, match="do not fit"):
        model_file.build(c, ckpt, cfg)
    (tmp_path / "linked.pt").symlink_to(tmp_path / "model.pt")
    assert "not a regular file" in model_file.read(tmp_path / "linked.pt")[1]
    assert "no model.pt" in model_file.read(tmp_path / "absent.pt")[1]
