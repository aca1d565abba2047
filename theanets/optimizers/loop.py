r"""The training loop of the optimizers: epochs, validation, early stopping.

:class:`TrainingLoop` gives :class:`~theanets.optimizers.base.Optimizer` its
:meth:`~TrainingLoop.iterate` and :meth:`~TrainingLoop.minimize` methods:
mini-batches fed to the compiled training function, monitors averaged over
epochs, validation every few epochs, the best parameters kept and restored,
and stopping when patience runs out, after ``max_updates`` updates, on
Ctrl-C or on a non-finite loss. The update graphs themselves, and the
compiled functions that apply them, are built by
:mod:`theanets.optimizers.base`, which this module does not import.
"""

import contextlib
import logging
import warnings

import numpy as np

from .. import util
from .dataset import Dataset

__all__ = ["TrainingLoop"]


class TrainingLoop:
    """The epoch loop of an optimizer (a mixin of :class:`~theanets.optimizers.base.Optimizer`).

    The class it is mixed into provides the loss's symbolic inputs
    (``_inputs``), its parameters (``_params``), the names of the monitors
    its compiled functions return, loss first (``_monitor_names``), and
    three methods: ``_configure(kwargs)`` checks the keyword arguments of
    :meth:`iterate` and fills in defaults, ``_start_run(config)`` prepares a
    run and returns the compiled training function (one update per call,
    returning the monitors), and ``_evaluation_function()`` returns the
    compiled monitors without updates. It may override
    :meth:`_epoch_context`, the context every epoch runs in.

    Attributes
    ----------
    best_loss : float or None
        The lowest validation loss of the last run (None before one).
    best_params : list of ndarray or None
        The parameter values at that validation.
    """

    best_loss = None
    best_params = None

    def _batches(self, dataset):
        """Yield argument lists for the compiled functions from ``dataset``."""
        n = len(self._inputs)
        if dataset is None:
            if n:
                raise ValueError(
                    f"the loss needs {n} input(s) ({self._input_names()}) but no data was given"
                )
            yield []
            return
        dtypes = [getattr(v, "dtype", None) for v in self._inputs]
        for batch in dataset:
            if len(batch) != n:
                raise ValueError(
                    f"a batch of {getattr(dataset, 'name', 'data')!r} has {len(batch)} array(s) "
                    f"but the loss needs {n} input(s) ({self._input_names()})"
                )
            # Match each array to its input's dtype here (e.g. int64 labels for
            # an int32 input, float64 data for a float32 model) so that PyTensor
            # does not refuse a narrowing conversion.
            for i, (x, dtype) in enumerate(zip(batch, dtypes, strict=True)):
                if isinstance(x, np.ndarray) and dtype is not None and x.dtype != dtype:
                    batch = list(batch)
                    batch[i] = x.astype(dtype)
            yield batch

    @staticmethod
    def _progress(batches, dataset, config, epoch):
        """Wrap an epoch's batches in a ``tqdm`` progress bar when asked and installed."""
        if not config.get("progress"):
            return batches
        try:
            from tqdm.auto import tqdm
        except ImportError:
            util.log("progress=True needs the optional tqdm package; no progress bar shown")
            return batches
        total = len(dataset) if hasattr(dataset, "__len__") else None
        return tqdm(batches, total=total, desc=f"epoch {epoch + 1}", leave=False, unit="batch")

    def _input_names(self):
        return ", ".join(str(v.name or f"input{i}") for i, v in enumerate(self._inputs))

    def _summarise(self, values):
        means = np.mean(np.asarray(values, dtype=np.float64), axis=0)
        return {name: float(v) for name, v in zip(self._monitor_names, means, strict=True)}

    def evaluate(self, dataset):
        """Compute the monitors, averaged over the batches of ``dataset``.

        Parameters
        ----------
        dataset : Dataset, sequence of arrays, or None
            The data; anything that is not a :class:`Dataset` is wrapped in one
            (batch size 32). None is allowed when the loss has no inputs.

        Returns
        -------
        dict
            ``{'loss': float, <monitor name>: float, ...}``; each value is the
            unweighted mean over batches.
        """
        if dataset is not None and not isinstance(dataset, Dataset):
            dataset = Dataset(dataset, name="evaluate")
        fn = self._evaluation_function()
        values = [fn(*batch) for batch in self._batches(dataset)]
        return self._summarise(values)

    def set_params(self, targets=None):
        """Set the parameter values.

        Parameters
        ----------
        targets : sequence of ndarray, optional
            One array per parameter. Defaults to the best parameters seen during
            the last :meth:`iterate` (no effect before one has run).
        """
        if targets is None:
            targets = self.best_params
        if targets is None:
            return
        if len(targets) != len(self._params):
            raise ValueError(f"expected {len(self._params)} arrays, got {len(targets)}")
        for param, value in zip(self._params, targets, strict=True):
            param.set_value(np.array(value, dtype=param.dtype, copy=True))

    def _snapshot(self):
        return [np.array(p.get_value(borrow=True)) for p in self._params]

    def _epoch_context(self):
        """The context each epoch (its validation and its updates) runs in; none here.

        Returns
        -------
        context manager
        """
        return contextlib.nullcontext()

    def _as_dataset(self, data, name, config, size_key):
        if data is None or isinstance(data, Dataset):
            return data
        return Dataset(
            data,
            name=name,
            batch_size=config["batch_size"],
            iteration_size=config[size_key],
            rng=config["rng"],
        )

    def _log(self, label, index, monitors, marker=""):
        if util.log_enabled(logging.INFO):
            fields = " ".join(f"{k}={v:.6f}" for k, v in monitors.items())
            util.log("{} {} {}{}", label, index, fields, marker)

    def _stop_nonfinite(self, where, monitors):
        message = (
            f"{type(self).__name__}: the {where} loss became {monitors['loss']}; "
            "stopping and restoring the best parameters seen"
        )
        util.log(message, level=logging.WARNING)
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    def iterate(self, train=None, valid=None, max_updates=None, **kwargs):
        r"""Optimise the loss, yielding monitor values after every epoch.

        Parameters
        ----------
        train : Dataset, sequence of arrays, callable, or None
            Training data; anything that is not a :class:`Dataset` is wrapped in
            one using ``batch_size``, ``train_batches`` and ``rng``. None is
            allowed when the loss has no inputs (one update per epoch).
        valid : Dataset, sequence of arrays, callable, or None
            Validation data (wrapped using ``batch_size``, ``valid_batches`` and
            ``rng``). Defaults to the training dataset itself.
        max_updates : int, optional
            Stop after this many parameter updates (batches) in total.
        **kwargs
            Options (see
            :meth:`~theanets.optimizers.base.Optimizer.known_kwargs`); shared
            by all algorithms:

            - ``learning_rate`` (1e-4), ``momentum`` (0), ``nesterov`` (False);
            - ``max_gradient_norm`` (0: off), ``max_gradient_elem`` (0: off;
              aliases ``max_gradient_clip``, ``gradient_clip``);
            - ``patience`` (5), ``validate_every`` (10), ``min_improvement`` (0);
            - ``batch_size`` (32), ``train_batches``, ``valid_batches`` (None:
              all batches), ``rng`` (None; seeds shuffling and, for ESGD, the
              random probe vectors);
            - ``progress`` (False): show a progress bar over each epoch's
              batches, if the optional ``tqdm`` package is installed.

        Returns
        -------
        generator of (dict, dict)
            After every epoch, a pair ``(train_monitors, valid_monitors)``.
            ``train_monitors`` is ``{'loss': float, <monitor>: float, ...}``:
            the means, over the epoch's batches, of the values computed
            *before* each batch's update; ``valid_monitors`` holds the monitors
            of the most recent validation.

        Raises
        ------
        ConfigurationError
            At call time, for an unknown keyword argument (with the closest
            known name suggested) or an invalid value.

        Warns
        -----
        RuntimeWarning
            If the training or validation loss is not finite; iteration stops
            and the best parameters are restored.

        Notes
        -----
        An epoch is one pass of ``train`` (``iteration_size`` batches). As in
        ``downhill``, validation happens *before* training at epoch 0 (so the
        initial parameters are the first candidate for "best") and then before
        epochs ``validate_every``, ``2 * validate_every``, …; the pair yielded
        after an epoch carries the latest validation, which may be older than
        the epoch.

        A validation *improves* when

        .. math::
            \frac{\mathcal{L}_{best} - \mathcal{L}_{valid}}{|\mathcal{L}_{best}|}
            > \text{min\_improvement};

        the parameters are then copied as the new best. Iteration stops once
        ``patience`` validations in a row have failed to improve and one more
        fails (so ``patience=0`` stops at the first failure). It also stops
        after ``max_updates`` updates — in which case the last epoch may be
        partial and a final validation is run, yielded and considered for
        "best" — on :class:`KeyboardInterrupt` raised while computing, and on a
        non-finite loss. In every one of these cases the best parameters are
        restored before the generator returns. If the caller abandons the
        generator early, the parameters are left as they are.

        Two deliberate differences from ``downhill`` 0.4: ``max_updates``
        counts parameter updates (batches), as its documentation promised,
        where its code counted epochs; and the final validation after
        ``max_updates`` means a short run no longer restores the parameters of
        an out-of-date validation (with ``downhill``, ``max_updates`` smaller
        than ``validate_every`` gave back the initial parameters). A non-finite
        loss ends iteration with a warning instead of continuing.

        The optimizer's state (velocities, gradient averages, step sizes) is
        reset to its initial value at the start of every call.
        """
        if max_updates is not None:
            kwargs["max_updates"] = max_updates
        config = self._configure(kwargs)
        train = self._as_dataset(train, "train", config, "train_batches")
        if valid is None:
            valid = train
        else:
            valid = self._as_dataset(valid, "valid", config, "valid_batches")
        return self._iterate(config, train, valid)

    def _iterate(self, config, train, valid):
        """The generator behind :meth:`iterate`, with checked arguments."""
        step = self._start_run(config)
        label = type(self).__name__
        limit = config["max_updates"]
        patience = config["patience"]
        every = config["validate_every"]
        min_improvement = config["min_improvement"]

        self.best_loss = None
        self.best_params = self._snapshot()
        validations = best_validation = 0
        epoch = updates = 0
        validation = None

        def record(monitors):
            nonlocal validations, best_validation
            loss = monitors["loss"]
            best = self.best_loss
            improved = best is None or (best - loss) > abs(best) * min_improvement
            if improved:
                self.best_loss = loss
                self.best_params = self._snapshot()
                best_validation = validations
            self._log("validation", validations, monitors, " *" if improved else "")
            validations += 1
            return validations - 1 - best_validation > patience

        while True:
            try:
                with self._epoch_context():
                    if epoch % every == 0:
                        validation = self.evaluate(valid)
                        if not np.isfinite(validation["loss"]):
                            self._stop_nonfinite("validation", validation)
                            break
                        if record(validation):
                            util.log("patience elapsed after {} validations", validations)
                            break
                    values = []
                    for batch in self._progress(self._batches(train), train, config, epoch):
                        out = step(*batch)
                        values.append(out)
                        updates += 1
                        if not np.isfinite(out[0]):
                            break
                        if limit is not None and updates >= limit:
                            break
                    if not values:
                        raise ValueError("the training data produced no batches")
                    training = self._summarise(values)
                    if not np.isfinite(values[-1][0]) or not np.isfinite(training["loss"]):
                        self._stop_nonfinite("training", training)
                        break
                    epoch += 1
                    self._log(label, epoch, training)
                    done = limit is not None and updates >= limit
                    if done:
                        validation = self.evaluate(valid)
                        if np.isfinite(validation["loss"]):
                            record(validation)
                        util.log("reached max_updates={}", limit)
            except KeyboardInterrupt:
                util.log("interrupted; restoring the best parameters", level=logging.WARNING)
                break
            yield training, validation
            if done:
                break
        self.set_params(self.best_params)

    def minimize(self, *args, **kwargs):
        """Run :meth:`iterate` to the end and return its last pair of monitors.

        Parameters
        ----------
        *args, **kwargs
            Passed to :meth:`iterate`.

        Returns
        -------
        (dict, dict) or None
            The last ``(train_monitors, valid_monitors)`` yielded, or None if
            iteration stopped before the first epoch finished.
        """
        last = None
        for pair in self.iterate(*args, **kwargs):
            last = pair
        return last
