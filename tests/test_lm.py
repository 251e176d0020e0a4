"""The language-modelling task `lm`: byte-level tokens, a fixed held-out tail, training windows by
the seed, spec-time errors for bad corpora, its FLOPs (6 x parameters x context per window), packed
training, and a real grid run through `paretolab.run` fitted with the Chinchilla form."""

from __future__ import annotations

import math
import sysconfig
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import paretolab
from paretolab.errors import SpecError
from paretolab.orchestrator.grid import expand
from paretolab.spec import load_spec, parse_yaml
from paretolab.tasks.lm import LanguageModel, LMArgs, decode, encode, read_corpus, stdlib_files
from paretolab.workers.packed import pack_key
from support import packed, solo

pytestmark = pytest.mark.usefixtures("one_thread")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "lm_scaling.yaml"
SPEC = """\
sweep: {name}
task: lm
task_args: {task_args}
model: {model}
model_args: {model_args}
grid:
  {axis}: {values}
fixed: {{lr: 0.01, batch_size: {batch_size}, optimizer: adamw}}
seeds: 1
max_steps: {max_steps}
eval: {{every: {every}, test_size: 4}}
success: {{metric: test_loss, op: "<=", value: 0}}
"""
SIZES = {"transformer": ("d_model", [8, 16], "{n_layers: 1, n_heads: 1}"), "lstm": ("hidden", [8, 16], "{}")}


def spec(task_args: str, model: str = "transformer", name: str = "lm", max_steps: int = 20, every: int = 10,
         batch_size: int = 4, values=None) -> str:
    axis, default_values, model_args = SIZES[model]
    return SPEC.format(name=name, task_args=task_args, model=model, model_args=model_args, axis=axis,
                       values=values or default_values, batch_size=batch_size, max_steps=max_steps, every=every)


@pytest.fixture
def corpus(tmp_path) -> Path:
    """A 4,000-byte text file of random printable bytes (seeded): every window is found where it came from."""
    g = torch.Generator().manual_seed(0)
    path = tmp_path / "corpus.txt"
    path.write_bytes(bytes((torch.randint(32, 127, (4000,), generator=g)).tolist()))
    return path


def task(path: Path, seed: int = 0, test_size: int = 4, **args) -> LanguageModel:
    a = LMArgs(corpus=str(path), **{"context": 16, **args})
    a.check()
    return LanguageModel(a, seed, test_size)


# ------------------------------------------------------------------------------ tokens and splits


def test_the_tokenizer_round_trips_every_byte_and_utf8_text():
    every_byte = bytes(range(256))
    assert decode(encode(every_byte)) == every_byte
    assert encode(every_byte).tolist() == list(range(256)) and encode(every_byte).dtype == torch.uint8
    text = "naïve Straße — 猫 🐍\n"
    assert decode(encode(text)).decode() == text and len(encode(text)) == len(text.encode())


def test_batches_are_windows_of_the_training_part_drawn_by_the_seed(corpus):
    data = corpus.read_bytes()
    n_train = 4000 - 400  # test_fraction 0.1: the last 400 bytes are held out
    a, b, c = task(corpus, seed=3), task(corpus, seed=3), task(corpus, seed=4)
    xa, ya = a.train_batch(32)
    xb, yb = b.train_batch(32)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(xa, c.train_batch(32)[0])
    assert xa.shape == ya.shape == (32, 16) and xa.dtype == torch.long
    for x, y in zip(xa, ya):
        window = decode(torch.cat([x, y[-1:]]))
        start = data.find(window)
        assert 0 <= start and start + 17 <= n_train  # a window of the training part, never of the held-out tail
        assert torch.equal(x[1:], y[:-1])  # y is x shifted by one: the next token at each position


def test_the_held_out_windows_are_the_corpus_tail_for_every_seed(corpus):
    data = corpus.read_bytes()
    a, b = task(corpus, seed=0, test_tokens=64), task(corpus, seed=9, test_tokens=64)
    assert torch.equal(a._test, b._test) and a._test.shape == (4, 17)  # 64 tokens: 4 windows of 16
    for k, window in enumerate(a._test):
        assert decode(window) == data[3600 + 16 * k: 3600 + 16 * k + 17]  # consecutive, overlapping by one
    assert task(corpus, test_size=7)._test.shape == (7, 17)  # without test_tokens: eval.test_size windows


def test_a_uniform_model_scores_log_256_nats_and_8_bits_per_byte(corpus):
    t = task(corpus, test_tokens=160)
    metrics = t.evaluate(lambda x: torch.zeros(*x.shape, 256), "cross_entropy")
    assert math.isclose(metrics["test_loss"], math.log(256), rel_tol=1e-6)
    assert math.isclose(metrics["test_bits_per_byte"], 8.0, rel_tol=1e-6)
    assert metrics["test_error"] == 1 - metrics["test_acc"]


