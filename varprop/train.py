"""The trainer of the seed experiments: ``varprop.train``.

A thin public face of :mod:`varprop.training` (split into a subpackage to keep files
short)::

    from varprop import train
    from varprop.datasets import load_iris, standardize, train_test_split

    data = load_iris()
    x_tr, x_te, y_tr, y_te = train_test_split(data.x, data.y, test_size=0.2, seed=0)
    x_tr, x_te, _, _ = standardize(x_tr, x_te)
    model = train.classifier([4, 32, 16, 3], "relu", kernel_initializer="he_normal", seed=0)
    history = train.fit(model, x_tr, y_tr, epochs=50, batch_size=32, optimizer="adam",
                        validation_data=(x_te, y_te), seed=0)
    train.evaluate(model, x_te, y_te)               # Evaluation(loss=..., accuracy=...)
    history.grad_w_var                              # (epochs, layers) Var[dL/dW]

(``validation_split`` holds out the *last* rows, as Keras does: the shipped Iris rows
are ordered by class, so split them with ``train_test_split`` instead.)

Forward and backward run only through :func:`varprop.kernels.dense_forward` and
:func:`varprop.kernels.dense_backward`; the last layer is linear and the loss is the
softmax cross-entropy (log-sum-exp), averaged over the batch.
"""

from .training import *  # noqa: F401,F403
from .training import __all__  # noqa: F401
