"""Tests for boneage.models: parameter counts, cross-backend forward passes, serialisation,
training, other input sizes and mixed precision.

The main process runs on the active Keras backend (TensorFlow by default); the JAX side runs in
a subprocess (tests/_jax_forward.py) because a Keras backend is fixed at import. Training steps
run eagerly: tracing these graphs costs a minute or more on a small CPU, eager steps seconds.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import boneage.models as bm
from boneage.models.heads import split_prediction
from boneage.models.layers import ChannelAttention, SpatialAttention
from boneage.models.losses import GaussianNLL, mean_absolute_error_of_mean
from jax_subprocess import run_under_jax

# Paper, Table V (total, trainable, non-trainable) and our documented ResNet34+CBAM figure.
PAPER_DENSENET121 = (7_075_241, 6_991_593, 83_648)
PAPER_RESNET34_CBAM = (22_590_634, 22_573_610, 17_024)
OURS_RESNET34_CBAM = (22_525_701, 22_508_677, 17_024)
OURS_DENSENET121_CBAM = (7_381_733, 7_298_085, 83_648)


def counts(model: keras.Model) -> tuple[int, int, int]:
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    non_trainable = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    return model.count_params(), trainable, non_trainable


def batch(size: int, n: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.random((n, size, size, 1), dtype=np.float32),
        "male": (np.arange(n) % 2).astype(np.float32).reshape(n, 1),
    }


def forward(model: keras.Model, x: dict[str, np.ndarray]) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))


@pytest.fixture(scope="module")
def models_256() -> dict[str, keras.Model]:
    return {name: bm.build_model(name) for name in ("densenet121", "resnet34_cbam")}


@pytest.fixture
def restore_policy():
    old = keras.mixed_precision.global_policy()
    yield
    keras.mixed_precision.set_global_policy(old)


# --------------------------------------------------------------------------- registry / API


def test_available_lists_the_models():
    names = bm.available()
    assert {"densenet121", "densenet121_cbam", "resnet34_cbam"} <= set(names)
    assert names == sorted(names)


def test_register_rejects_a_second_builder_under_a_taken_name():
    with pytest.raises(ValueError, match="already registered"):
        bm.register("densenet121")(lambda image_size=256: None)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: bm.build_model("vgg16"), ValueError),
        (lambda: bm.build_model("densenet121", no_such_option=1), TypeError),
        (lambda: bm.build_model("resnet34_cbam", no_such_option=1), TypeError),
        (lambda: bm.build_model("resnet34_cbam", dropout=1.0), ValueError),
        (lambda: bm.build_model("densenet121", dropout=-0.1), ValueError),
        (lambda: bm.build_model("densenet121", image_size=16), ValueError),
    ],
)
def test_bad_arguments_raise(call, error):
    with pytest.raises(error):
        call()


def test_name_is_case_and_dash_insensitive():
    model = bm.build_model("ResNet34-CBAM", image_size=32)
    assert model.name == "resnet34_cbam"


# --------------------------------------------------------------------------- parameter counts


def test_densenet121_matches_the_paper_exactly(models_256):
    assert counts(models_256["densenet121"]) == PAPER_DENSENET121


def test_resnet34_cbam_matches_the_paper(models_256):
    total, trainable, non_trainable = counts(models_256["resnet34_cbam"])
    assert non_trainable == PAPER_RESNET34_CBAM[2]
    assert abs(total - PAPER_RESNET34_CBAM[0]) / PAPER_RESNET34_CBAM[0] < 0.01
    assert abs(trainable - PAPER_RESNET34_CBAM[1]) / PAPER_RESNET34_CBAM[1] < 0.01
    # The exact figure documented in resnet_cbam.py's docstring.
    assert (total, trainable, non_trainable) == OURS_RESNET34_CBAM


def test_densenet121_cbam_adds_cbam_after_each_dense_block():
    model = bm.build_model("densenet121_cbam", image_size=32)  # counts do not depend on size
    # CBAM per block of C channels: MLP 2*C*C/16 + C/16 + C, spatial conv 7*7*2 + 1.
    cbam = sum(2 * c * c // 16 + c // 16 + c + 99 for c in (256, 512, 1024, 1024))
    assert counts(model) == OURS_DENSENET121_CBAM
    assert OURS_DENSENET121_CBAM[0] == PAPER_DENSENET121[0] + cbam
    names = [layer.name for layer in model.layers if isinstance(layer, ChannelAttention)]
    assert names == [f"conv{i}_cbam_ca" for i in (2, 3, 4, 5)]


def test_resnet34_cbam_has_cbam_in_every_basic_block(models_256):
    model = models_256["resnet34_cbam"]
    ca = [layer for layer in model.layers if isinstance(layer, ChannelAttention)]
    sa = [layer for layer in model.layers if isinstance(layer, SpatialAttention)]
    assert len(ca) == len(sa) == 3 + 4 + 6 + 3
    projections = [layer.name for layer in model.layers if layer.name.endswith("_0_conv")]
    assert projections == ["conv3_block1_0_conv", "conv4_block1_0_conv", "conv5_block1_0_conv"]


@pytest.mark.parametrize("name", ["densenet121", "resnet34_cbam"])
def test_inputs_and_output(models_256, name):
    model = models_256[name]
    assert [t.name for t in model.inputs] == ["image", "male"]
    assert tuple(model.inputs[0].shape) == (None, 256, 256, 1)
    assert tuple(model.inputs[1].shape) == (None, 1)
    assert tuple(model.output.shape) == (None, 1)
    assert model.output.dtype == "float32"
    assert model.layers[-1].name == "bone_age"


# --------------------------------------------------------------------------- other sizes, options


@pytest.mark.parametrize("name", ["densenet121", "resnet34_cbam"])
@pytest.mark.parametrize("size", [128, 384])
def test_other_image_sizes_build(models_256, name, size):
    model = bm.build_model(name, image_size=size)
    assert tuple(model.inputs[0].shape) == (None, size, size, 1)
    assert counts(model) == counts(models_256[name])  # global pooling: size-independent
    if size == 128 and name == "resnet34_cbam":
        y = forward(model, batch(size, n=2))
        assert y.shape == (2, 1) and np.all(np.isfinite(y))


def test_dropout_override():
    default = bm.build_model("resnet34_cbam", image_size=32)
    rates = [layer.rate for layer in default.layers if isinstance(layer, keras.layers.Dropout)]
    assert rates == [0.4, 0.4]
    model = bm.build_model("resnet34_cbam", image_size=32, dropout=0.25)
    rates = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert rates == [0.25, 0.25]
    model = bm.build_model("densenet121", image_size=32, dropout=0.0)
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)
    assert counts(model) == PAPER_DENSENET121  # dropout has no weights


def test_uncertainty_output_and_split_prediction():
    model = bm.build_model("resnet34_cbam", image_size=32, uncertainty=True)
    assert tuple(model.output.shape) == (None, 2)
    assert model.output.dtype == "float32"
    assert counts(model)[0] == OURS_RESNET34_CBAM[0] + 513  # one more Dense(1) on 512 units
    mean, std = split_prediction(forward(model, batch(32, n=2)))
    assert mean.shape == std.shape == (2,)
    assert np.all(std > 0)

    mean, std = split_prediction(np.array([[120.0, 2 * np.log(12.0)], [60.0, 0.0]]))
    np.testing.assert_allclose(mean, [120.0, 60.0])
    np.testing.assert_allclose(std, [12.0, 1.0])
    mean, std = split_prediction(np.array([[100.0]]))
    assert std is None and mean.tolist() == [100.0]
    with pytest.raises(ValueError):
        split_prediction(np.zeros((2, 3)))


# --------------------------------------------------------------------------- layers and losses


def _channel_attention_reference(x, layer):
    w1, b1, w2, b2 = (keras.ops.convert_to_numpy(w) for w in layer.weights)

    def mlp(v):
        return np.maximum(v @ w1 + b1, 0.0) @ w2 + b2

    logits = mlp(x.mean(axis=(1, 2))) + mlp(x.max(axis=(1, 2)))
    return x / (1.0 + np.exp(-logits))[:, None, None, :]


def _spatial_attention_reference(x, layer):
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in layer.weights)
    pooled = np.concatenate([x.mean(-1, keepdims=True), x.max(-1, keepdims=True)], axis=-1)
    k = kernel.shape[0]
    padded = np.pad(pooled, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    n, h, w, _ = x.shape
    logits = np.zeros((n, h, w))
    for i in range(k):
        for j in range(k):
            logits += padded[:, i : i + h, j : j + w, :] @ kernel[i, j, :, 0]
    logits += bias[0]
    return x / (1.0 + np.exp(-logits))[..., None]


def test_cbam_layers_match_a_numpy_reference():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 9, 7, 32)).astype(np.float32)
    ca = ChannelAttention(reduction=16)
    ca.build(x.shape)
    for w in ca.weights:  # non-trivial biases, so that a dropped bias is caught
        w.assign(rng.normal(size=w.shape).astype(np.float32) * 0.5)
    y = keras.ops.convert_to_numpy(ca(x))
    np.testing.assert_allclose(y, _channel_attention_reference(x, ca), rtol=1e-5, atol=1e-5)

    sa = SpatialAttention(kernel_size=7)
    sa.build(x.shape)
    for w in sa.weights:
        w.assign(rng.normal(size=w.shape).astype(np.float32) * 0.5)
    y = keras.ops.convert_to_numpy(sa(x))
    np.testing.assert_allclose(y, _spatial_attention_reference(x, sa), rtol=1e-5, atol=1e-5)


def test_channel_attention_reference_weight_order():
    # The reference unpacks weights as (w1, b1, w2, b2): pin the creation order it relies on.
    ca = ChannelAttention(reduction=4)
    ca.build((None, 4, 4, 8))
    assert [w.path.split("/")[-1] for w in ca.weights] == [
        "hidden_kernel",
        "hidden_bias",
        "output_kernel",
        "output_bias",
    ]


@pytest.mark.parametrize("cls", [ChannelAttention, SpatialAttention])
def test_layer_config_round_trip(cls):
    layer = cls(use_bias=False, name="attn")
    config = layer.get_config()
    assert config["use_bias"] is False
    clone = cls.from_config(config)
    assert clone.get_config() == config
    registered = keras.saving.get_registered_object(f"boneage>{cls.__name__}")
    assert registered is cls


def test_gaussian_nll_values_and_config():
    loss = GaussianNLL(reduction=None)
    y_true = np.array([[100.0], [50.0], [10.0]], np.float32)
    log_var = np.array([2.0, 5.0, -3.0], np.float32)  # the last is clipped to 0
    y_pred = np.stack([np.array([90.0, 50.0, 12.0], np.float32), log_var], axis=-1)
    got = keras.ops.convert_to_numpy(loss(y_true, y_pred))
    s = np.maximum(log_var, 0.0)
    want = 0.5 * (s + (y_true[:, 0] - y_pred[:, 0]) ** 2 * np.exp(-s))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # A plain (batch, 1) prediction means log_var = 0 (clipped to the floor): half the MSE.
    got = keras.ops.convert_to_numpy(loss(y_true, y_pred[:, :1]))
    np.testing.assert_allclose(got, 0.5 * (y_true[:, 0] - y_pred[:, 0]) ** 2, rtol=1e-6)
    mae = keras.ops.convert_to_numpy(mean_absolute_error_of_mean(y_true, y_pred))
    np.testing.assert_allclose(mae, [10.0, 0.0, 2.0])

    clone = keras.losses.deserialize(keras.losses.serialize(GaussianNLL(min_log_var=-2.0)))
    assert isinstance(clone, GaussianNLL) and clone.min_log_var == -2.0
    with pytest.raises(ValueError):
        GaussianNLL(min_log_var=3.0, max_log_var=1.0)


# --------------------------------------------------------------------------- backends, saving

CROSS_SIZE = 64
# densenet121_cbam holds every layer type of densenet121; the uncertainty head is shared.
CROSS_CASES = [
    {"key": "densenet121_cbam", "name": "densenet121_cbam", "options": {}},
    {"key": "resnet34_cbam_unc", "name": "resnet34_cbam", "options": {"uncertainty": True}},
]


def _make_outputs_informative(model: keras.Model, x: dict[str, np.ndarray]) -> None:
    """Random BN statistics and output kernels scaled so that outputs spread over about 1.

    Freshly initialised BN layers are identities and the outputs are ~1e-3, which would make
    a 1e-4 tolerance meaningless.
    """
    rng = np.random.default_rng(2)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.8, 1.2, gamma.shape).astype(np.float32),
                    rng.normal(0.0, 0.1, beta.shape).astype(np.float32),
                    rng.normal(0.0, 0.1, mean.shape).astype(np.float32),
                    rng.uniform(0.5, 1.5, var.shape).astype(np.float32),
                ]
            )
    y = forward(model, x)
    heads = [layer for layer in model.layers if layer.name.startswith("bone_age")]
    dense = [layer for layer in heads if isinstance(layer, keras.layers.Dense)]
    for column, layer in enumerate(dense):
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel / y[:, column].std(), bias])


@pytest.fixture(scope="module")
def cross_backend(tmp_path_factory):
    """Models built here, saved as .weights.h5 and .keras, with their outputs here."""
    workdir = tmp_path_factory.mktemp("cross_backend")
    x = batch(CROSS_SIZE, n=4)
    np.savez(workdir / "inputs.npz", **x)
    cases, outputs = [], {}
    for case in CROSS_CASES:
        keras.utils.set_random_seed(0)
        model = bm.build_model(case["name"], image_size=CROSS_SIZE, **case["options"])
        _make_outputs_informative(model, x)
        if case["options"].get("uncertainty"):
            model.compile(
                optimizer="adam", loss=GaussianNLL(), metrics=[mean_absolute_error_of_mean]
            )
        weights = workdir / f"{case['key']}.weights.h5"
        path = workdir / f"{case['key']}.keras"
        model.save_weights(weights)
        model.save(path)
        outputs[case["key"]] = forward(model, x)
        cases.append(
            {**case, "image_size": CROSS_SIZE, "weights": str(weights), "keras": str(path)}
        )
    (workdir / "cases.json").write_text(json.dumps(cases))
    return workdir, x, cases, outputs


def test_outputs_are_informative(cross_backend):
    _, _, _, outputs = cross_backend
    for y in outputs.values():
        assert np.all(np.isfinite(y))
        assert np.all(y.std(axis=0) > 0.5)  # the 1e-4 comparisons below can fail


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_keras_file_reloads_in_process(cross_backend):
    _, x, cases, outputs = cross_backend
    for case in cases:
        loaded = keras.saving.load_model(case["keras"])  # no custom_objects
        np.testing.assert_allclose(forward(loaded, x), outputs[case["key"]], rtol=0, atol=1e-6)
        if case["options"].get("uncertainty"):
            assert isinstance(loaded.loss, GaussianNLL)


@pytest.fixture(scope="module")
def jax_outputs(cross_backend):
    workdir, _, _, _ = cross_backend
    run_under_jax("_jax_forward.py", workdir)
    return dict(np.load(workdir / "jax_outputs.npz"))


def test_jax_forward_matches_with_the_same_weights(cross_backend, jax_outputs):
    _, _, cases, outputs = cross_backend
    assert str(jax_outputs["backend"]) == "jax"
    for case in cases:
        np.testing.assert_allclose(
            jax_outputs[f"{case['key']}_built"], outputs[case["key"]], rtol=0, atol=1e-4
        )


def test_keras_file_loads_in_a_fresh_jax_process(cross_backend, jax_outputs):
    _, _, cases, outputs = cross_backend
    for case in cases:
        np.testing.assert_allclose(
            jax_outputs[f"{case['key']}_loaded"], outputs[case["key"]], rtol=0, atol=1e-4
        )


# --------------------------------------------------------------------------- training


def test_a_few_training_steps_reduce_the_loss():
    # One model only: eager steps take seconds each on a small CPU (tracing takes a minute).
    # ResNet34+CBAM with the uncertainty head: CBAM, the concatenated output and GaussianNLL.
    keras.utils.set_random_seed(0)
    model = bm.build_model("resnet34_cbam", image_size=32, uncertainty=True)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=GaussianNLL(),
        metrics=[mean_absolute_error_of_mean],
        run_eagerly=True,
    )
    x = batch(32, n=8, seed=3)
    y = np.linspace(30.0, 40.0, 8, dtype=np.float32).reshape(8, 1)
    losses = [float(model.train_on_batch(x, y)[0]) for _ in range(3)]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0], losses


# --------------------------------------------------------------------------- mixed precision


@pytest.mark.parametrize(
    ("name", "policy"),
    [("densenet121_cbam", "mixed_bfloat16"), ("resnet34_cbam", "mixed_float16")],
)
def test_mixed_precision_keeps_a_float32_output(restore_policy, policy, name):
    x = batch(32, n=2)
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)
    reference = bm.build_model(name, image_size=32)
    _make_outputs_informative(reference, x)
    y32 = forward(reference, x)

    keras.mixed_precision.set_global_policy(policy)
    model = bm.build_model(name, image_size=32)
    model.set_weights(reference.get_weights())
    low = "float16" if policy == "mixed_float16" else "bfloat16"
    assert model.get_layer("conv1_conv").compute_dtype == low
    attention = [layer for layer in model.layers if isinstance(layer, SpatialAttention)]
    assert attention and all(layer.compute_dtype == low for layer in attention)
    assert model.output.dtype == "float32"
    y = forward(model, x)
    assert y.dtype == np.float32
    tolerance = 0.05 if low == "float16" else 0.15
    np.testing.assert_allclose(y, y32, rtol=0, atol=tolerance * np.abs(y32).max())
    assert not np.allclose(y, y32, rtol=0, atol=1e-7)  # really computed in low precision

    if policy == "mixed_float16" and name == "resnet34_cbam":
        model.compile(optimizer="adam", loss=keras.losses.Huber(15.0), run_eagerly=True)
        loss = float(np.asarray(model.train_on_batch(x, np.ones((2, 1), np.float32))))
        assert np.isfinite(loss)
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
