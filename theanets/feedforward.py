"""Feed-forward models: :class:`Regressor`, :class:`Classifier`, :class:`Autoencoder`."""

import warnings

import numpy as np
import pytensor
import pytensor.tensor as pt
import scipy.sparse
from pytensor.graph.replace import clone_replace

from . import graph, util

__all__ = ["Regressor", "Classifier", "Autoencoder"]


def _r_squared(target, prediction, weights=None):
    """Coefficient of determination over all values, optionally weighted.

    Computed in float64. With weights, both the sums and the mean of the
    targets are weighted: :math:`1 - \\sum w (y - \\hat y)^2 / \\sum w (y -
    \\bar y_w)^2` with :math:`\\bar y_w = \\sum w y / \\sum w`.
    """
    target = np.asarray(target, dtype="float64")
    prediction = np.asarray(prediction, dtype="float64")
    weights = np.ones_like(target) if weights is None else np.asarray(weights, dtype="float64")
    mean = (weights * target).sum() / weights.sum()
    residual = (weights * (target - prediction) ** 2).sum()
    total = (weights * (target - mean) ** 2).sum()
    return float(1 - residual / total) if total > 0 else float(residual == 0)


def _score_weights(w, shape):
    """Return score weights as float64 after checking them against the targets' shape."""
    w = np.asarray(w, dtype="float64")
    if w.shape != tuple(shape):
        raise ValueError(f"score: w has shape {w.shape}; give one weight per target value, {shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("score: w contains NaN or infinite values")
    if np.any(w < 0) or not w.sum() > 0:
        raise ValueError("score: w must be non-negative with a positive sum")
    return w


class Regressor(graph.Network):
    """A network that maps inputs to real-valued targets.

    The default loss is the mean squared error and the output layer is linear.

    Parameters
    ----------
    layers, loss, weighted, rng, **kwargs
        As for :class:`theanets.graph.Network` (``loss`` defaults to
        ``'mse'``).

    Examples
    --------
    >>> import numpy as np
    >>> net = Regressor([3, (8, 'tanh'), 2])
    >>> net.predict(np.zeros((5, 3), 'float32')).shape
    (5, 2)
    """

    def score(self, x, y, w=None, **kwargs):
        """Compute the coefficient of determination :math:`R^2` of predictions.

        .. math::
            R^2 = 1 - \\frac{\\sum w (y - \\hat y)^2}{\\sum w (y - \\bar y_w)^2},
            \\qquad \\bar y_w = \\frac{\\sum w y}{\\sum w},

        summed over every target value (all examples and outputs); without
        weights, :math:`w = 1`.

        Parameters
        ----------
        x : ndarray
            Inputs.
        y : ndarray
            Targets.
        w : ndarray, optional
            Non-negative weights, one per target value (the shape of ``y``).
        **kwargs
            Regularizer keyword arguments applied when predicting.

        Returns
        -------
        float
            1 for a perfect fit; 0 for predicting the (weighted) mean.

        Raises
        ------
        ValueError
            If ``y`` or ``w`` has the wrong shape or non-finite values, or the
            weights are negative or sum to zero.
        """
        prediction = self.predict(self._finite_inputs(x, "score"), **kwargs)
        y = np.asarray(y, dtype="float64")
        if y.shape != prediction.shape:
            raise ValueError(
                f"score: y has shape {y.shape}, the network predicts {prediction.shape}"
            )
        self._check_finite([y], ["y"])
        return _r_squared(y, prediction, None if w is None else _score_weights(w, y.shape))


class Classifier(graph.Network):
    """A network that assigns one of K classes to each input.

    The output layer is a softmax over classes and the default loss is the
    cross-entropy of integer class labels. Targets are arrays of labels in
    ``0 .. K-1``.

    Parameters
    ----------
    layers, loss, weighted, rng, **kwargs
        As for :class:`theanets.graph.Network`, except that ``loss``
        defaults to ``'xe'``.

    Examples
    --------
    >>> import numpy as np
    >>> net = Classifier([4, 6, 3])
    >>> net.predict(np.zeros((2, 4), 'float32')).shape
    (2,)
    """

    DEFAULT_OUTPUT_ACTIVATION = "softmax"

    def __init__(self, layers=(), loss="xe", weighted=False, rng=13, **kwargs):
        super().__init__(layers=layers, loss=loss, weighted=weighted, rng=rng, **kwargs)

    @property
    def num_classes(self):
        """Number of classes (the output layer's size)."""
        return self.layers[-1].output_shape[-1]

    def _check_target(self, var, array, what):
        array = super()._check_target(var, array, what)
        if var.dtype.startswith("int") and array.size:
            low, high = int(array.min()), int(array.max())
            if low < 0 or high >= self.num_classes:
                raise ValueError(
                    f"{what}: class labels must be in 0..{self.num_classes - 1} for this "
                    f"{self.num_classes}-class network, got labels from {low} to {high}"
                )
        return array

    def monitors(self, **kwargs):
        """Return monitors: ``err``, ``acc`` (accuracy), then any requested ones.

        Parameters
        ----------
        **kwargs
            ``monitors`` and regularizer keyword arguments, as for
            :meth:`theanets.graph.Network.monitors`.

        Returns
        -------
        list of (str, scalar expression)
            The monitors of :meth:`theanets.graph.Network.monitors`, with
            ``('acc', accuracy)`` inserted after ``err`` when the network
            has integer labels: the fraction of labels predicted correctly
            (weighted, for a weighted loss).
        """
        result = super().monitors(**kwargs)
        regs = self._regularizers(
            {k: v for k, v in kwargs.items() if k != "monitors"}, "monitors()"
        )
        outputs, _ = self.build_graph(regs)
        labels = [v for v in self.variables if v.dtype.startswith("int")]
        if labels:
            predicted = pt.argmax(outputs[self.losses[0].output_name], axis=-1)
            correct = pt.cast(pt.eq(predicted, labels[0]), pytensor.config.floatX)
            weights = [v for v in self.losses[0].variables if v.name == "weights"]
            if weights:
                acc = (weights[0] * correct).sum() / weights[0].sum()
            else:
                acc = correct.mean()
            result.insert(1, ("acc", acc))
        return result

    def predict(self, x, **kwargs):
        """Return the most probable class of each input.

        Parameters
        ----------
        x : ndarray
            Inputs.
        **kwargs
            Regularizer keyword arguments applied to the graph.

        Returns
        -------
        ndarray of int
            Class indices.
        """
        return np.argmax(self.predict_proba(x, **kwargs), axis=-1)

    def classify(self, x, **kwargs):
        """Same as :meth:`predict`; deprecated.

        Parameters
        ----------
        x, **kwargs
            As for :meth:`predict`.

        Returns
        -------
        ndarray of int
            The most probable class of each input.

        Warns
        -----
        DeprecationWarning
        """
        warnings.warn("classify() is deprecated; use predict()", DeprecationWarning, stacklevel=2)
        return self.predict(x, **kwargs)

    def predict_proba(self, x, **kwargs):
        """Return class probabilities, one row per input.

        Parameters
        ----------
        x : ndarray
            Inputs, one example per row.
        **kwargs
            Regularizer keyword arguments (dropout or noise change the
            probabilities the graph computes).

        Returns
        -------
        ndarray
            The softmax output; rows sum to 1.
        """
        return super().predict(x, **kwargs)

    def predict_logit(self, x, **kwargs):
        """Return the output layer's values before the softmax (``out:pre``).

        Parameters
        ----------
        x : ndarray
            Inputs.
        **kwargs
            As for :meth:`predict_proba`.

        Returns
        -------
        ndarray
            The unnormalised class scores (logits), one row per input.
        """
        return self._predict_output(x, self.layers[-1].full_name("pre"), **kwargs)

    def score(self, x, y, w=None, **kwargs):
        """Return the (weighted) accuracy of predicted labels.

        The fraction of labels predicted correctly, or with weights
        :math:`\\sum w [y = \\hat y] / \\sum w`.

        Parameters
        ----------
        x : ndarray
            Inputs.
        y : ndarray of int
            True class labels, in ``0 .. num_classes - 1``.
        w : ndarray, optional
            Non-negative weights, one per label (the shape of ``y``).
        **kwargs
            Regularizer keyword arguments applied when predicting.

        Returns
        -------
        float
            The (weighted) fraction of correctly classified labels.

        Raises
        ------
        ValueError
            For labels outside ``0 .. num_classes - 1``, a wrong shape, or
            weights that are negative, non-finite or sum to zero.
        """
        labels = [v for v in self.variables if v.dtype.startswith("int")]
        var = labels[0] if labels else pt.tensor(dtype="int64", shape=(None,) * (np.ndim(y)))
        var_name = getattr(var, "name", None) or "y"
        y = self._check_target(var, y, "score")
        self._check_finite([np.asarray(y, float)], [var_name])
        predicted = self.predict(self._finite_inputs(x, "score"), **kwargs)
        if predicted.shape != y.shape:
            raise ValueError(f"score: y has shape {y.shape}, expected {predicted.shape}")
        correct = (predicted == y).astype(float)
        if w is None:
            return float(correct.mean())
        w = _score_weights(w, y.shape)
        return float((w * correct).sum() / w.sum())


class Autoencoder(graph.Network):
    """A network trained to reproduce its input at its output.

    The loss compares the output with the input itself, so training data
    holds only inputs (and weights for a weighted loss). Tied layers such as
    ``[784, 256, ('tied', 784)]`` share the encoder's weights.

    Parameters
    ----------
    layers, loss, weighted, rng, **kwargs
        As for :class:`theanets.graph.Network`; the loss, ``'mse'`` by
        default, has the input as its target.

    Examples
    --------
    >>> net = Autoencoder([6, (3, 'sigmoid'), ('tied', 6)])
    >>> [p.name for p in net.params]
    ['hid1.w', 'hid1.b', 'out.b']
    """

    def add_loss(self, loss=None, **kwargs):
        """Add a loss whose target is, by default, the network input.

        Parameters
        ----------
        loss : str or :class:`theanets.losses.Loss`
            A registered loss name or an instance (an instance is used as
            it is, with its own target).
        **kwargs
            Keyword arguments for the loss constructor, as for
            :meth:`theanets.graph.Network.add_loss`; without ``target``,
            the target is the network's first input.

        Returns
        -------
        :class:`theanets.losses.Loss`
            The loss added.
        """
        if not isinstance(loss, util.Registrar) and "target" not in kwargs and self.inputs:
            kwargs["target"] = self.inputs[0]
        return super().add_loss(loss, **kwargs)

    def _layer_output_name(self, layer):
        if layer is None:
            layer = len(self.layers) // 2
        if isinstance(layer, str) and ":" in layer:
            return layer
        return self.find_layer(layer).output_name

    def encode(self, x, layer=None, sample=False, **kwargs):
        """Encode inputs as the output of an inner layer.

        Parameters
        ----------
        x : ndarray
            Inputs.
        layer : str or int, optional
            Name or index of the layer whose ``:out`` is the code (or a full
            output name). Defaults to the middle layer.
        sample : bool, optional
            If True, return binary samples (uint8) drawn with the code values
            as independent Bernoulli probabilities (clipped to ``[0, 1]``).
            The draws come from a random state of the network's own, seeded
            with its ``rng`` on the first sampling call (or, if ``rng`` is a
            RandomState, from that state), so a network built with the same
            seed gives the same samples, and NumPy's global random state is
            left alone.
        **kwargs
            Regularizer keyword arguments.

        Returns
        -------
        ndarray
        """
        code = self._predict_output(x, self._layer_output_name(layer), **kwargs)
        if sample:
            rng = self._sampling_rng()
            return rng.binomial(n=1, p=np.clip(code, 0, 1)).astype(np.uint8)
        return code

    def _sampling_rng(self):
        """The random state for :meth:`encode` samples, made from ``rng`` when first needed."""
        if getattr(self, "_code_rng", None) is None:
            self._code_rng = util.resolve_rng(self.rng)
        return self._code_rng

    def decode(self, z, layer=None, **kwargs):
        """Decode codes from an inner layer back to the output space.

        Parameters
        ----------
        z : ndarray
            Values for the ``:out`` of ``layer``.
        layer : str or int, optional
            Name or index of the code layer; defaults to the middle layer.
        **kwargs
            Regularizer keyword arguments.

        Returns
        -------
        ndarray
            The network output computed from the codes.
        """
        name = self._layer_output_name(layer)
        regs = self._regularizers(kwargs, "decode()")
        outputs, updates = self.build_graph(regs)
        if name not in outputs:
            raise util.ConfigurationError(f"decode: {name!r} is not an output of this network")

        def code_graph():
            replacement = outputs[name].type(name="code")
            out = clone_replace(outputs[self.layers[-1].output_name], {outputs[name]: replacement})
            return [replacement], out

        fn = self._compile(("decode", name, self.cache_key(regs)), code_graph, None, updates)
        code_type = outputs[name].type
        z = np.asarray(z)
        if z.dtype.kind not in "biuf":
            raise TypeError(f"decode: codes must be real numbers, got dtype {z.dtype}")
        z = np.ascontiguousarray(z, dtype=code_type.dtype)
        want = code_type.ndim
        if z.ndim != want:
            raise ValueError(f"decode: codes for {name!r} must be {want}-D, got shape {z.shape}")
        return fn(z)

    def score(self, x, w=None, **kwargs):
        """Return the :math:`R^2` of the reconstruction of ``x``.

        The same (weighted) coefficient of determination as
        :meth:`Regressor.score <theanets.feedforward.Regressor.score>`, with
        the input as the target.

        Parameters
        ----------
        x : ndarray
            Inputs.
        w : ndarray, optional
            Non-negative weights, one per input value (the shape of ``x``).
        **kwargs
            Regularizer keyword arguments applied when predicting.

        Returns
        -------
        float
            1 for a perfect reconstruction.

        Raises
        ------
        ValueError
            If ``x`` has non-finite values or ``w`` is invalid (see
            :meth:`Regressor.score <theanets.feedforward.Regressor.score>`).
        """
        x = self._finite_inputs(x, "score")
        prediction = self.predict(x, **kwargs)
        if scipy.sparse.issparse(x):
            x = x.toarray()
        if np.shape(x) != prediction.shape:
            raise ValueError(
                "score: an autoencoder's score compares its output with its (single) input, "
                f"but it predicts shape {prediction.shape} for inputs of shape {np.shape(x)}"
            )
        return _r_squared(x, prediction, None if w is None else _score_weights(w, x.shape))