def test_a_model_that_knows_the_next_byte_scores_zero_error(corpus):
    t = task(corpus, test_tokens=160)
    nxt = {tuple(w[:-1].tolist()): w[1:] for w in t._test}  # each held-out window's targets by its inputs

    def oracle(x):
        y = torch.stack([nxt[tuple(row.tolist())] for row in x]).long()
        return torch.nn.functional.one_hot(y, 256).float() * 50

    metrics = t.evaluate(oracle, "cross_entropy")
    assert metrics["test_error"] == 0.0 and metrics["test_loss"] < 1e-6


def test_stdlib_is_the_sorted_standard_library_capped_at_max_bytes():
    files = stdlib_files()
    root = Path(sysconfig.get_paths()["stdlib"])
    names = [Path(f).relative_to(root).as_posix() for f, _ in files]
    assert names == sorted(names) and all(n.endswith(".py") for n in names)
    assert not any(part in ("site-packages", "test", "tests") for n in names for part in n.split("/"))
    head = read_corpus("stdlib", 5000)
    assert len(head) == 5000 and torch.equal(head, read_corpus("stdlib", 5000))
    first = Path(files[0][0]).read_bytes()
    assert decode(head[: min(len(first), 5000)]) == first[:5000]


def test_a_parquet_corpus_is_its_text_rows_joined_by_newlines(tmp_path):
    path = tmp_path / "c.parquet"
    rows = ["def f():\n    return 1", "x = 'é'"] * 100
    pq.write_table(pa.table({"id": list(range(200)), "text": rows}), path)
    assert decode(read_corpus(str(path), None)) == "\n".join(rows).encode()
    n = len("\n".join(rows).encode())
    t = task(path, context=8, test_tokens=16)
    assert len(t._train) == n - int(n * 0.1) and decode(t._test[0]) == "\n".join(rows).encode()[n - int(n * 0.1):][:9]


# ------------------------------------------------------------------------------ bad arguments


@pytest.mark.parametrize("task_args, message", [
    ("{corpus: /nonexistent/text.txt}", r"corpus '/nonexistent/text.txt': no such file"),
    ("{corpus: ''}", r"corpus must be 'stdlib' or a path"),
    ("{corpus: stdlib, context: 0}", r"context must be >= 1"),
    ("{corpus: stdlib, test_fraction: 1.5}", r"test_fraction must be in \(0, 1\)"),
    ("{corpus: stdlib, max_bytes: 0}", r"max_bytes must be >= 1"),
    ("{corpus: stdlib, test_tokens: 0}", r"test_tokens must be >= 1"),
    ("{corpus: stdlib, max_bytes: 1000, context: 128}", r"each part needs at least one window of context \+ 1 = 129"),
    ("{corpus: stdlib, max_bytes: 100000, test_tokens: 50000}", r"test_tokens=50000 needs 49985 held-out tokens, but .* holds 10000"),
])
def test_bad_arguments_are_one_spec_error_naming_the_key(task_args, message):
    with pytest.raises(SpecError, match=message):
        list(expand(parse_yaml(spec(task_args))))


def test_a_parquet_corpus_without_text_is_refused_when_the_spec_is_read(tmp_path):
    pq.write_table(pa.table({"body": ["a", "b"]}), tmp_path / "c.parquet")
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "n.parquet")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    for name, message in (("c.parquet", r"no 'text' column; columns: body"),
                          ("n.parquet", r"the 'text' column holds int64, expected strings"),
                          ("bad.parquet", r"not a readable Parquet file")):
        with pytest.raises(SpecError, match=message):
            list(expand(parse_yaml(spec(f"{{corpus: {tmp_path / name}}}"))))


def test_a_short_parquet_corpus_or_too_many_test_windows_fail_the_trial_with_the_reason(tmp_path, corpus):
    pq.write_table(pa.table({"text": ["short"]}), tmp_path / "s.parquet")
    (trial, *_) = expand(parse_yaml(spec(f"{{corpus: {tmp_path / 's.parquet'}}}")))  # its size is known once read
    with pytest.raises(ValueError, match=r"holds 5 tokens: 5 to train on and 0 held out"):
        solo(trial)
    with pytest.raises(ValueError, match=r"eval.test_size=1000 windows .* need 16001 held-out tokens"):
        LanguageModel(LMArgs(corpus=str(corpus), context=16), 0, 1000)


# ------------------------------------------------------------------------------ training


@pytest.mark.parametrize("model", ["transformer", "lstm"])
def test_a_trial_records_its_flops_as_six_params_per_token_of_context(model, corpus):
    trial, _ = expand(parse_yaml(spec(f"{{corpus: {corpus}, context: 16}}", model)))
    rows, result = solo(trial)
    assert [r.step for r in rows] == [0, 10, 20] and result.status == "finished"
    assert result.flops_per_sample == 6 * result.n_params * 16
    assert result.samples * result.flops_per_sample / (6 * result.n_params) == 20 * 4 * 16  # tokens trained on
    assert rows[-1].values["test_loss"] < rows[0].values["test_loss"] < math.log(256) + 0.5
    assert [r.values["tokens_seen"] for r in rows] == [r.samples * 16 for r in rows] == [0, 640, 1280]


