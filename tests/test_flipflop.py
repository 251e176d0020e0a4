"""Flip-flop language modeling: generation against a plain-Python statement of the rules, the
read-position mask, loss and glitch metrics on hand-built logits, Parquet data files, and tiny
end-to-end training on CPU.

Statistical checks use fixed seeds and 4-sigma bounds; training checks assert only what the fixed
seed reaches with a wide margin.
"""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from paretolab.orchestrator.grid import expand
from paretolab.spec import load_spec, parse_yaml
from paretolab.tasks.flipflop import READ, VOCAB, FlipFlop, FlipFlopArgs, generate, read_mask
from paretolab.tasks.registry import tasks
from paretolab.tasks.seeding import generator
from paretolab.workers.train import train

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture(autouse=True)
def one_thread():
    """Run these tiny models on one thread: on a loaded 2-core machine, torch's intra-op threads
    made the end-to-end tests 20x slower (53 s against 2.6 s, measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def text(seq: torch.Tensor) -> str:
    return "".join(VOCAB[int(t)] for t in seq)


def rules(s: str) -> list[int]:
    """Check `s` against the flip-flop rules in plain Python; return the positions of its read bits.

    `s` may lack its final bit (a model input: tokens 0..T-2); that read is then not checked."""
    assert s[0] == "w" and s[len(s) - 2 + len(s) % 2] == "r"
    reads, last = [], None
    for i in range(0, len(s), 2):
        op, bit = s[i], s[i + 1] if i + 1 < len(s) else None
        assert op in "wri" and bit in ("0", "1", None)
        if op == "w":
            last = bit
        elif op == "r":
            assert bit in (last, None), f"read at {i} gives {bit}, last written {last}"
            reads.append(i + 1)
    return reads


def python_sequence(rng: random.Random, length: int, p_ignore: float) -> str:
    """An FFL(p_ignore) sequence drawn in plain Python (for data files)."""
    out, last, n = [], None, length // 2
    for j in range(n):
        u = rng.random()
        op = "w" if j == 0 else "r" if j == n - 1 else "i" if u < p_ignore else "w" if u < (1 + p_ignore) / 2 else "r"
        bit = last if op == "r" else rng.choice("01")
        last = bit if op == "w" else last
        out += [op, bit]
    return "".join(out)


def oracle(x: torch.Tensor, flip_reads: bool = False, junk_elsewhere: bool = False) -> torch.Tensor:
    """Logits of a model that knows the rules (in plain Python): the last written bit after each
    `r` (or the other bit); after other tokens `i` (or `0`), which never matters for the glitch rate."""
    out = torch.zeros(*x.shape, len(VOCAB))
    for b, row in enumerate(x.tolist()):
        last = None
        for t, tok in enumerate(row):
            if t % 2 == 1 and row[t - 1] == VOCAB.index("w"):
                last = tok
            if tok == READ:
                out[b, t, last ^ 1 if flip_reads else last] = 10.0
            else:
                out[b, t, 0 if junk_elsewhere else VOCAB.index("i")] = 10.0
    return out


def eval_inputs(task: FlipFlop) -> list[torch.Tensor]:
    """The inputs `evaluate` shows the model: in-distribution, sparse, dense test sets (one call each
    at these sizes)."""
    seen = []
    task.evaluate(lambda x: seen.append(x.clone()) or torch.zeros(*x.shape, len(VOCAB)), "cross_entropy")
    return seen


def instruction_counts(seqs: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Counts of w, r, i among the instructions strictly between the first and the last."""
    middle = seqs[:, 0::2][:, 1:-1].flatten()
    return torch.stack([(middle == VOCAB.index(c)).sum() for c in "wri"]), middle.numel()


