"""The trainer: gradients against finite differences, learning, determinism, optimizers,
and the errors of bad input."""

import json
import math

import numpy as np
import pytest

from varprop import train
from varprop.datasets import make_toy_2d
from varprop.training import optimizers as opt_mod


def _numeric_loss(model, x, y):
    return train.softmax_cross_entropy(model.forward(x).logits, y, grad=False)[0]


@pytest.mark.parametrize("activation", ["relu", "tanh", "leaky_relu", "gelu", "sigmoid"])
def test_gradients_match_finite_differences(activation):
    rng = np.random.default_rng(1)
    model = train.classifier([3, 5, 4, 3], activation, kernel_initializer="glorot_normal",
                             bias_initializer={"name": "random_normal", "stddev": 0.1}, seed=2,
                             dtype=np.float64)
    x = rng.standard_normal((6, 3))
    y = np.array([0, 1, 2, 2, 1, 0])
    cache = model.forward(x)
    _, g, _ = train.softmax_cross_entropy(cache.logits, y)
    grads, _ = model.backward(cache, g)
    eps = 1e-6
    for l, (w, b) in enumerate(model.weights):
        for arr, analytic in ((w, grads[l][0]), (b, grads[l][1])):
            numeric = np.zeros_like(arr)
            for idx in np.ndindex(arr.shape):
                old = arr[idx]
                arr[idx] = old + eps
                up = _numeric_loss(model, x, y)
                arr[idx] = old - eps
                down = _numeric_loss(model, x, y)
                arr[idx] = old
                numeric[idx] = (up - down) / (2 * eps)
            np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_grad_z_matches_finite_differences_on_logits():
    model = train.classifier([2, 4, 3], "tanh", seed=0, dtype=np.float64)
    x = np.array([[0.3, -0.2], [1.0, 0.5]])
    y = np.array([2, 0])
    cache = model.forward(x)
    loss, g, _ = train.softmax_cross_entropy(cache.logits, y)
    _, gzs = model.backward(cache, g, grad_z=True)
    np.testing.assert_array_equal(gzs[-1], g)
    # dL/dz of the hidden layer: perturb z through its bias, one sample at a time
    lg = cache.logits.copy()
    for j in range(3):
        lg2 = lg.copy()
        lg2[1, j] += 1e-6
        lg3 = lg.copy()
        lg3[1, j] -= 1e-6
        num = (train.softmax_cross_entropy(lg2, y, grad=False)[0]
               - train.softmax_cross_entropy(lg3, y, grad=False)[0]) / 2e-6
        assert g[1, j] == pytest.approx(num, rel=1e-6, abs=1e-10)


def test_softmax_cross_entropy_is_stable_and_correct():
    logits = np.array([[1e4, 0.0, -1e4], [0.5, 0.2, -0.1]], np.float32)
    y = np.array([1, 0])
    loss, g, hits = train.softmax_cross_entropy(logits, y)
    assert math.isfinite(loss) and np.all(np.isfinite(g))
    row2 = -np.log(np.exp(0.5) / np.exp([0.5, 0.2, -0.1]).sum())
    assert loss == pytest.approx((1e4 + row2) / 2, rel=1e-6)
    assert hits == 1
    np.testing.assert_allclose(g.sum(axis=1), 0, atol=1e-7)
    assert g.dtype == np.float32


def test_loss_decreases_on_separable_toy_set():
    data = make_toy_2d(300, "blobs", noise=0.5, seed=0)
    model = train.classifier([2, 16, 2], "relu", kernel_initializer="he_normal", seed=0)
    before = train.evaluate(model, data.x, data.y)
    hist = train.fit(model, data.x, data.y, epochs=30, batch_size=32, seed=0)
    after = train.evaluate(model, data.x, data.y)
    assert hist.loss[-1] < hist.loss[0] < before.loss * 1.05
    assert after.loss < 0.25 * before.loss
    assert after.accuracy > 0.97
    assert hist.grad_w_var.shape == (30, 2) and hist.grad_z_var.shape == (30, 2)
    assert np.all(hist.grad_w_var > 0)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