@pytest.mark.parametrize("model", ["transformer", "lstm"])
def test_packed_members_follow_their_solo_curves(model, corpus):
    trials = list(expand(parse_yaml(spec(f"{{corpus: {corpus}, context: 16}}", model, values=[8]).replace(
        "seeds: 1", "seeds: 3"))))
    assert len(trials) == 3 and len({pack_key(t) for t in trials}) == 1 and pack_key(trials[0]) is not None
    rows, results = packed(trials)
    for t in trials:
        solo_rows, solo_result = solo(t)
        mine = [r for r in rows if r.trial_id == t.trial_id]
        assert [r.step for r in mine] == [r.step for r in solo_rows]
        for a, b in zip(mine, solo_rows):
            for k, v in a.values.items():  # equal up to the rounding of a batched forward (test_packed_seq.py)
                w = b.values[k]
                assert (v is None and w is None) or math.isclose(v, w, rel_tol=2e-3, abs_tol=0.03 if "error" in k or
                                                                 "acc" in k else 2e-3), (k, v, w)
        assert results[t.trial_id].flops_per_sample == solo_result.flops_per_sample
        assert [r.values["tokens_seen"] for r in mine] == [r.samples * 16 for r in mine]  # counted per member


def test_the_example_is_a_grid_of_sizes_and_token_budgets_on_stdlib():
    sweep = load_spec(EXAMPLE)
    trials = list(expand(sweep))
    assert {t.task for t in trials} == {"lm"} and {t.task_args.corpus for t in trials} == {"stdlib"}
    sizes = {t.model_args for t in trials}
    budgets = {t.train.batch_size for t in trials}
    assert len(sizes) >= 3 and len(budgets) >= 3 and len(trials) == len(sizes) * len(budgets)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["transformer", "lstm"])
def test_a_run_writes_the_final_test_loss_and_flops(model, ray_cluster, corpus, tmp_path):
    path = tmp_path / "lm.yaml"
    path.write_text(spec(f"{{corpus: {corpus}, context: 16}}", model, name=f"lm-{model}"))
    summary = paretolab.run(path, store=tmp_path / "r")
    assert (summary.ran, summary.failed) == (2, 0)
    rows = paretolab.open_store(tmp_path / "r").query(
        "SELECT n_params, flops_per_sample, samples, context, final_test_loss, final_test_bits_per_byte FROM trials "
        "ORDER BY n_params", sweep=f"lm-{model}").to_pylist()
    assert len(rows) == 2 and rows[0]["n_params"] < rows[1]["n_params"]
    for r in rows:
        assert r["flops_per_sample"] == 6 * r["n_params"] * r["context"] and r["samples"] == 20 * 4
        assert 0 < r["final_test_loss"] < math.log(256) + 0.5
        assert math.isclose(r["final_test_bits_per_byte"], r["final_test_loss"] / math.log(2))
    seen = paretolab.open_store(tmp_path / "r").query(
        "SELECT m.samples, m.tokens_seen, t.context FROM metrics m JOIN trials t USING (trial_id)",
        sweep=f"lm-{model}").to_pylist()
    assert seen and all(r["tokens_seen"] == r["samples"] * r["context"] for r in seen)  # the curve's own axis


@pytest.mark.slow
def test_a_tiny_grid_fits_the_chinchilla_form(ray_cluster, tmp_path):
    from paretolab.analysis.scaling import fit_sweep

    path = tmp_path / "grid.yaml"
    text = spec("{corpus: stdlib, max_bytes: 400000, context: 32, test_tokens: 2048}", name="lm-grid",
                max_steps=150, every=150, values=[4, 8, 16, 32])
    path.write_text(text.replace("  d_model: [4, 8, 16, 32]", "  d_model: [4, 8, 16, 32]\n  batch_size: [2, 8, 32]")
                    .replace("batch_size: 4, ", ""))
    summary = paretolab.run(path, store=tmp_path / "r")
    assert (summary.ran, summary.failed) == (12, 0)
    report = fit_sweep(paretolab.open_store(tmp_path / "r"), "lm-grid", form="chinchilla", n_boot=20, starts=20)
    (fit,) = report.fits
    assert fit.n.size == 12 and len(set(fit.d)) == 3 and len(set(fit.n)) == 4
    assert set(fit.d) == {150 * b * 32 for b in (2, 8, 32)}  # tokens: steps x batch x context
    assert fit.alpha > 0 and fit.beta > 0 and fit.goodness()["rmse_log"] < 0.1
    assert fit.parameters().num_rows == 8
