"""The model conformance test: every registered model, on tiny sizes, on CPU.

Each model of `models()` (built-ins and entry-point plug-ins) is built from a seeded generator and
checked against the `Model` contract by the shipped suite (`paretolab.testing.models`):
determinism, shapes, the parameter list, the global RNG left alone, learning on a tiny problem,
and for a packable model its pack. Then what is specific to one model: exact parameter counts,
causal masking, argument checks, position embeddings, dropout.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from paretolab.tasks.base import IO
from paretolab.testing import ConformanceError, check_model
from paretolab.testing import models as conformance
from paretolab.testing.models import SEQUENCE, VECTOR, build, inputs
# Everything through the registry module: it imports the other built-ins (see test_plugin_modules_import_first).
from paretolab.models.registry import LSTM, MLP, MLPArgs, Transformer, models

TransformerArgs, LSTMArgs = Transformer.Args, LSTM.Args

pytestmark = pytest.mark.usefixtures("one_thread")  # a loaded machine made SGD on the tiny Transformer 15 s

TINY = {
    "mlp": (MLPArgs(width=32), VECTOR),
    "transformer": (TransformerArgs(n_layers=2, d_model=16, n_heads=2), SEQUENCE),
    "lstm": (LSTMArgs(n_layers=2, hidden=16), SEQUENCE),
}


def tiny(name: str):
    """(class, args, io) of a small instance of the model `name`; plug-ins get their default args."""
    cls = models()[name]
    if name in TINY:
        return cls, *TINY[name]
    return cls, cls.Args(), VECTOR if "vector" in cls.accepts else SEQUENCE


@pytest.fixture(params=sorted(models()))
def model_name(request) -> str:
    return request.param


# --------------------------------------------------------------- the contract, for every model
def test_registered_class_declares_the_contract(model_name):
    conformance.check_declaration(*tiny(model_name), name=model_name)


def test_same_seed_same_model_other_seed_other_model(model_name):
    conformance.check_seeded(*tiny(model_name))


def test_output_shape(model_name):
    conformance.check_output_shape(*tiny(model_name))


def test_params_are_exactly_the_trainable_leaves(model_name):
    conformance.check_params(*tiny(model_name))


def test_param_count_without_building_equals_n_params(model_name):
    conformance.check_param_count(*tiny(model_name))


def test_init_leaves_the_global_rng_alone(model_name):
    conformance.check_global_rng(*tiny(model_name))


def test_sgd_steps_reduce_the_loss(model_name):
    conformance.check_learns(*tiny(model_name))


def test_a_pack_computes_its_members(model_name):
    conformance.check_pack(*tiny(model_name))


def test_the_whole_suite_runs_as_a_plugin_runs_it(model_name):
    cls, args, io = tiny(model_name)
    check_model(model_name, args, io)


class GlobalDraws(MLP):
    """An MLP whose first layer is drawn from torch's global generator: the same seed, other weights."""

    def __init__(self, args, io, g, device="cpu"):
        super().__init__(args, io, g, device)
        with torch.no_grad():
            self.params[0].copy_(torch.randn(self.params[0].shape))


class StaleCount(MLP):
    @classmethod
    def param_count(cls, args, io):
        return super().param_count(args, io) + 1


@pytest.mark.parametrize("cls, message", [
    (GlobalDraws, "building it drew from the global RNG|one seed, two models"),
    (StaleCount, "param_count .* != n_params"),
])
def test_the_suite_finds_a_model_that_breaks_the_contract(cls, message):
    with pytest.raises(ConformanceError, match=message):
        check_model(cls, MLPArgs(width=8), VECTOR)


# --------------------------------------------------------------- parameter counts
def test_mlp_parameter_count():
    w, n, o = 32, VECTOR.input_dim, VECTOR.output_dim
    assert build(MLP, MLPArgs(width=w), VECTOR).n_params == w * (n + 1) + o * (w + 1)
    # each layer beyond 2 adds a width x width layer with its bias
    assert build(MLP, MLPArgs(width=w, depth=4), VECTOR).n_params == w * (n + 1) + 2 * w * (w + 1) + o * (w + 1) \
        == MLP.param_count(MLPArgs(width=w, depth=4), VECTOR)