def test_every_optimizer_learns_moons(optimizer):
    data = make_toy_2d(200, "moons", seed=1)
    model = train.classifier([2, 32, 32, 2], "tanh", seed=1)
    lr = 0.1 if optimizer in ("sgd", "momentum", "nesterov") else 0.01
    before = train.evaluate(model, data.x, data.y).loss
    hist = train.fit(model, data.x, data.y, epochs=40, batch_size=16, optimizer=optimizer,
                     learning_rate=lr, seed=1)
    assert hist.loss[-1] < 0.5 * before


def _run(seed, n_threads=None, dtype=np.float32):
    data = make_toy_2d(120, "spiral", n_classes=3, seed=3)
    model = train.classifier([2, 24, 24, 3], "relu", kernel_initializer="he_uniform", seed=5, dtype=dtype)
    hist = train.fit(model, data.x, data.y, epochs=6, batch_size=10, seed=seed,
                     validation_split=0.25, n_threads=n_threads)
    return model, hist


def test_same_seed_same_run_bit_for_bit():
    m1, h1 = _run(7)
    m2, h2 = _run(7)
    assert h1.loss == h2.loss and h1.accuracy == h2.accuracy
    assert h1.val_loss == h2.val_loss and h1.val_accuracy == h2.val_accuracy
    np.testing.assert_array_equal(h1.grad_w_var, h2.grad_w_var)
    np.testing.assert_array_equal(h1.grad_z_var, h2.grad_z_var)
    for (w1, b1), (w2, b2) in zip(m1.weights, m2.weights):
        np.testing.assert_array_equal(w1, w2)
        np.testing.assert_array_equal(b1, b2)
    _, h3 = _run(8)
    assert h3.loss != h1.loss


def test_thread_count_does_not_change_the_run():
    m1, h1 = _run(0, n_threads=1, dtype=np.float64)
    m2, h2 = _run(0, n_threads=2, dtype=np.float64)
    assert h1.loss == h2.loss
    for (w1, _), (w2, _) in zip(m1.weights, m2.weights):
        np.testing.assert_array_equal(w1, w2)


def test_same_model_seed_same_weights_and_dtypes():
    a = train.classifier([4, 8, 3], seed=11, dtype=np.float64)
    b = train.classifier([4, 8, 3], seed=11, dtype="float64")
    assert a.dtype == np.float64
    for (wa, ba), (wb, bb) in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa, wb)
        np.testing.assert_array_equal(ba, bb)
    c = train.classifier([4, 8, 3], seed=12)
    assert c.dtype == np.float32 and not np.array_equal(c.weights[0][0], a.weights[0][0])


def test_validation_split_holds_out_the_last_rows():
    data = make_toy_2d(100, "blobs", seed=0)
    model = train.classifier([2, 8, 2], seed=0)
    hist = train.fit(model, data.x, data.y, epochs=2, validation_split=0.2, seed=0)
    assert hist.params["n_train"] == 80 and hist.params["n_val"] == 20
    assert len(hist.val_loss) == 2
    ev = train.evaluate(model, data.x[80:], data.y[80:])
    assert hist.val_loss[-1] == pytest.approx(ev.loss, rel=1e-6)
    assert hist.val_accuracy[-1] == ev.accuracy


def test_history_outputs_and_callback():
    data = make_toy_2d(60, "xor", seed=0)
    model = train.classifier([2, 8, 2], seed=0)
    seen = []

    def callback(epoch, logs):
        seen.append((epoch, logs["loss"]))
        return epoch == 2  # stop after the third epoch

    hist = train.fit(model, data.x, data.y, epochs=10, validation_data=(data.x, data.y),
                     callback=callback, seed=0)
    assert hist.epochs == 3 and [e for e, _ in seen] == [0, 1, 2]
    d = json.loads(json.dumps(hist.as_dict()))
    assert set(d) == {"loss", "accuracy", "val_loss", "val_accuracy", "grad_w_var", "grad_z_var"}
    assert "val_loss" in hist.table() and len(hist.table().splitlines()) == 4
    assert hist.initial_grad_w_var.shape == (2,)


