"""Flip-flop language modeling FFL(T, p) ("Exposing Attention Glitches with Flip-Flop Language
Modeling", Liu, Ash, Goel, Krishnamurthy, Zhang, 2023).

A sequence of T tokens alternates instructions and bits: `w b` writes the bit b, `i b` is ignored
(b is noise), `r b` reads, and b must equal the last written bit. Every sequence starts with a write
and ends with a read. FFL(p) draws the instructions between them independently: ignore with
probability p, write and read with probability (1 - p) / 2 each.

The model is a causal language model: it reads tokens 0..T-2 and predicts tokens 1..T-1. Only the
bits that follow `r` are determined by the past; an error there is a "glitch". Besides the
in-distribution test set, the paper's out-of-distribution sets FFL(0.98) (sparse: long gaps between
write and read) and FFL(0.1) (dense: many writes and reads) measure glitches the training
distribution rarely shows.

Token ids (fixed; `VOCAB[i]` is the character of id i, as in the text of the public dataset
synthseq/flipflop): 0 -> "0", 1 -> "1", 2 -> "w", 3 -> "r", 4 -> "i". Bits are their own ids.
"""

from __future__ import annotations

import functools
import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from paretolab.tasks.lazy import F, no_grad, torch

from paretolab.vocabulary.errors import shown
from paretolab.tasks.base import IO, Task
from paretolab.tasks.seeding import generator

VOCAB = "01wri"
ZERO, ONE, WRITE, READ, IGNORE = range(5)

# Test sequences go through the model in chunks of about this many tokens, so that evaluating a
# 512-token transformer on thousands of sequences does not materialize every attention matrix at once.
EVAL_TOKENS = 2**16
# Rows of a data file are checked in chunks of this many, to bound the memory of the check.
CHECK_ROWS = 2**15