# --------------------------------------------------------------- MLP depth
def test_mlp_depth_stacks_width_wide_layers_with_pytorch_default_init():
    w, n, o = 16, VECTOR.input_dim, VECTOR.output_dim
    model = build(MLP, MLPArgs(width=w, depth=4), VECTOR)
    shapes = [tuple(p.shape) for p in model.params]
    assert shapes == [(w, n), (w,), (w, w), (w,), (w, w), (w,), (o, w), (o,)]
    for p, fan_in in zip(model.params, [n, n, w, w, w, w, w, w]):  # U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        bound = 1 / fan_in**0.5
        assert p.abs().max() <= bound
        assert p.numel() < 64 or p.abs().max() > 0.8 * bound  # the whole range is used, not a narrower law
    x = inputs(VECTOR)
    h = x
    for W, b in zip(model.params[0:-2:2], model.params[1:-2:2]):
        h = torch.relu(h @ W.T + b)
    torch.testing.assert_close(model.forward(x), h @ model.params[-2].T + model.params[-1], rtol=0, atol=0)


def test_mlp_default_depth_is_the_two_layer_network():
    a, b = build(MLP, MLPArgs(width=8), VECTOR), build(MLP, MLPArgs(width=8, depth=2), VECTOR)
    assert len(a.params) == 4 and all(torch.equal(p, q) for p, q in zip(a.params, b.params, strict=True))


def test_mlp_sparse_init_applies_to_the_first_layer_only():
    model = build(MLP, MLPArgs(width=16, depth=3, init="sparse", sparsity=2), VECTOR)
    W1, _, W2, _, W3, _ = model.params
    assert ((W1 != 0).sum(dim=1) == 2).all()
    assert (W2 != 0).all() and (W3 != 0).all()