def test_progress_prints_one_line_per_epoch(capsys):
    data = make_toy_2d(40, "blobs", seed=0)
    train.fit(train.classifier([2, 4, 2], seed=0), data.x, data.y, epochs=2, progress=True, seed=0)
    err = capsys.readouterr().err
    assert err.count("epoch ") == 2 and "loss" in err


def test_predict_and_probabilities():
    data = make_toy_2d(50, "blobs", n_classes=3, seed=0)
    model = train.classifier([2, 8, 3], seed=0)
    p = train.predict_proba(model, data.x)
    assert p.shape == (50, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
    labels = train.predict(model, data.x)
    assert labels.dtype == np.int64 and np.array_equal(labels, p.argmax(axis=1))
    np.testing.assert_array_equal(train.predict(model, data.x, batch_size=7), labels)
    e1 = train.evaluate(model, data.x, data.y)
    e2 = train.evaluate(model, data.x, data.y, batch_size=8)
    assert e1.accuracy == e2.accuracy and e1.loss == pytest.approx(e2.loss, rel=1e-6)


def test_gradient_variances_match_numpy():
    rng = np.random.default_rng(0)
    model = train.classifier([5, 7, 6, 3], "relu", kernel_initializer="he_normal", seed=0,
                             dtype=np.float64)
    x = rng.standard_normal((20, 5))
    y = rng.integers(0, 3, 20)
    gv = train.gradient_variances(model, x, y)
    hs, zs = [x], []
    for (w, b), act in zip(model.weights, model.activations):
        z = hs[-1] @ w + b
        zs.append(z)
        hs.append(act(z))
    logits = zs[-1]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    gz = p.copy()
    gz[np.arange(20), y] -= 1
    gz /= 20
    for l in range(2, -1, -1):
        assert gv.grad_z_var[l] == pytest.approx(gz.var(), rel=1e-10)
        assert gv.grad_w_var[l] == pytest.approx((hs[l].T @ gz).var(), rel=1e-10)
        assert gv.z_var[l] == pytest.approx(zs[l].var(), rel=1e-10)
        gz = (gz @ model.weights[l][0].T) * (zs[l - 1] > 0) if l else None


def test_adam_matches_keras_update():
    p = np.array([1.0, -2.0])
    g = np.array([0.5, 0.1])
    adam = train.Adam()
    assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon) == (1e-3, 0.9, 0.999, 1e-7)
    m = v = np.zeros(2)
    expected = p.copy()
    for t in range(1, 4):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        alpha = 1e-3 * math.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        expected = expected - alpha * m / (np.sqrt(v) + 1e-7)
        adam.step([p], [g])
    np.testing.assert_allclose(p, expected, rtol=1e-12)


def test_sgd_and_momentum_updates():
    p = np.array([1.0])
    train.SGD(0.1).step([p], [np.array([2.0])])
    assert p[0] == pytest.approx(0.8)
    q = np.array([0.0])
    mom = train.Momentum(0.1, momentum=0.5)
    for _ in range(2):
        mom.step([q], [np.array([1.0])])
    assert q[0] == pytest.approx(-0.1 - 0.15)  # v1 = -0.1, v2 = -0.05 - 0.1
    r = np.array([0.0])
    nes = train.get_optimizer("nesterov", lr=0.1, momentum=0.5)
    nes.step([r], [np.array([1.0])])
    assert r[0] == pytest.approx(0.5 * -0.1 - 0.1)
    assert train.get_optimizer({"name": "adam", "learning_rate": 0.01}).learning_rate == 0.01


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"epochs": 0}, ValueError, "epochs"),
    ({"epochs": 2.5}, TypeError, "epochs"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"learning_rate": -0.1}, ValueError, "learning_rate"),
    ({"learning_rate": float("nan")}, ValueError, "learning_rate"),
    ({"optimizer": "rmsprop"}, ValueError, "optimizer"),
    ({"optimizer": 3}, TypeError, "optimizer"),
    ({"validation_split": 1.0}, ValueError, "validation_split"),
    ({"validation_split": 0.2, "validation_data": ([[0, 0]], [0])}, ValueError, "validation"),
    ({"callback": 5}, TypeError, "callback"),
])
def test_fit_rejects_bad_arguments(kwargs, exc, match):
    data = make_toy_2d(20, "blobs", seed=0)
    model = train.classifier([2, 4, 2], seed=0)
    with pytest.raises(exc, match=match):
        train.fit(model, data.x, data.y, **kwargs)


