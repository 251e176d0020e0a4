"""Language modelling: next-token prediction on a text corpus, byte-level, for loss-scaling sweeps.

The corpus is a plain-text file, a Parquet file with a `text` column, or `stdlib`: the Python
standard library's own `.py` sources, which every machine with Python has, so an example needs no
download. Tokens are bytes (a vocabulary of 256: UTF-8 text is its bytes, any file is a corpus).
The last `test_fraction` of the corpus is held out, a fixed split; the model is scored on fixed,
non-overlapping windows of it, and trained on windows of `context` + 1 tokens drawn at random
positions of the rest by the trial's seed. A sample is one window: `context` predicted tokens, so
the FLOPs per sample the worker records (6 x parameters x tokens, `vocabulary.schema`) are
6 x n_params x context, and `samples x flops_per_sample / (6 n_params)` is the tokens trained on,
the D of a Chinchilla fit (Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models").
"""

from __future__ import annotations

import functools
import math
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from paretolab.tasks.lazy import F, no_grad, torch

from paretolab.vocabulary.errors import shown
from paretolab.tasks.base import IO, Task
from paretolab.tasks.seeding import generator

VOCAB = 256  # byte-level: a token is one byte
STDLIB = "stdlib"  # the corpus value that reads the standard library's .py sources
# Folders of the standard library's tree left out of `stdlib`: installed packages (they differ
# between machines), the test suites (some distributions ship them apart) and bytecode caches.
STDLIB_SKIPPED = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})
SEPARATOR = b"\n"  # between two documents (files of `stdlib`, rows of a Parquet corpus)
# Test windows go through the model in chunks of about this many tokens (as flip-flop's do), so a
# long held-out text does not materialize every attention matrix at once.
EVAL_TOKENS = 2**16


@dataclass(frozen=True)
class LMArgs:
    """Arguments of byte-level language modelling.

    corpus: `stdlib` (the standard library's `.py` sources of the Python that runs the trial, files
    in sorted order of their paths, test suites and installed packages left out), a path to a
    Parquet file (`.parquet`: its `text` column, rows in order) or a path to any other file, read as
    plain text (its bytes). Documents (files, rows) are joined by one newline. max_bytes: the
    corpus is its first max_bytes bytes (None: all of it). context: tokens the model predicts per
    window (it reads context tokens and predicts each next one). test_fraction: the last part of
    the (capped) corpus held out for evaluation, never trained on. test_tokens: held-out tokens
    scored at each evaluation, from the start of the held-out part, in whole windows (at least one);
    None: `eval.test_size` windows.
    """

    corpus: str = STDLIB
    max_bytes: int | None = None
    context: int = 64
    test_fraction: float = 0.1
    test_tokens: int | None = None

    def check(self) -> None:
        if self.context < 1:
            raise ValueError(f"context must be >= 1, got {self.context}")
        if self.max_bytes is not None and self.max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1 or null (the whole corpus), got {self.max_bytes}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.test_tokens is not None and self.test_tokens < 1:
            raise ValueError(f"test_tokens must be >= 1 or null (eval.test_size windows), got {self.test_tokens}")
        size = corpus_size(self.corpus)  # raises on a missing file or a Parquet file without `text`
        if size is not None:  # a Parquet corpus's size is known once read (by the trial)
            self.split(min(size, self.max_bytes or size))

    def split(self, n: int) -> int:
        """The tokens of the training part of a corpus of `n` tokens (the rest is held out).

        Raises:
            ValueError: either part is shorter than one window, or the held-out part than `test_tokens`.
        """
        n_test = int(n * self.test_fraction)
        n_train = n - n_test
        window = self.context + 1
        where = f"corpus {shown(self.corpus)}" + (f" (its first {self.max_bytes} bytes)" if self.max_bytes else "")
        if n_train < window or n_test < window:
            raise ValueError(f"{where} holds {n} tokens: {n_train} to train on and {n_test} held out "
                             f"(test_fraction={self.test_fraction}), but each part needs at least one window of "
                             f"context + 1 = {window} tokens; use a longer corpus or a smaller context")
        if self.test_tokens is not None and n_test < test_span(self.test_tokens, self.context):
            raise ValueError(f"test_tokens={self.test_tokens} needs {test_span(self.test_tokens, self.context)} "
                             f"held-out tokens, but the {where} holds {n_test} (the last {self.test_fraction} of "
                             f"{n}); lower test_tokens or raise test_fraction or max_bytes")
        return n_train


