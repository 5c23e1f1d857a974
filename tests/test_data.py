"""hw4lib.data: the facts of the real corpora, the input forms, and every failure path."""

from __future__ import annotations

import functools
import gzip
import http.server
import lzma
import os
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from hw4lib import data
from hw4lib.errors import HW4Error
from hw4lib.lab import cli

# ------------------------------------------------------------------------------------------ helpers


@pytest.fixture(scope="session")
def shared() -> Path:
    """The read-only raw corpora (.xz); the tests that build other input forms need them."""
    root = data.shared_data_dir()
    if not (root / "wikitext-2").is_dir() or not (root / "ptb").is_dir():
        pytest.skip(f"raw corpora not found in {root}")
    return root


def raw_text(shared: Path, dataset: str, split: str) -> bytes:
    """The uncompressed bytes of one official raw file."""
    spec = data.DATASETS[dataset]
    return lzma.decompress((shared / spec.shared_subdir / f"{spec.raw_names[split][0]}.xz").read_bytes())


def assert_same_dataset(a: Path, b: Path, dataset: str) -> None:
    """Two prepared folders hold identical articles and vocabulary."""
    np.testing.assert_array_equal(data.load_vocab(dataset, a), data.load_vocab(dataset, b))
    for split in data.SPLITS:
        left, right = data.load_split(dataset, split, a), data.load_split(dataset, split, b)
        assert len(left) == len(right)
        assert all(np.array_equal(x, y) for x, y in zip(left, right, strict=True))