def test_fit_rejects_bad_data():
    model = train.classifier([2, 4, 3], seed=0)
    x = np.zeros((5, 2))
    with pytest.raises(ValueError, match=r"y must lie in 0\.\.2"):
        train.fit(model, x, np.array([0, 1, 2, 3, 0]))
    with pytest.raises(ValueError, match=r"y must lie"):
        train.fit(model, x, np.array([0, 1, -1, 0, 0]))
    with pytest.raises(ValueError, match="same number of samples"):
        train.fit(model, x, np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="integer class labels"):
        train.fit(model, x, np.array([0.0, 1.0, 2.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="x has 3 features"):
        train.fit(model, np.zeros((5, 3)), np.zeros(5, int))
    with pytest.raises(ValueError, match="2-D"):
        train.fit(model, np.zeros(5), np.zeros(5, int))
    with pytest.raises(TypeError, match="real numeric"):
        train.fit(model, np.zeros((5, 2), complex), np.zeros(5, int))
    with pytest.raises(TypeError, match="model"):
        train.fit([(np.zeros((2, 3)), np.zeros(3))], x, np.zeros(5, int))
    with pytest.raises(ValueError, match="validation_data"):
        train.fit(model, x, np.zeros(5, int), validation_data=(x, np.array([0, 5, 0, 0, 0])))


def test_nan_data_propagates_and_warns():
    model = train.classifier([2, 4, 2], seed=0)
    x = np.array([[np.nan, 0.0], [1.0, 1.0]])
    with pytest.warns(RuntimeWarning, match="training loss is nan"):
        hist = train.fit(model, x, np.array([0, 1]), epochs=1, batch_size=2)
    assert math.isnan(hist.loss[0])


def test_mlp_builder_options_and_errors():
    m = train.classifier([3, 4, 5, 2], ["tanh", {"name": "leaky_relu", "negative_slope": 0.2}],
                         kernel_initializer=["he_normal", "glorot_uniform", "zeros"],
                         bias_initializer={"name": "constant", "value": 0.5}, seed=0)
    assert [a.name for a in m.activations] == ["tanh", "leaky_relu", "linear"]
    assert np.all(m.weights[2][0] == 0) and np.all(m.weights[0][1] == 0.5)
    assert m.n_params == 3 * 4 + 4 + 4 * 5 + 5 + 5 * 2 + 2 and m.widths == [3, 4, 5, 2]
    assert "MLP(widths=[3, 4, 5, 2]" in repr(m)
    with pytest.raises(ValueError, match="widths"):
        train.classifier([3])
    with pytest.raises(ValueError, match=r"widths\[1\]"):
        train.classifier([3, 0, 2])
    with pytest.raises(ValueError, match="activation"):
        train.classifier([3, 4, 2], ["relu", "relu", "relu"])
    with pytest.raises(ValueError, match="last layer must be linear"):
        train.classifier([3, 4, 2], ["relu", "relu"])
    with pytest.raises(ValueError, match="kernel_initializer"):
        train.classifier([3, 4, 2], kernel_initializer="bogus")
    with pytest.raises(ValueError, match="kernel_initializer"):
        train.classifier([3, 4, 2], kernel_initializer=["zeros"])
    with pytest.raises(ValueError, match="bias initializer of dense layer 0"):
        train.classifier([3, 4, 2], bias_initializer="he_normal")
    with pytest.raises(TypeError, match="dtype"):
        train.classifier([3, 4, 2], dtype=np.float16)
    with pytest.raises(ValueError, match="unknown name"):
        train.classifier([3, 4, 2], "nope")


def test_from_network_draws_the_analyzers_spec():
    import varprop

    net = varprop.mlp([3, 6, 5, 2], "tanh", ["he_normal", "orthogonal", "lecun_uniform"],
                      "random_normal", final_activation=False)
    for dtype in (np.float32, np.float64):
        a = train.MLP.from_network(net, seed=4, dtype=dtype)
        b = train.classifier([3, 6, 5, 2], "tanh", seed=4, dtype=dtype,
                             kernel_initializer=["he_normal", "orthogonal", "lecun_uniform"],
                             bias_initializer="random_normal")
        assert [a.name for a in a.activations] == ["tanh", "tanh", "linear"]
        for (wa, ba), (wb, bb) in zip(a.weights, b.weights):  # bit for bit
            assert wa.dtype == dtype and wa.tobytes() == wb.tobytes() and ba.tobytes() == bb.tobytes()
    # one Generator draws W_0, b_0, W_1, ... in order: the same as drawing them by hand
    rng = np.random.default_rng(4)
    w0 = varprop.get_initializer("he_normal")((3, 6), seed=rng, dtype=np.float32)
    c = train.MLP.from_network(net, seed=np.random.default_rng(4))
    assert np.array_equal(c.weights[0][0], w0)
    assert not hasattr(train, "mlp")  # one name: classifier
    no_bias = train.MLP.from_network(varprop.mlp([2, 3], "relu", "ones", None,
                                                 final_activation=False), seed=0)
    assert np.all(no_bias.weights[0][1] == 0) and np.all(no_bias.weights[0][0] == 1)
    with pytest.raises(ValueError, match="final_activation=False"):
        train.MLP.from_network(varprop.mlp([2, 3], "relu"), seed=0)
    with pytest.raises(ValueError, match="chain of Dense layers"):
        train.MLP.from_network(varprop.Network(2, (varprop.BatchNorm(),)))
    with pytest.raises(TypeError, match="net must be a varprop Network"):
        train.MLP.from_network([2, 3])
    with pytest.raises(TypeError, match="seed"):
        train.MLP.from_network(net, seed=1.5)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        train.MLP.from_network(net, dtype=np.float16)


def test_mlp_from_arrays_checks_shapes():
    w1, b1 = np.zeros((3, 4), np.float32), np.zeros(4, np.float32)
    w2, b2 = np.zeros((5, 2), np.float32), np.zeros(2, np.float32)
    with pytest.raises(ValueError, match="takes 5 inputs"):
        train.MLP([(w1, b1), (w2, b2)], ["relu", "linear"])
    with pytest.raises(TypeError, match="dtype"):
        train.MLP([(w1, b1), (np.zeros((4, 2)), b2)], ["relu", "linear"])
    copy = train.MLP([(w1, b1), (np.zeros((4, 2), np.float32), b2)], ["relu", "linear"]).copy()
    assert copy.weights[0][0] is not w1


def test_optimizer_errors():
    with pytest.raises(ValueError, match="momentum"):
        train.Momentum(momentum=1.0)
    with pytest.raises(ValueError, match="beta_2"):
        train.Adam(beta_2=1.5)
    with pytest.raises(TypeError, match="unexpected"):
        train.get_optimizer("sgd", momentum=0.9)
    with pytest.raises(TypeError, match="object"):
        train.get_optimizer(train.SGD(), learning_rate=0.1)
    assert opt_mod.OPTIMIZER_NAMES == ("sgd", "momentum", "nesterov", "adam")