def test_windows(test_tokens: int, context: int) -> int:
    """Windows scored for `test_tokens` held-out tokens: whole windows of `context`, at least one."""
    return max(1, test_tokens // context)


def test_span(test_tokens: int, context: int) -> int:
    """Held-out tokens that `test_tokens` scored tokens read (windows overlap by one token)."""
    return test_windows(test_tokens, context) * context + 1


# ------------------------------------------------------------------------------ the tokenizer


def encode(text: str | bytes) -> torch.Tensor:
    """The token ids of `text`: its UTF-8 bytes, as a uint8 tensor."""
    import numpy as np

    data = text.encode() if isinstance(text, str) else bytes(text)
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy())


def decode(ids: torch.Tensor) -> bytes:
    """The bytes of token ids `ids` (`encode`'s inverse); `.decode(errors="replace")` reads them as text."""
    return bytes(ids.to(torch.uint8).cpu().tolist())


# ------------------------------------------------------------------------------ the corpus


def corpus_size(corpus: str) -> int | None:
    """The bytes of `corpus` before any cap, None for a Parquet corpus (known once read).

    Raises:
        ValueError: no such file, a Parquet file that cannot be read or has no string `text` column.
    """
    if corpus == STDLIB:
        files = stdlib_files()
        return sum(size for _, size in files) + len(SEPARATOR) * (len(files) - 1)
    path = _path(corpus)
    if _is_parquet(path):
        _text_column(path)
        return None
    return path.stat().st_size  # a plain-text corpus is its bytes


def stdlib_files() -> tuple[tuple[str, int], ...]:
    """(path, bytes) of the `.py` files of `stdlib`, sorted by their path below the standard library's folder."""
    root = Path(sysconfig.get_paths()["stdlib"])
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in STDLIB_SKIPPED]
        found += [os.path.join(folder, f) for f in files if f.endswith(".py")]
    found.sort(key=lambda f: Path(f).relative_to(root).as_posix())
    return tuple((f, os.stat(f).st_size) for f in found)


def read_corpus(corpus: str, max_bytes: int | None) -> torch.Tensor:
    """The tokens of `corpus` (see `LMArgs`), its first `max_bytes`, as a uint8 tensor on the CPU.

    Cached per process for the last two corpora read (a worker trains trial after trial), keyed by
    the files' sizes and modification times, so a changed file is read again.

    Raises:
        ValueError: as `corpus_size`; a null row of a Parquet corpus.
    """
    if corpus == STDLIB:
        files = stdlib_files()
        stamps = tuple((f, os.stat(f).st_mtime_ns, size) for f, size in files)
    else:
        path = _path(corpus)
        stamps = ((str(path), path.stat().st_mtime_ns, path.stat().st_size),)
    return _read_cached(corpus, stamps, max_bytes)


@functools.lru_cache(maxsize=2)
def _read_cached(corpus: str, stamps: tuple[tuple[str, int, int], ...], max_bytes: int | None) -> torch.Tensor:
    limit = math.inf if max_bytes is None else max_bytes
    if corpus == STDLIB:
        parts, total = [], 0
        for file, _, _ in stamps:
            if total >= limit:
                break
            parts.append(Path(file).read_bytes())
            total += len(parts[-1]) + len(SEPARATOR)
        data = SEPARATOR.join(parts)
    elif _is_parquet(Path(stamps[0][0])):
        data = SEPARATOR.join(_parquet_rows(Path(stamps[0][0])))
    else:
        with open(stamps[0][0], "rb") as f:
            data = f.read() if max_bytes is None else f.read(max_bytes)
    return encode(data if max_bytes is None else data[:max_bytes])