def within(count: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(count / n - p) <= sigmas * math.sqrt(p * (1 - p) / n) + 1e-12


# --------------------------------------------------------------- generation


def test_generated_sequences_follow_the_rules():
    task = FlipFlop(FlipFlopArgs(length=40, p_ignore=0.5), seed=0, test_size=100)
    x, y = task.train_batch(300)
    assert x.shape == y.shape == (300, 39) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one
    n_reads = 0
    for row in torch.cat([x[:, :1], y], dim=1):
        n_reads += len(rules(text(row)))
    assert n_reads > 300 * 2  # not only the final read: about 0.25 of 18 middle instructions
    for seqs in eval_inputs(task):
        for row in seqs:
            rules(text(row))  # inputs end with the final `r`: its bit is the target


def test_instruction_frequencies_match_p():
    g = generator(0, "stats")
    for p_write, p_read in ((0.1, 0.1), (0.3, 0.2), (0.45, 0.45)):
        seqs = generate(4000, 64, p_write, p_read, g)
        counts, n = instruction_counts(seqs)
        for count, p in zip(counts.tolist(), (p_write, p_read, 1 - p_write - p_read)):
            assert within(count, n, p), (p_write, p_read, counts, n)
        bits = seqs[:, 1::2][seqs[:, 0::2] != READ]
        assert within(int(bits.sum()), bits.numel(), 0.5)  # written and ignored bits are fair coins


def test_args_map_to_write_and_read_probabilities():
    assert FlipFlopArgs().probabilities() == pytest.approx((0.1, 0.1))
    assert FlipFlopArgs(p_ignore=0.5, p_write=0.3).probabilities() == pytest.approx((0.3, 0.2))
    assert FlipFlopArgs(p_ignore=0.6, p_write=0.4).probabilities() == pytest.approx((0.4, 0.0))


def test_test_sets_have_their_p():
    task = FlipFlop(FlipFlopArgs(length=64, p_ignore=0.6, ood_sparse_p=0.9, ood_dense_p=0.2), seed=1, test_size=800)
    ind, sparse, dense = eval_inputs(task)
    assert ind.shape == sparse.shape == dense.shape == (800, 63)
    for seqs, p_ignore in ((ind, 0.6), (sparse, 0.9), (dense, 0.2)):
        counts, n = instruction_counts(seqs)  # inputs keep the final `r`, at position 62
        for count, p in zip(counts.tolist(), ((1 - p_ignore) / 2, (1 - p_ignore) / 2, p_ignore)):
            assert within(count, n, p), (p_ignore, counts, n)


def test_default_ood_sets_are_ffl_098_and_01():
    task = FlipFlop(FlipFlopArgs(length=128), seed=0, test_size=400)
    _, sparse, dense = eval_inputs(task)
    for seqs, p_ignore in ((sparse, 0.98), (dense, 0.1)):
        counts, n = instruction_counts(seqs)
        assert within(int(counts[2]), n, p_ignore)


def test_same_seed_same_task_different_seed_different():
    a, b, c = (FlipFlop(FlipFlopArgs(length=32), seed=s, test_size=50) for s in (3, 3, 4))
    for _ in range(3):
        (xa, ya), (xb, yb), (xc, _) = a.train_batch(16), b.train_batch(16), c.train_batch(16)
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and not torch.equal(xa, xc)
    assert all(torch.equal(u, v) for u, v in zip(eval_inputs(a), eval_inputs(b)))
    assert not torch.equal(eval_inputs(a)[0], eval_inputs(c)[0])
    x_before, _ = a.train_batch(16)
    b.evaluate(lambda x: torch.zeros(*x.shape, 5), "cross_entropy")  # evaluating leaves the stream alone
    assert torch.equal(x_before, b.train_batch(16)[0])


def test_offline_batches_come_from_a_fixed_set():
    task = FlipFlop(FlipFlopArgs(length=32, train_size=10), seed=0, test_size=10)
    seen = {tuple(x.tolist()) for _ in range(40) for x in task.train_batch(16)[0]}
    assert len(seen) == 10
    online = FlipFlop(FlipFlopArgs(length=32), seed=0, test_size=10)
    assert len({tuple(x.tolist()) for _ in range(40) for x in online.train_batch(16)[0]}) > 600


# --------------------------------------------------------------- mask, loss, error, metrics


def test_read_mask_marks_exactly_the_bits_after_r():
    task = FlipFlop(FlipFlopArgs(length=48, p_ignore=0.4), seed=2, test_size=10)
    x, y = task.train_batch(50)
    mask = read_mask(y)
    for xs, ys, ms in zip(x, y, mask):
        reads = rules(text(torch.cat([xs[:1], ys])))
        assert torch.nonzero(ms).flatten().tolist() == [r - 1 for r in reads]  # target t is token t + 1


ERRORS = ("test_error", "glitch_rate_sparse", "glitch_rate_dense", "seq_error", "seq_error_sparse", "seq_error_dense")


def test_perfect_and_always_wrong_predictors():
    task = FlipFlop(FlipFlopArgs(length=32), seed=0, test_size=200)
    x, y = task.train_batch(64)
    assert float(task.error(oracle(x), y)) == 0.0
    assert float(task.error(oracle(x, junk_elsewhere=True), y)) == 0.0  # only reads count
    assert float(task.error(oracle(x, flip_reads=True), y)) == 1.0
    assert float(task.loss(oracle(x), y, "cross_entropy")) < 1e-3
    perfect = task.evaluate(oracle, "cross_entropy")
    assert perfect["test_loss"] < 1e-3
    for name in ERRORS:
        assert perfect[name] == 0.0, name
    assert perfect["test_acc"] == 1.0
    wrong = task.evaluate(lambda x: oracle(x, flip_reads=True), "cross_entropy")
    for name in ERRORS:
        assert wrong[name] == 1.0, name
    assert set(perfect) == set(FlipFlop.metrics)
    assert all(isinstance(v, float) for v in perfect.values())


def test_glitch_rate_counts_reads_and_seq_error_counts_sequences():
    task = FlipFlop(FlipFlopArgs(length=32, p_ignore=0.5), seed=0, test_size=300)
    ind = eval_inputs(task)[0]

    def one_glitch(x):  # wrong at the last read of every other sequence
        out = oracle(x)
        for b in range(0, len(x), 2):
            out[b, -1] = out[b, -1].flip(0)
        return out

    m = task.evaluate(one_glitch, "cross_entropy")
    n_reads = sum(len(rules(text(row))) for row in ind)
    assert m["test_error"] == pytest.approx(150 / n_reads)
    assert m["test_acc"] == pytest.approx(1 - 150 / n_reads)
    assert m["seq_error"] == pytest.approx(0.5)


def test_nan_outputs_are_glitches():
    task = FlipFlop(FlipFlopArgs(length=16), seed=0, test_size=20)
    x, y = task.train_batch(8)
    out = oracle(x)
    out[:, :, 0] = float("nan")
    assert float(task.error(out, y)) == 1.0


def test_clean_loss_is_on_reads_and_full_loss_everywhere():
    clean = FlipFlop(FlipFlopArgs(length=32), seed=0, test_size=100)
    full = FlipFlop(FlipFlopArgs(length=32, mode="full"), seed=0, test_size=100)
    x, y = clean.train_batch(32)
    assert torch.equal(x, full.train_batch(32)[0])  # the mode changes the loss, not the data
    uniform = torch.zeros(*x.shape, 5)
    assert float(clean.loss(uniform, y, "cross_entropy")) == pytest.approx(math.log(5))
    assert float(full.loss(uniform, y, "cross_entropy")) == pytest.approx(math.log(5))
    logits = torch.randn(*x.shape, 5, generator=torch.Generator().manual_seed(0))
    ce = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view_as(y)
    assert float(clean.loss(logits, y, "cross_entropy")) == pytest.approx(float(ce[read_mask(y)].mean()))
    assert float(full.loss(logits, y, "cross_entropy")) == pytest.approx(float(ce.mean()))
    # A perfect reader still pays for the coin flips in full mode, and the glitch metrics ignore them.
    m_clean, m_full = clean.evaluate(oracle, "cross_entropy"), full.evaluate(oracle, "cross_entropy")
    assert m_clean["test_loss"] < 1e-3 and m_full["test_loss"] > 1.0
    assert m_full["test_error"] == m_clean["test_error"] == 0.0


def test_evaluation_in_chunks_equals_one_pass(monkeypatch):
    import paretolab.tasks.flipflop as ff

    task = FlipFlop(FlipFlopArgs(length=32, p_ignore=0.5), seed=0, test_size=100)
    def noisy(x):  # row by row a deterministic function of the tokens so far, wrong at some reads
        return oracle(x) + 8 * torch.sin(x.unsqueeze(-1) * torch.arange(5) + x.cumsum(1).unsqueeze(-1))

    whole = task.evaluate(noisy, "cross_entropy")
    monkeypatch.setattr(ff, "EVAL_TOKENS", 32 * 7)  # chunks of 7 sequences, the last one short
    assert task.evaluate(noisy, "cross_entropy") == pytest.approx(whole)
    assert 0 < whole["test_error"] < 1


@pytest.mark.parametrize("args, message", [
    (FlipFlopArgs(length=31), "length must be even"),
    (FlipFlopArgs(length=2), "length must be even and >= 4"),
    (FlipFlopArgs(p_ignore=1.2), "p_ignore must be in"),
    (FlipFlopArgs(p_ignore=0.8, p_write=0.3), "p_ignore \\+ p_write must be <= 1"),
    (FlipFlopArgs(ood_dense_p=-0.1), "ood_dense_p"),
    (FlipFlopArgs(mode="half"), "mode must be"),
    (FlipFlopArgs(train_size=0), "train_size"),
    (FlipFlopArgs(data_path=" "), "data_path"),
])
def test_bad_args_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        args.check()


# --------------------------------------------------------------- Parquet data files


def write_rows(path: Path, rows: list, column: str = "text") -> Path:
    pq.write_table(pa.table({column: pa.array(rows, type=pa.string())}), path)
    return path


def test_training_sequences_come_from_the_parquet_rows(tmp_path):
    rng = random.Random(0)
    rows = [python_sequence(rng, 24, 0.5) for _ in range(12)]
    write_rows(tmp_path / "a.parquet", rows[:7])
    write_rows(tmp_path / "b.parquet", rows[7:])
    for path in (tmp_path, tmp_path / "*.parquet"):
        task = FlipFlop(FlipFlopArgs(length=24, data_path=str(path)), seed=0, test_size=10)
        drawn = [text(torch.cat([x[:1], y])) for _ in range(30) for x, y in zip(*task.train_batch(8))]
        assert set(drawn) == set(rows)  # every row, and nothing else (240 draws of 12 rows)
    only_a = FlipFlop(FlipFlopArgs(length=24, data_path=str(tmp_path / "a.parquet"), train_size=3), seed=0,
                      test_size=10)
    drawn = {text(torch.cat([x[:1], y])) for _ in range(20) for x, y in zip(*only_a.train_batch(8))}
    assert drawn == set(rows[:3])  # train_size keeps the first rows
    a, b = (FlipFlop(FlipFlopArgs(length=24, data_path=str(tmp_path)), seed=0, test_size=10) for _ in range(2))
    assert torch.equal(a.train_batch(8)[0], b.train_batch(8)[0])  # draws from the rows follow the seed


def test_data_path_keeps_the_test_sets_generated(tmp_path):
    rows = [python_sequence(random.Random(1), 16, 0.8) for _ in range(5)]
    path = write_rows(tmp_path / "d.parquet", rows)
    from_file = FlipFlop(FlipFlopArgs(length=16, data_path=str(path)), seed=0, test_size=50)
    generated = FlipFlop(FlipFlopArgs(length=16), seed=0, test_size=50)
    assert all(torch.equal(u, v) for u, v in zip(eval_inputs(from_file), eval_inputs(generated)))


GOOD = "w1i0r1w0r0"


@pytest.mark.parametrize("bad, message", [
    ("w1i0r1w0x0", "row 2: bad character 'x' at position 8"),
    ("w1i0r1w0ré", "row 2: bad character 'é' at position 9"),
    ("w1i0r1w0r", "row 2: 9 characters \\(odd"),
    ("w1i0r1w0r0w1", "row 2: 12 characters.*the task's length is 10"),
    ("i1i0r1w0r0", "row 2: starts with 'i'; a sequence starts with a write 'w'"),
    ("w1i0r1w0i0", "row 2: ends with 'i0'; a sequence ends with a read 'r'"),
    ("w1i0r1w001", "row 2: position 8 is '0', but even positions hold instructions"),
    ("w1i0rrw0r0", "row 2: position 5 is 'r', but odd positions hold bits"),
    ("w1i0r0w0r0", "row 2: the read at position 4 gives 0, but the last written bit is 1"),
    (None, "row 2: null text"),
])
def test_malformed_rows_are_refused_with_row_and_reason(tmp_path, bad, message):
    path = write_rows(tmp_path / "bad.parquet", [GOOD, GOOD, bad, GOOD])
    with pytest.raises(ValueError, match=f"bad.parquet: {message}"):
        FlipFlop(FlipFlopArgs(length=10, data_path=str(path)), seed=0, test_size=5)


def test_unusable_data_paths_are_refused(tmp_path):
    def make(path, **kw):
        return FlipFlop(FlipFlopArgs(length=10, data_path=str(path), **kw), seed=0, test_size=5)

    with pytest.raises(ValueError, match="no Parquet files found"):
        make(tmp_path / "missing.parquet")
    with pytest.raises(ValueError, match="no Parquet files found"):
        make(tmp_path)  # an empty folder
    with pytest.raises(ValueError, match="no 'text' column; columns: sequence"):
        make(write_rows(tmp_path / "c.parquet", [GOOD], column="sequence"))
    (tmp_path / "c.parquet").unlink()
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="junk.parquet: not a readable Parquet file"):
        make(tmp_path)
    ok = write_rows(tmp_path / "ok.parquet", [GOOD, GOOD])
    with pytest.raises(ValueError, match="train_size=3 but data_path .* has only 2 rows"):
        make(ok, train_size=3)
    pq.write_table(pa.table({"text": pa.array([1, 2])}), tmp_path / "ints.parquet")
    with pytest.raises(ValueError, match="holds int64, expected strings"):
        make(tmp_path / "ints.parquet")


