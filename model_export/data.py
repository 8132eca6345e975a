"""Training data: the real IMDB reviews, or a deterministic IMDB-like synthetic set.

The machines this project is built on have no internet, so ``synthetic`` must produce data the
model genuinely learns (token ids Zipf-distributed like real text, lengths like IMDB reviews, and
sentiment carried by a subset of words) rather than noise: the exported model is then a trained
model with realistic activations, not random weights.
"""

from __future__ import annotations

import socket
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_export import MAXLEN, VOCAB_SIZE, ExportError

# keras.datasets.imdb conventions: 0 pads, 1 starts a review, 2 is out-of-vocabulary, and word
# ranks are shifted by 3 so they do not collide with those markers.
START_CHAR, OOV_CHAR, INDEX_FROM = 1, 2, 3
IMDB_SHUFFLE_SEED = 113


@dataclass(frozen=True)
class Dataset:
    """Pre-padded int32 sequences (N×MAXLEN) and 0/1 labels for training and validation."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    source: str


def pad_pre(sequences: list[np.ndarray], maxlen: int = MAXLEN) -> np.ndarray:
    """Left-pad with zeros and keep the last ``maxlen`` tokens, as the original notebook did."""
    out = np.zeros((len(sequences), maxlen), dtype=np.int32)
    for i, seq in enumerate(sequences):
        tail = np.asarray(seq[-maxlen:], dtype=np.int32)
        if len(tail):
            out[i, maxlen - len(tail) :] = tail
    return out


def _encode_imdb(reviews: np.ndarray, num_words: int) -> list[np.ndarray]:
    """Apply keras.datasets.imdb's id scheme to raw word ranks from imdb.npz."""
    encoded = []
    for review in reviews:
        ids = np.concatenate([[START_CHAR], np.asarray(review, dtype=np.int64) + INDEX_FROM])
        ids[ids >= num_words] = OOV_CHAR
        encoded.append(ids)
    return encoded


def load_imdb_npz(path: Path, num_words: int = VOCAB_SIZE) -> Dataset:
    """Read a keras ``imdb.npz`` file (x_train, y_train, x_test, y_test of word-rank lists)."""
    try:
        with np.load(path, allow_pickle=True) as npz:
            arrays = {key: npz[key] for key in ("x_train", "y_train", "x_test", "y_test")}
    except FileNotFoundError:
        raise ExportError(f"--imdb-npz {path}: no such file") from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExportError(f"--imdb-npz {path}: not a readable imdb.npz ({reason})") from None
    rng = np.random.RandomState(IMDB_SHUFFLE_SEED)
    splits = []
    for x_key, y_key in (("x_train", "y_train"), ("x_test", "y_test")):
        x, y = arrays[x_key], arrays[y_key]
        if len(x) != len(y) or len(x) == 0:
            raise ExportError(f"--imdb-npz {path}: {x_key}/{y_key} are empty or differ in length")
        order = rng.permutation(len(x))
        splits.append((pad_pre(_encode_imdb(x[order], num_words)), y[order].astype(np.int32)))
    (x_train, y_train), (x_val, y_val) = splits
    return Dataset(x_train, y_train, x_val, y_val, source=f"imdb ({path})")


def download_imdb(timeout_s: float = 20.0) -> Path:
    """Fetch imdb.npz through keras' own cache; raises OSError-like errors when offline."""
    import keras

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        return Path(
            keras.utils.get_file(
                "imdb.npz",
                "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb.npz",
            )
        )
    finally:
        socket.setdefaulttimeout(previous)


def synthetic(
    n_train: int = 25000, n_val: int = 25000, seed: int = 0, num_words: int = VOCAB_SIZE
) -> Dataset:
    """A deterministic IMDB-like set whose labels follow from its words.

    Word ids follow a Zipf law over [INDEX_FROM, num_words) like word ranks in real text; lengths
    are log-normal around IMDB's median of ~175 words with its long tail; 100 "positive" and 100
    "negative" mid-frequency words are over-represented in reviews of their class, the way
    sentiment words are, while most tokens stay neutral.
    """
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, num_words - INDEX_FROM + 1, dtype=np.float64)
    zipf = 1.0 / ranks**1.07
    zipf /= zipf.sum()
    sentiment_pool = rng.permutation(np.arange(200, 5000))[:200] + INDEX_FROM
    polar = {1: sentiment_pool[:100], 0: sentiment_pool[100:]}

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 2, size=n).astype(np.int32)
        lengths = np.clip(rng.lognormal(mean=5.16, sigma=0.62, size=n), 10, 2500).astype(int)
        reviews = []
        for label, length in zip(labels, lengths, strict=True):
            words = rng.choice(len(zipf), size=length, p=zipf) + INDEX_FROM
            n_polar = max(1, rng.binomial(length, 0.12))
            own = rng.choice(polar[int(label)], size=n_polar)
            other = rng.choice(polar[1 - int(label)], size=rng.binomial(n_polar, 0.35))
            slots = rng.choice(length, size=len(own) + len(other), replace=True)
            words[slots] = np.concatenate([own, other])
            reviews.append(np.concatenate([[START_CHAR], words]))
        # Real reviews are not all unambiguous: flipping 10% of labels keeps accuracy IMDB-like
        # (~0.87-0.9) instead of a perfect score.
        noisy = np.where(rng.random(n) < 0.1, 1 - labels, labels).astype(np.int32)
        return pad_pre(reviews), noisy

    x_train, y_train = make(n_train)
    x_val, y_val = make(n_val)
    return Dataset(x_train, y_train, x_val, y_val, source="synthetic")


def load(kind: str, imdb_npz: Path | None, seed: int, samples: int | None) -> Dataset:
    """Resolve ``--data``: ``auto`` tries IMDB and falls back to synthetic with one warning."""
    if kind == "synthetic":
        n = samples or 25000
        return synthetic(n_train=n, n_val=n, seed=seed)
    if imdb_npz is not None:
        data = load_imdb_npz(imdb_npz)
    else:
        try:
            data = load_imdb_npz(download_imdb())
        except Exception as exc:  # offline, proxy, DNS, truncated download: all mean "no IMDB"
            if kind == "imdb":
                raise ExportError(f"--data imdb: could not download IMDB ({exc})") from None
            reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
            print(
                f"model_export: warning: IMDB unavailable ({reason}); "
                "training on the synthetic IMDB-like set instead",
                file=sys.stderr,
            )
            return load("synthetic", None, seed, samples)
    if samples:
        data = Dataset(
            data.x_train[:samples],
            data.y_train[:samples],
            data.x_val[:samples],
            data.y_val[:samples],
            data.source,
        )
    return data