def _path(corpus: str) -> Path:
    if not corpus.strip():
        raise ValueError(f"corpus must be {STDLIB!r} or a path to a text or Parquet file, got an empty string")
    path = Path(corpus).expanduser()
    if not path.is_file():
        raise ValueError(f"corpus {shown(corpus)}: no such file (give a path to a text file, a .parquet file "
                         f"with a 'text' column, or {STDLIB!r})")
    return path


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _text_column(path: Path):
    """The type of the `text` column of the Parquet file at `path`, checked to hold text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as e:
        raise ValueError(f"corpus {shown(str(path))}: not a readable Parquet file ({e})") from None
    if "text" not in schema.names:
        raise ValueError(f"corpus {shown(str(path))}: no 'text' column; columns: {', '.join(schema.names)}")
    kind = schema.field("text").type
    if not any(is_(kind) for is_ in (pa.types.is_string, pa.types.is_large_string,
                                     pa.types.is_binary, pa.types.is_large_binary)):
        raise ValueError(f"corpus {shown(str(path))}: the 'text' column holds {kind}, expected strings")
    return kind


def _parquet_rows(path: Path) -> list[bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    _text_column(path)
    column = pq.read_table(path, columns=["text"]).column("text").combine_chunks()
    if column.null_count:
        row = column.is_null().to_pylist().index(True)
        raise ValueError(f"corpus {shown(str(path))}: row {row} of the 'text' column is null")
    return column.cast(pa.large_binary()).to_pylist()


# ------------------------------------------------------------------------------ the task


class LanguageModel(Task):
    """Next-token prediction; `x` is `(B, context)` token ids, `y` the next token at each position.

    Metrics: `test_loss`, the cross-entropy in nats per token on the held-out windows;
    `test_bits_per_byte`, the same in bits (a token is a byte); `test_error`, the fraction of
    held-out tokens whose most likely prediction is wrong, and `test_acc`; `tokens_seen`, the tokens
    trained on so far: `samples` x `context` (every sample is one window of `context` predicted tokens).
    """

    name: ClassVar[str] = "lm"
    Args: ClassVar[type] = LMArgs
    losses: ClassVar[tuple[str, ...]] = ("cross_entropy",)
    metrics: ClassVar[tuple[str, ...]] = ("test_loss", "test_bits_per_byte", "test_error", "test_acc", "tokens_seen")

    def __init__(self, args: LMArgs, seed: int, test_size: int, device: str = "cpu"):
        self.args, self.device = args, device
        tokens = read_corpus(args.corpus, args.max_bytes)
        n_train = args.split(len(tokens))
        windows = test_size if args.test_tokens is None else test_windows(args.test_tokens, args.context)
        held_out = tokens[n_train:]
        if len(held_out) < windows * args.context + 1:
            raise ValueError(f"eval.test_size={test_size} windows of context + 1 = {args.context + 1} tokens need "
                             f"{windows * args.context + 1} held-out tokens, but corpus {shown(args.corpus)} holds "
                             f"{len(held_out)}; lower test_size, set test_tokens, or raise test_fraction")
        # Fixed windows, the same for every seed: window k is held-out tokens k*context .. (k+1)*context.
        self._test = held_out[: windows * args.context + 1].unfold(0, args.context + 1, args.context).to(device)
        self._train = tokens[:n_train].to(device)
        self._positions = torch.arange(args.context + 1, device=device)
        self._data = generator(seed, "data", device)
        self._tokens_seen = 0  # predicted tokens of the training windows drawn so far

    @staticmethod
    def io(args: LMArgs) -> IO:
        return IO("sequence", input_dim=VOCAB, output_dim=VOCAB, length=args.context)

    def train_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, len(self._train) - self.args.context, (batch_size,), generator=self._data,
                               device=self.device)
        window = self._train[starts.unsqueeze(1) + self._positions].long()
        self._tokens_seen += batch_size * self.args.context
        return window[:, :-1], window[:, 1:]

    def loss(self, out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
        return F.cross_entropy(out.flatten(0, 1), y.flatten())

    def error(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _wrong(out, y).float().mean()

    def packed_loss(self, out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
        """Per-member `loss` of outputs `(P, B, context, 256)`: each member's mean over its tokens."""
        P = y.shape[0]
        return F.cross_entropy(out.flatten(0, 2), y.flatten(), reduction="none").view(P, -1).mean(dim=1)

    def packed_error(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _wrong(out, y).view(y.shape[0], -1).float().mean(dim=1)

    @no_grad
    def evaluate(self, forward, kind: str) -> dict[str, float]:
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)
        for chunk in self._test.split(max(1, EVAL_TOKENS // self.args.context)):
            window = chunk.long()
            out, y = forward(window[:, :-1]), window[:, 1:]
            ce = F.cross_entropy(out.flatten(0, 1).float(), y.flatten(), reduction="sum")
            totals += torch.stack([ce.double(), _wrong(out, y).sum().double()])
        loss, wrong = (t / self._test[:, 1:].numel() for t in totals.tolist())  # one device sync
        return {"test_loss": loss, "test_bits_per_byte": loss / math.log(2), "test_error": wrong,
                "test_acc": 1.0 - wrong, "tokens_seen": float(self._tokens_seen)}


def _wrong(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # A NaN logit wins argmax; counting any non-finite output as wrong keeps NaN from ever being right.
    return (out.argmax(dim=-1) != y) | ~torch.isfinite(out).all(dim=-1)