def write_tiny(folder: Path, train: str, valid: str, test: str) -> Path:
    """A made-up corpus in the PTB layout (needs verify=False: its sha256 is not pinned)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, text in zip(data.SPLITS, (train, valid, test), strict=True):
        (folder / f"ptb.{split}.txt").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def serve() -> Iterator[Callable[[Path], str]]:
    """Serve a folder over HTTP on 127.0.0.1 (a stand-in for the official mirrors); returns its URL."""
    servers: list[http.server.ThreadingHTTPServer] = []

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    def start(folder: Path) -> str:
        handler = functools.partial(Quiet, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------------------------------ real data


def test_wikitext2_facts(prepared_data: Path) -> None:
    train = data.load_split("wikitext2", "train", prepared_data)
    vocab = data.load_vocab("wikitext2", prepared_data)
    assert len(train) == 600
    assert sum(len(a) for a in train) == 2_075_677
    assert len(train[0]) == 3_803
    assert data.decode(train[0][:6], vocab) == ["=", "Valkyria", "Chronicles", "III", "=", "<eol>"]
    assert len(vocab) == 33_278 and len(set(vocab.tolist())) == 33_278
    meta = data.load_meta("wikitext2", prepared_data)
    assert meta["splits"]["train"] == {"articles": 600, "tokens": 2_075_677}
    assert meta["raw"]["train"]["sha256"] == data.DATASETS["wikitext2"].sha256["train"]
    for split in ("valid", "test"):
        articles = data.load_split("wikitext2", split, prepared_data)
        assert len(articles) == meta["splits"][split]["articles"] == 60
        assert sum(len(a) for a in articles) == meta["splits"][split]["tokens"]


def test_ptb_facts(prepared_data: Path) -> None:
    vocab = data.load_vocab("ptb", prepared_data)
    assert len(vocab) == 10_000
    expected = {"train": 929_589, "valid": 73_760, "test": 82_430}  # SOURCES.md: one <eos> per line
    for split, n_tokens in expected.items():
        articles = data.load_split("ptb", split, prepared_data)
        assert len(articles) == 1  # PTB has no articles: one document per split
        assert len(articles[0]) == n_tokens
        assert vocab[articles[0][-1]] == "<eos>"
    assert "<eol>" not in set(vocab.tolist())


@pytest.mark.parametrize("dataset", ["wikitext2", "ptb"])
def test_ids_in_range_and_every_word_used(prepared_data: Path, dataset: str) -> None:
    vocab_size = len(data.load_vocab(dataset, prepared_data))
    for split in data.SPLITS:
        ids = data.stream(data.load_split(dataset, split, prepared_data))
        assert ids.dtype == np.int64
        assert ids.min() >= 0 and ids.max() < vocab_size
    counts = np.bincount(data.stream(data.load_split(dataset, "train", prepared_data)), minlength=vocab_size)
    assert counts.min() >= 1  # the vocabulary holds train words only


@pytest.mark.parametrize("dataset", ["wikitext2", "ptb"])
def test_vocab_order_is_frequency_then_first_occurrence(prepared_data: Path, dataset: str) -> None:
    train = data.stream(data.load_split(dataset, "train", prepared_data))
    counts = np.bincount(train)
    assert np.all(np.diff(counts) <= 0)  # descending frequency
    first = np.full(len(counts), len(train))
    np.minimum.at(first, train, np.arange(len(train)))
    ties = np.diff(counts) == 0
    assert np.all(np.diff(first)[ties] > 0)  # equal counts: earlier first occurrence gets the smaller id


def test_round_trip_first_article(prepared_data: Path, shared: Path) -> None:
    lines = raw_text(shared, "wikitext2", "train").decode("utf-8").split("\n")
    end = lines.index(" = Tower Building of the Little Rock Arsenal = ")  # the second article's heading
    expected = [w for line in lines[:end] if line.split() for w in [*line.split(), "<eol>"]]
    vocab = data.load_vocab("wikitext2", prepared_data)
    first = data.load_split("wikitext2", "train", prepared_data)[0]
    assert data.decode(first, vocab) == expected


def test_hw4p1_object_arrays_match_npz(prepared_data: Path) -> None:
    folder = prepared_data / "wikitext2"
    articles = data.load_split("wikitext2", "valid", prepared_data)
    for name in ("valid.npy", "wiki.valid.npy"):
        obj = np.load(folder / name, allow_pickle=True)  # written by this project, so pickle is safe here
        assert obj.dtype == object and obj.shape == (len(articles),)
        assert all(np.array_equal(x, y) for x, y in zip(obj, articles, strict=True))
    ptb = np.load(prepared_data / "ptb" / "test.npy", allow_pickle=True)
    assert ptb.shape == (1,) and ptb[0].dtype == np.int64


# ------------------------------------------------------------------------------------------ input forms


def test_zip_with_pytorch_names_and_macos_junk(prepared_data: Path, shared: Path, tmp_path: Path) -> None:
    archive = tmp_path / "wikitext2.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for split in data.SPLITS:
            zf.writestr(f"wikitext2/{split}.txt", raw_text(shared, "wikitext2", split))
            zf.writestr(f"__MACOSX/wikitext2/._{split}.txt", b"\x00\x05\x16\x07 resource fork")
        zf.writestr("wikitext2/.DS_Store", b"junk")
    meta = data.prepare(archive, "wikitext2", out=tmp_path / "out" / "wikitext2", quiet=True)
    assert meta["splits"]["train"]["articles"] == 600
    assert meta["raw"]["train"]["origin"].endswith("wikitext2/train.txt")
    assert_same_dataset(tmp_path / "out", prepared_data, "wikitext2")


def test_gz_folder(prepared_data: Path, shared: Path, tmp_path: Path) -> None:
    src = tmp_path / "src" / "nested"  # files below the given folder are found too
    src.mkdir(parents=True)
    for split in data.SPLITS:
        (src / f"ptb.{split}.txt.gz").write_bytes(
            gzip.compress(raw_text(shared, "ptb", split), compresslevel=1)
        )
    data.prepare(tmp_path / "src", "ptb", out=tmp_path / "out" / "ptb", quiet=True)
    assert_same_dataset(tmp_path / "out", prepared_data, "ptb")


def test_heading_rule() -> None:
    text = "\n".join(
        [" ", " = One = ", " ", " a b ", " ", " = = Sub = = ", " ", " c ", " = Goals ; A = ", " d ", " ",
         " = Two = ", " ", " e ", ""]
    )  # fmt: skip
    docs = data.split_articles(text, "<eol>", articles=True)
    assert [len(d) for d in docs] == [4 + 3 + 6 + 2 + 6 + 2, 4 + 2]
    assert docs[1][:3] == ["=", "Two", "="]
    assert data.split_articles(text, "<eos>", articles=False)[0].count("<eos>") == 8  # non-empty lines


def test_tiny_corpus_without_verify(tmp_path: Path) -> None:
    src = write_tiny(tmp_path / "src", " b a \n\n a c b \n", " c \n", " a b \n")
    meta = data.prepare(src, "ptb", out=tmp_path / "out" / "ptb", verify=False, quiet=True)
    vocab = data.load_vocab("ptb", tmp_path / "out").tolist()
    assert vocab == ["b", "a", "<eos>", "c"]  # b, a, <eos> all twice: first occurrence decides
    assert data.stream(data.load_split("ptb", "valid", tmp_path / "out")).tolist() == [3, 2]
    assert meta["sha256_verified"] is False and len(meta["raw"]["train"]["sha256"]) == 64


# ------------------------------------------------------------------------------------------ failures


def test_missing_prepared_file_names_file_and_fix(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(HW4Error) as err:
        data.load_split("wikitext2", "train", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "wikitext2" / "train.npz") in message
    assert "python -m hw4lib data prepare --source" in message and "--dataset wikitext2" in message
    assert "python -m hw4lib data download --dataset wikitext2" in message and "bash setup.sh" in message
    assert cli.main(["data", "info", "--data-dir", str(tmp_path)]) == 2  # printed without a traceback
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: missing prepared file") and "Traceback" not in stderr


def test_missing_raw_file(shared: Path, tmp_path: Path) -> None:
    for split in ("train", "valid"):
        (tmp_path / f"ptb.{split}.txt.xz").write_bytes((shared / "ptb" / f"ptb.{split}.txt.xz").read_bytes())
    with pytest.raises(HW4Error, match=r"no ptb test file .*ptb\.test\.txt"):
        data.prepare(tmp_path, "ptb", out=tmp_path / "out", quiet=True)


def test_corrupted_raw_file_fails_checksum(shared: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for split in data.SPLITS:
        text = raw_text(shared, "ptb", split)
        if split == "valid":
            text = text.replace(b" the ", b" a ", 1)  # one changed word
        (src / f"ptb.{split}.txt").write_bytes(text)
    with pytest.raises(HW4Error) as err:
        data.prepare(src, "ptb", out=tmp_path / "out", quiet=True)
    message = str(err.value)
    assert "sha256 mismatch" in message and "ptb.valid.txt" in message
    assert data.DATASETS["ptb"].sha256["valid"] in message and "data download --dataset ptb" in message
    assert not (tmp_path / "out").exists()  # nothing written before the raw files are trusted


def test_word_missing_from_train(tmp_path: Path) -> None:
    src = write_tiny(tmp_path / "src", " a b \n", " a zzz \n", " b \n")
    with pytest.raises(HW4Error, match=r"do not occur in train.*'zzz'"):
        data.prepare(src, "ptb", out=tmp_path / "out", verify=False, quiet=True)


def test_atomic_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out" / "ptb"
    v1 = write_tiny(tmp_path / "v1", " a b \n", " a \n", " b \n")
    data.prepare(v1, "ptb", out=out, verify=False, quiet=True)
    before = (out / "train.npy").read_bytes()
    real_save = np.save

    def failing_save(file: object, arr: np.ndarray, *args: object, **kwargs: object) -> None:
        assert list(tmp_path.rglob(".*.tmp"))  # the temporary file exists now
        file.write(b"\x93NUMPY partial")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        data.prepare(
            write_tiny(tmp_path / "v2", " c d \n", " c \n", " d \n"), "ptb", out=out, quiet=True, verify=False
        )
    monkeypatch.setattr(np, "save", real_save)
    assert (out / "train.npy").read_bytes() == before  # the old file is intact, not half-overwritten
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert not (out / "meta.json").exists() and not data.is_prepared("ptb", out.parent)

    fresh = tmp_path / "fresh" / "ptb"  # a first prepare that fails: nothing half-written is left
    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        data.prepare(v1, "ptb", out=fresh, verify=False, quiet=True)
    names = [p.name for p in fresh.iterdir()]
    assert not [n for n in names if n.endswith((".npy", ".tmp", ".json"))], names


# ------------------------------------------------------------------------------------------ download


def test_download_through_mirror(
    prepared_data: Path,
    shared: Path,
    tmp_path: Path,
    serve: Callable[[Path], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    www = tmp_path / "www"
    www.mkdir()
    for split in data.SPLITS:  # PTB under its names, WikiText-2 under the pytorch/examples names
        (www / f"ptb.{split}.txt").write_bytes(raw_text(shared, "ptb", split))
        (www / f"{split}.txt").write_bytes(raw_text(shared, "wikitext2", split))
    monkeypatch.setenv("HW4_DATA_MIRROR", serve(www))
    for dataset in ("ptb", "wikitext2"):
        meta = data.download(dataset, out=tmp_path / "out" / dataset, quiet=True)
        assert meta["sha256_verified"] is True
        assert_same_dataset(tmp_path / "out", prepared_data, dataset)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".download")]


def test_corrupted_mirror_fails_checksum(
    shared: Path, tmp_path: Path, serve: Callable[[Path], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    www = tmp_path / "www"
    www.mkdir()
    for split in data.SPLITS:
        (www / f"ptb.{split}.txt").write_bytes(raw_text(shared, "ptb", split))
    (www / "ptb.test.txt").write_bytes(raw_text(shared, "ptb", "test")[:-1000])  # truncated download
    monkeypatch.setenv("HW4_DATA_MIRROR", serve(www))
    with pytest.raises(HW4Error, match="sha256 mismatch") as err:
        data.download("ptb", out=tmp_path / "out" / "ptb", quiet=True)
    assert "ptb.test.txt" in str(err.value)
    assert not data.is_prepared("ptb", tmp_path / "out")


def test_offline_download_fails_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("HW4_DATA_MIRROR", "http://127.0.0.1:9/")  # the discard port: nothing listens
    start = time.monotonic()
    with pytest.raises(HW4Error) as err:
        data.download("wikitext2", out=tmp_path / "wikitext2", quiet=True)
    assert time.monotonic() - start < 10
    assert "could not download wikitext2" in str(err.value)
    assert "python -m hw4lib data prepare --source" in str(err.value)
    assert cli.main(["data", "download", "--dataset", "ptb", "--out", str(tmp_path / "ptb")]) == 2
    assert "data prepare --source" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ ensure / dirs


def test_data_dir_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HW4_DATA_DIR", str(tmp_path))
    assert data.data_dir() == tmp_path
    monkeypatch.delenv("HW4_DATA_DIR")
    assert data.data_dir() == Path(data.__file__).resolve().parent.parent / "data"
    assert data.shared_data_dir() == data.data_dir().parent.parent / "shared" / "data"


def test_ensure_keeps_prepared_and_prepares_missing(
    prepared_data: Path, shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stamp = os.stat(prepared_data / "ptb" / "meta.json").st_mtime_ns
    monkeypatch.setenv("HW4_DATA_DIR", str(prepared_data))
    lines = data.ensure()
    assert all("already prepared" in line for line in lines.values()) and set(lines) == {"wikitext2", "ptb"}
    assert os.stat(prepared_data / "ptb" / "meta.json").st_mtime_ns == stamp

    monkeypatch.setenv("HW4_DATA_DIR", str(tmp_path))
    assert "prepared from" in data.ensure(["ptb"])["ptb"]
    assert_same_dataset(tmp_path, prepared_data, "ptb")


def test_cli_info_and_prepare(prepared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["data", "info", "--dataset", "ptb", "--data-dir", str(prepared_data)]) == 0
    out = capsys.readouterr().out
    assert "vocab 10,000" in out and "929,589" in out and "73,760" in out
    src = write_tiny(tmp_path / "src", " x y \n", " x \n", " y \n")
    argv = ["data", "prepare", "--source", str(src), "--dataset", "ptb", "--out", str(tmp_path / "o" / "ptb")]
    assert cli.main(argv) == 2  # pinned sha256 checked by default
    assert "sha256 mismatch" in capsys.readouterr().err
    assert cli.main([*argv, "--no-verify"]) == 0
    assert data.load_meta("ptb", tmp_path / "o")["splits"]["train"]["tokens"] == 3