# --------------------------------------------------------------- registry, specs, end to end


TINY = """\
sweep: ff-tiny
task: flipflop
task_args: {{length: 16}}
model: {model}
model_args: {model_args}
fixed: {{lr: {lr}, batch_size: 64, optimizer: adam}}
seeds: [0]
max_steps: {steps}
eval: {{every: {steps}, test_size: 300}}
success: {{metric: test_error, op: "<=", value: 0.02}}
"""


def run(spec: str):
    (trial,) = expand(parse_yaml(spec))
    gen, rows = train(trial, 1), []
    while True:
        try:
            rows.append(next(gen))
        except StopIteration as stop:
            return rows, stop.value


def test_registered_with_sequence_io():
    assert tasks()["flipflop"] is FlipFlop
    io = FlipFlop.io(FlipFlopArgs(length=64))
    assert (io.kind, io.input_dim, io.output_dim, io.length) == ("sequence", 5, 5, 64)
    assert FlipFlop.losses[0] == "cross_entropy"


def test_lstm_learns_flipflop_16():
    rows, result = run(TINY.format(model="lstm", model_args="{hidden: 32}", lr=0.01, steps=100))
    assert rows[0].values["test_error"] > 0.4  # untrained
    assert result.status == "finished" and result.success
    assert rows[-1].values["test_error"] <= 0.02 and rows[-1].values["seq_error"] <= 0.05


@pytest.mark.slow  # training
def test_tiny_transformer_learns_something_on_flipflop_16():
    rows, result = run(TINY.format(model="transformer", model_args="{n_layers: 2, d_model: 32, n_heads: 2}",
                                   lr=0.003, steps=300))
    assert result.status == "finished"
    assert rows[-1].values["test_error"] < 0.25 < rows[0].values["test_error"]
    assert set(rows[-1].values) == {"train_loss", "train_error", *FlipFlop.metrics}


def test_example_spec_expands():
    sweep = load_spec(EXAMPLES / "flipflop.yaml")
    trials = list(expand(sweep))
    assert trials and {t.task for t in trials} == {"flipflop"}
    assert {dataclasses.asdict(t.task_args)["length"] for t in trials} == {512}
    assert sweep.success.metric == "test_error"