def test_packed_mlp_of_depth_3_equals_its_members():
    members = [build(MLP, MLPArgs(width=8, depth=3, init=init, sparsity=s), VECTOR, seed)
               for seed, (init, s) in enumerate([("dense", None), ("sparse", 2), ("dense", None)])]
    pack = MLP.stack(members)
    X = torch.stack([inputs(VECTOR, seed=i) for i in range(3)])
    out = pack.forward(X)
    for i, m in enumerate(members):
        torch.testing.assert_close(out[i], m.forward(X[i]), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(pack.member(i)(X[i]), m.forward(X[i]), rtol=0, atol=0)
    pack.keep(torch.tensor([2, 0]))
    torch.testing.assert_close(pack.member(0)(X[2]), members[2].forward(X[2]), rtol=0, atol=0)


def transformer_count(args: TransformerArgs, io: IO) -> int:
    """By hand from the layout: per block 2 LayerNorms (4d), qkv (3d^2 + 3d), attention output
    (d^2 + d), MLP in (r d^2 + r d) and out (r d^2 + d): (4 + 2r) d^2 + (9 + r) d, which is GPT-2's
    12 d^2 + 13 d for r = 4. Then token embedding, learned positions, final LayerNorm, bias-free head."""
    d, r, L = args.d_model, args.mlp_ratio, args.n_layers
    blocks = L * ((4 + 2 * r) * d * d + (9 + r) * d)
    positions = io.length * d if args.pos_emb == "learned" else 0
    head = 0 if args.tie_embeddings else io.output_dim * d
    return blocks + io.input_dim * d + positions + 2 * d + head


@pytest.mark.parametrize("args", [
    TransformerArgs(n_layers=2, d_model=16, n_heads=2),
    TransformerArgs(n_layers=1, d_model=8, n_heads=4, mlp_ratio=2, pos_emb="sinusoidal"),
    TransformerArgs(n_layers=3, d_model=12, n_heads=3, pos_emb="none", tie_embeddings=True),
])
def test_transformer_parameter_count(args):
    assert build(Transformer, args, SEQUENCE).n_params == transformer_count(args, SEQUENCE) \
        == Transformer.param_count(args, SEQUENCE)


def test_default_transformer_has_about_19m_parameters():
    # The flip-flop model of Liu et al. 2023: 6 layers, width 512, 8 heads; vocabulary 5, T = 512.
    io = IO("sequence", input_dim=5, output_dim=5, length=512)
    args = TransformerArgs()
    TransformerArgs().check(io)
    n = build(Transformer, args, io).n_params
    assert n == transformer_count(args, io) == 19_182_592
    assert 17e6 < n < 21e6


def test_lstm_parameter_count():
    h, L, V, o = 16, 2, SEQUENCE.input_dim, SEQUENCE.output_dim
    # embedding V h; per layer W_ih, W_hh (4h x h each) and two biases (4h each); head o h + o
    expected = V * h + L * (8 * h * h + 8 * h) + o * h + o
    assert build(LSTM, LSTMArgs(n_layers=L, hidden=h), SEQUENCE).n_params == expected \
        == LSTM.param_count(LSTMArgs(n_layers=L, hidden=h), SEQUENCE)
    assert build(LSTM, LSTMArgs(), IO("sequence", 5, 5, 512)).n_params == 5 * 128 + 8 * 128**2 + 8 * 128 + 5 * 128 + 5


# --------------------------------------------------------------- sequence models
@pytest.mark.parametrize("name", ["transformer", "lstm"])
@pytest.mark.parametrize("t", [0, 3, 6])
def test_logits_up_to_t_ignore_later_tokens(name, t):
    cls, args, io = tiny(name)
    model = build(cls, args, io)
    x = inputs(io)
    changed = x.clone()
    changed[:, t + 1:] = (x[:, t + 1:] + 1) % io.input_dim
    with torch.no_grad():
        out, out_changed = model.forward(x), model.forward(changed)
    torch.testing.assert_close(out[:, : t + 1], out_changed[:, : t + 1], rtol=0, atol=1e-6)
    assert not torch.allclose(out[:, t + 1:], out_changed[:, t + 1:])


@pytest.mark.parametrize("pos_emb", ["learned", "sinusoidal", "none"])
def test_position_embedding_variants_run(pos_emb):
    args = TransformerArgs(n_layers=1, d_model=10, n_heads=2, pos_emb=pos_emb)
    model = build(Transformer, args, SEQUENCE)
    lengths = (1, 5, SEQUENCE.length) if pos_emb == "learned" else (1, 5, SEQUENCE.length, SEQUENCE.length + 4)
    for T in lengths:
        assert model.forward(torch.zeros(2, T, dtype=torch.long)).shape == (2, T, SEQUENCE.output_dim)
    if pos_emb != "learned":  # fixed or no positions need no maximum length
        unbounded = IO("sequence", 4, 4, length=None)
        args.check(unbounded)
        assert build(Transformer, args, unbounded).forward(torch.zeros(2, 20, dtype=torch.long)).shape == (2, 20, 4)


def test_positions_tell_equal_tokens_apart_unless_none():
    x = torch.zeros(1, 8, dtype=torch.long)  # the same token everywhere: only positions differ
    for pos_emb, distinct in (("learned", True), ("sinusoidal", True), ("none", False)):
        model = build(Transformer, TransformerArgs(n_layers=1, d_model=16, n_heads=2, pos_emb=pos_emb), SEQUENCE)
        with torch.no_grad():
            out = model.forward(x)
        assert (not torch.allclose(out[0, 0], out[0, 5])) == distinct, pos_emb


def test_learned_positions_refuse_a_longer_sequence():
    model = build(Transformer, TransformerArgs(n_layers=1, d_model=8, n_heads=2), SEQUENCE)
    with pytest.raises(ValueError, match="longer than the model's 8 learned positions"):
        model.forward(torch.zeros(1, 9, dtype=torch.long))


def test_tied_embeddings_share_the_token_embedding():
    model = build(Transformer, TransformerArgs(n_layers=1, d_model=8, n_heads=2, tie_embeddings=True), SEQUENCE)
    assert model.head is model.wte and sum(p is model.wte for p in model.params) == 1


@pytest.mark.parametrize("name,args", [
    ("transformer", TransformerArgs(n_layers=2, d_model=16, n_heads=2, dropout=0.3)),
    ("lstm", LSTMArgs(n_layers=2, hidden=16, dropout=0.3)),
])
def test_dropout_only_in_training_and_seeded(name, args):
    cls = models()[name]
    x = inputs(SEQUENCE)
    plain, a, b = build(cls, TINY[name][0], SEQUENCE), build(cls, args, SEQUENCE), build(cls, args, SEQUENCE)
    with torch.no_grad():  # evaluation: no dropout, and the weights do not depend on it
        torch.testing.assert_close(a.forward(x), plain.forward(x), rtol=0, atol=0)
    first = a.forward(x)
    assert not torch.allclose(first, plain.forward(x))  # training: masks are drawn
    assert not torch.allclose(first, a.forward(x))  # fresh masks at every call
    torch.testing.assert_close(first, b.forward(x), rtol=0, atol=0)  # from the model's seed alone


# --------------------------------------------------------------- argument checks
@pytest.mark.parametrize("args,io,message", [
    (TransformerArgs(n_layers=0), SEQUENCE, "n_layers must be >= 1"),
    (TransformerArgs(d_model=0), SEQUENCE, "d_model must be >= 1"),
    (TransformerArgs(n_heads=0), SEQUENCE, "n_heads must be >= 1"),
    (TransformerArgs(mlp_ratio=0), SEQUENCE, "mlp_ratio must be >= 1"),
    (TransformerArgs(d_model=10, n_heads=4), SEQUENCE, "multiple of n_heads=4, got 10"),
    (TransformerArgs(pos_emb="rotary"), SEQUENCE, "pos_emb must be one of"),
    (TransformerArgs(), IO("sequence", 4, 4, None), "'learned' needs a task with a maximum sequence length"),
    (TransformerArgs(dropout=1.0), SEQUENCE, r"dropout must be in \[0, 1\)"),
    (TransformerArgs(dropout=-0.1), SEQUENCE, r"dropout must be in \[0, 1\)"),
    (TransformerArgs(tie_embeddings=True), IO("sequence", 5, 2, 8), "got 2 outputs for 5 tokens"),
    (LSTMArgs(n_layers=0), SEQUENCE, "n_layers must be >= 1"),
    (LSTMArgs(hidden=0), SEQUENCE, "hidden must be >= 1"),
    (LSTMArgs(dropout=1.0), SEQUENCE, r"dropout must be in \[0, 1\)"),
    (MLPArgs(width=0), VECTOR, "width must be >= 1"),
    (MLPArgs(depth=1), VECTOR, r"depth must be >= 2 \(weight layers: 2 is one hidden layer\), got 1"),
    (MLPArgs(init="sparse"), VECTOR, "needs sparsity"),
    (MLPArgs(init="sparse", sparsity=7), VECTOR, "between 1 and the input dimension 6"),
], ids=lambda v: None if isinstance(v, (IO, str)) else repr(v))
def test_check_rejects_bad_values(args, io, message):
    with pytest.raises(ValueError, match=message):
        args.check(io)


def test_defaults_pass_their_checks():
    TransformerArgs().check(IO("sequence", 5, 5, 512))
    TransformerArgs(tie_embeddings=True, pos_emb="none").check(IO("sequence", 5, 5, None))
    LSTMArgs().check(SEQUENCE)


@pytest.mark.slow  # a Python process importing torch
def test_plugin_modules_import_first():
    code = "import paretolab.models.transformer, paretolab.models.lstm"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