@dataclass(frozen=True)
class FlipFlopArgs:
    """Arguments of flip-flop language modeling.

    length: tokens per sequence T (even, >= 4). p_ignore: probability of `i` among the instructions
    between the first write and the last read. p_write: probability of `w`; None means
    (1 - p_ignore) / 2, the paper's FFL(p_ignore); reads take the rest. mode: `clean` trains on the
    read bits only; `full` is next-token prediction at every position (the bits after `w` and `i`
    are coin flips, so its loss cannot reach 0). ood_sparse_p / ood_dense_p: p_ignore of the two
    out-of-distribution test sets (always with p_write = p_read). train_size: a fixed training set
    of that many sequences, or None for a fresh batch every step. data_path: a Parquet file, a
    folder of them or a glob, with a `text` column of sequences such as "w1i0r1"; training
    sequences are then drawn from its rows (the first train_size rows, when set) instead of
    generated. The test sets are always generated.
    """

    length: int = 512
    p_ignore: float = 0.8
    p_write: float | None = None
    mode: Literal["clean", "full"] = "clean"
    ood_sparse_p: float = 0.98
    ood_dense_p: float = 0.1
    train_size: int | None = None
    data_path: str | None = None

    def check(self) -> None:
        if self.length < 4 or self.length % 2:
            raise ValueError(f"length must be even and >= 4 (instruction, bit pairs from a write to a read), "
                             f"got {self.length}")
        for name in ("p_ignore", "ood_sparse_p", "ood_dense_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.p_write is not None and not 0.0 <= self.p_write <= 1.0:
            raise ValueError(f"p_write must be in [0, 1] or null, got {self.p_write}")
        if self.p_write is not None and self.p_ignore + self.p_write > 1.0 + 1e-9:
            raise ValueError(f"p_ignore + p_write must be <= 1 (reads take the rest), got "
                             f"{self.p_ignore} + {self.p_write} = {self.p_ignore + self.p_write}")
        if self.mode not in ("clean", "full"):
            raise ValueError(f"mode must be 'clean' or 'full', got {shown(self.mode)}")
        if self.train_size is not None and self.train_size < 1:
            raise ValueError(f"train_size must be >= 1 or null (online), got {self.train_size}")
        if self.data_path is not None and not self.data_path.strip():
            raise ValueError("data_path must be a path to Parquet files or null, got an empty string")

    def probabilities(self) -> tuple[float, float]:
        """(p_write, p_read) of the training distribution."""
        p_write = (1.0 - self.p_ignore) / 2 if self.p_write is None else self.p_write
        return p_write, max(0.0, 1.0 - self.p_ignore - p_write)


def generate(m: int, length: int, p_write: float, p_read: float, g: torch.Generator,
             device: str = "cpu") -> torch.Tensor:
    """`m` flip-flop sequences of `length` tokens as a `(m, length)` uint8 tensor of token ids.

    Instructions 1..length/2-2 are write / read / ignore with probabilities p_write, p_read and the
    rest; the first is a write, the last a read. Written and ignored bits are fair coins.
    """
    n = length // 2
    u = torch.rand(m, n, generator=g, device=device)
    instr = torch.full((m, n), IGNORE, dtype=torch.uint8, device=device)
    instr[u < p_write + p_read] = READ
    instr[u < p_write] = WRITE
    instr[:, 0], instr[:, -1] = WRITE, READ
    bits = torch.randint(0, 2, (m, n), generator=g, device=device, dtype=torch.uint8)
    bits = torch.where(instr == READ, last_written(instr, bits), bits)
    return torch.stack([instr, bits], dim=2).reshape(m, length)


def last_written(instr: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """For each pair (batch, pair index), the bit of the last write at or before it (`(m, n)`, like `bits`).

    Every sequence must start with a write."""
    # The j-th write of a row stores its bit in column j of `held`; each pair then reads the column
    # of the writes counted so far. Non-writes all land in a spare last column that is never read.
    # (A scatter and a gather: 3 ms against 18 ms for a cummax of the last write position, on CPU
    # for 256 x 256 pairs, measured.)
    is_write = instr == WRITE
    count = is_write.cumsum(dim=1) - 1
    held = torch.zeros(instr.shape[0], instr.shape[1] + 1, dtype=bits.dtype, device=bits.device)
    held.scatter_(1, torch.where(is_write, count, instr.shape[1]), bits)
    return held.gather(1, count)


def read_mask(y: torch.Tensor) -> torch.Tensor:
    """Where the targets `y` (`(B, T-1)`, tokens 1..T-1) are read bits: the targets right after an `r`.

    Target 0 is a bit after the opening write, never a read."""
    mask = torch.zeros_like(y, dtype=torch.bool)
    mask[:, 1:] = y[:, :-1] == READ
    return mask


class FlipFlop(Task):
    """Flip-flop language modeling; `x` is tokens 0..T-2, `y` tokens 1..T-1 (both `(B, T-1)` int64).

    The read positions are recovered from `y` itself (`read_mask`), so `y` is the plain next-token
    target in both modes. `loss` is the cross-entropy over the read positions (`clean`) or over every
    position (`full`); `error` and every glitch metric count the read positions only, the prediction
    being the argmax over all 5 tokens.
    """

    name: ClassVar[str] = "flipflop"
    Args: ClassVar[type] = FlipFlopArgs
    losses: ClassVar[tuple[str, ...]] = ("cross_entropy",)
    metrics: ClassVar[tuple[str, ...]] = (
        "test_loss", "test_error", "test_acc", "glitch_rate_sparse", "glitch_rate_dense",
        "seq_error", "seq_error_sparse", "seq_error_dense",
    )
    pack_free: ClassVar[tuple[str, ...]] = ("train_size",)

    def __init__(self, args: FlipFlopArgs, seed: int, test_size: int, device: str = "cpu"):
        self.args = args
        self.device = device
        T = args.length
        p_write, p_read = args.probabilities()
        self._test = generate(test_size, T, p_write, p_read, generator(seed, "test", device), device)
        self._ood = {
            suffix: generate(test_size, T, (1 - p) / 2, (1 - p) / 2, generator(seed, f"test{suffix}", device), device)
            for suffix, p in (("_sparse", args.ood_sparse_p), ("_dense", args.ood_dense_p))
        }
        self._data = generator(seed, "data", device)
        self._train: torch.Tensor | None = None
        if args.data_path is not None:
            rows = read_sequences(args.data_path, T)
            if args.train_size is not None:
                if args.train_size > len(rows):
                    raise ValueError(f"train_size={args.train_size} but data_path {shown(args.data_path)} "
                                     f"has only {len(rows)} rows")
                rows = rows[: args.train_size]
            self._train = rows.to(device)
        elif args.train_size is not None:
            self._train = generate(args.train_size, T, p_write, p_read, self._data, device)

    @staticmethod
    def io(args: FlipFlopArgs) -> IO:
        # The model sees T - 1 tokens; `length` is an upper bound (see `IO`).
        return IO("sequence", input_dim=len(VOCAB), output_dim=len(VOCAB), length=args.length)

    def train_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._train is None:
            seq = generate(batch_size, self.args.length, *self.args.probabilities(), self._data, self.device)
        else:
            idx = torch.randint(0, len(self._train), (batch_size,), generator=self._data, device=self.device)
            seq = self._train[idx]
        seq = seq.long()
        return seq[:, :-1], seq[:, 1:]

    def loss(self, out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
        if self.args.mode == "clean":
            read = read_mask(y)
            return F.cross_entropy(out[read], y[read])
        return F.cross_entropy(out.flatten(0, 1), y.flatten())

    def error(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _wrong(out, y)[read_mask(y)].float().mean()

    def packed_loss(self, out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
        """Per-member `loss` of outputs `(P, B, T-1, 5)`: each member's mean over its own read
        positions (`clean`) or over all its positions (`full`). Every sequence ends with a read, so
        no member has none."""
        P = y.shape[0]
        ce = F.cross_entropy(out.flatten(0, 2), y.flatten(), reduction="none").view(P, -1)
        if self.args.mode == "full":
            return ce.mean(dim=1)
        read = read_mask(y.flatten(0, 1)).view(P, -1)
        # `where`, not a product: a non-finite score at a position the loss ignores stays ignored
        return torch.where(read, ce, 0.0).sum(dim=1) / read.sum(dim=1)

    def packed_error(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-member `error`: wrong reads over reads, each member's own."""
        P = y.shape[0]
        read = read_mask(y.flatten(0, 1)).view(P, -1)
        wrong = _wrong(out, y).view(P, -1) & read
        return wrong.sum(dim=1).float() / read.sum(dim=1).float()

    @no_grad
    def evaluate(self, forward, kind: str) -> dict[str, float]:
        loss_sum, loss_count, wrong, reads, bad_seqs = self._score(forward, self._test, with_loss=True)
        error = wrong / reads
        metrics = {"test_loss": loss_sum / loss_count, "test_error": error, "test_acc": 1.0 - error,
                   "seq_error": bad_seqs / len(self._test)}
        for suffix, seqs in self._ood.items():
            _, _, wrong, reads, bad_seqs = self._score(forward, seqs, with_loss=False)
            metrics[f"glitch_rate{suffix}"] = wrong / reads
            metrics[f"seq_error{suffix}"] = bad_seqs / len(seqs)
        return metrics

    def _score(self, forward, seqs: torch.Tensor, with_loss: bool) -> list[float]:
        """[loss sum, loss terms, wrong reads, reads, sequences with a wrong read] over `seqs`."""
        totals = torch.zeros(5, dtype=torch.float64, device=self.device)
        for chunk in seqs.split(max(1, EVAL_TOKENS // self.args.length)):
            seq = chunk.long()
            y = seq[:, 1:]
            out = forward(seq[:, :-1])
            read = read_mask(y)
            wrong = _wrong(out, y) & read
            counted = read if self.args.mode == "clean" else torch.ones_like(read)
            ce = F.cross_entropy(out[counted].float(), y[counted], reduction="sum") if with_loss else out.new_zeros(())
            parts = (ce, counted.sum(), wrong.sum(), read.sum(), wrong.any(dim=1).sum())
            totals += torch.stack([t.double() for t in parts])
        return totals.tolist()  # one device sync per test set


def _wrong(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # A NaN logit wins argmax; counting any non-finite output as wrong keeps NaN from ever being right.
    return (out.argmax(dim=-1) != y) | ~torch.isfinite(out).all(dim=-1)


# --------------------------------------------------------------- sequences from Parquet files


def read_sequences(path: str, length: int) -> torch.Tensor:
    """The rows of the `text` column of the Parquet file(s) at `path`, as a `(rows, length)` uint8 tensor of ids.

    `path` is a file, a folder (its `*.parquet` files) or a glob; files are read in sorted order.
    Results are cached per process for the last path read (a worker trains trial after trial).

    Raises:
        ValueError: no file matches, a file has no string `text` column, or a row is not a flip-flop
            sequence of `length` tokens; the message names the file, the row and the problem.
    """
    files = _files(path)
    stamps = tuple((f, os.stat(f).st_mtime_ns, os.stat(f).st_size) for f in files)
    return _read_cached(stamps, length)


def _files(path: str) -> list[str]:
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(str(f) for f in p.glob("*.parquet"))
    elif any(c in path for c in "*?["):
        files = sorted(f for f in glob.glob(str(p)) if Path(f).is_file())
    else:
        files = [str(p)] if p.is_file() else []
    if not files:
        raise ValueError(f"data_path {shown(path)}: no Parquet files found "
                         f"(give a file, a folder of .parquet files or a glob)")
    return files


@functools.lru_cache(maxsize=1)
def _read_cached(stamps: tuple[tuple[str, int, int], ...], length: int) -> torch.Tensor:
    rows = torch.cat([_read_file(f, length) for f, _, _ in stamps])
    if len(rows) == 0:
        raise ValueError(f"data_path: the files {[f for f, _, _ in stamps]} hold no rows")
    return rows


def _read_file(file: str, length: int) -> torch.Tensor:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(file)
        names = parquet.schema_arrow.names
        if "text" not in names:
            raise ValueError(f"{file}: no 'text' column; columns: {', '.join(names)}")
        col = parquet.read(columns=["text"]).column("text").combine_chunks()
    except (OSError, pa.ArrowException) as e:
        raise ValueError(f"{file}: not a readable Parquet file ({e})") from None
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise ValueError(f"{file}: the 'text' column holds {col.type}, expected strings such as 'w1i0r1'")
    if col.null_count:
        row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise ValueError(f"{file}: row {row}: null text")
    raw = col.cast(pa.large_binary())
    n_bytes = pc.binary_length(raw).to_numpy()
    if len(raw) and (bad := np.flatnonzero(n_bytes != length)).size:
        raise ValueError(f"{file}: row {bad[0]}: {_length_problem(col[int(bad[0])].as_py(), length)}")
    offsets = np.frombuffer(raw.buffers()[1], dtype=np.int64)[raw.offset: raw.offset + len(raw) + 1]
    data = np.frombuffer(raw.buffers()[2], dtype=np.uint8)[offsets[0]: offsets[-1]].reshape(len(raw), length)
    lookup = np.full(256, 255, dtype=np.uint8)
    lookup[np.frombuffer(VOCAB.encode(), dtype=np.uint8)] = np.arange(len(VOCAB), dtype=np.uint8)
    ids = torch.from_numpy(lookup[data])
    for start in range(0, len(ids), CHECK_ROWS):
        _check_rows(ids[start: start + CHECK_ROWS], data[start: start + CHECK_ROWS], start, file)
    return ids


def _length_problem(text: str, length: int) -> str:
    bad = next((c for c in text if c not in VOCAB), None)
    if bad is not None and len(text) == length:
        return f"bad character {bad!r} at position {text.index(bad)}; allowed: {', '.join(VOCAB)}"
    odd = " (odd: instructions and bits must alternate)" if len(text) % 2 else ""
    return f"{len(text)} characters{odd}, but the task's length is {length}; set length to the data's"


def _check_rows(ids: torch.Tensor, data, start: int, file: str) -> None:
    """Raise on the first row of `ids` (ids of the raw bytes `data`; row 0 is row `start` of `file`)
    that is not a flip-flop sequence."""
    def fail(bad: torch.Tensor, problem) -> None:
        if bad.any():
            r, p = divmod(int(bad.flatten().nonzero()[0]), bad.shape[1])
            raise ValueError(f"{file}: row {start + r}: {problem(r, p)}")

    def char(token: torch.Tensor) -> str:
        return VOCAB[int(token)]

    fail(ids == 255, lambda r, p: f"bad character {chr(data[r, p])!r} at position {p}; allowed: {', '.join(VOCAB)}")
    instr, bits = ids[:, 0::2], ids[:, 1::2]
    fail(instr < WRITE, lambda r, p: f"position {2 * p} is {char(instr[r, p])!r}, but even positions "
                                      f"hold instructions (w, r, i)")
    fail(bits > ONE, lambda r, p: f"position {2 * p + 1} is {char(bits[r, p])!r}, but odd positions hold bits (0, 1)")
    fail(instr[:, :1] != WRITE, lambda r, p: f"starts with {char(instr[r, 0])!r}; a sequence starts with a write 'w'")
    fail(instr[:, -1:] != READ, lambda r, p: f"ends with {char(instr[r, -1]) + char(bits[r, -1])!r}; "
                                              f"a sequence ends with a read 'r' and its bit")
    written = last_written(instr, bits)
    fail((instr == READ) & (bits != written), lambda r, p: f"the read at position {2 * p} gives {int(bits[r, p])}, "
                                                           f"but the last written bit is {int(written[r, p])}")
