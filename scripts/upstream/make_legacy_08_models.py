"""Save small models with upstream theanets master (0.8.0pre) for load tests.

The four models in ``shared/legacy-0.8`` cover a regressor, a classifier, a
tied autoencoder and a GRU. This script adds models with the other layer
kinds, activations and model classes of master, saved the same way, so that
``tests/test_legacy.py`` can check the 0.8 reader against what the old code
computed.

Run it with a throw-away interpreter holding Theano and master's source (see
README.md in this folder for the Theano set-up; master needs ``click`` and
``downhill`` instead of ``climate``)::

    git --git-dir=<mirror of lmjohns3/theanets> archive HEAD theanets | tar -x -C /tmp/m8src
    /tmp/m8/bin/pip install Theano==1.0.5 numpy==1.23.5 scipy==1.9.3 click downhill==0.4.0
    THEANO_FLAGS=blas.ldflags=,floatX=float32,cxx=,traceback.limit=0 PYTHONPATH=/tmp/m8src \\
        /tmp/m8/bin/python scripts/upstream/make_legacy_08_models.py

For each model it writes into ``tests/fixtures/legacy-0.8/``:

``<model>.pkl``
    ``net.save('<model>.pkl')`` after three SGD iterations.
``<model>.npz``
    ``X`` (the prediction input), ``predict``, ``proba`` for classifiers,
    every ``feed_forward(X)`` output by its full name and every parameter by
    its name.
``<model>.json``
    The construction, the files, the model class and each layer's class,
    name, activation, parameter names and tied partner.

It then reloads every pickle with master's own ``Network.load`` and checks
that the prediction is reproduced.
"""

import collections
import collections.abc
import json
import os

import numpy as np
import scipy.sparse
import theanets
import theanets.convolution
import theanets.recurrent

# downhill 0.4.0 still uses collections.Callable (removed in Python 3.10).
if not hasattr(collections, "Callable"):
    collections.Callable = collections.abc.Callable


def _enable_python_conv():
    # Theano 1.0.5 looks for private scipy.signal helpers at old locations; with
    # cxx= (no C compiler) ConvOp needs them.
    import theano.tensor.nnet.conv as tconv

    if not tconv.imported_scipy_signal:
        from scipy.signal import _signaltools, _sigtools

        tconv._valfrommode = _signaltools._valfrommode
        tconv._bvalfromboundary = _signaltools._bvalfromboundary
        tconv._convolve2d = _sigtools._convolve2d
        tconv.imported_scipy_signal = True


_enable_python_conv()

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "legacy-0.8")

#: name -> (constructor text, kind of data, input shape of one example)
MODELS = {
    "ff_learnable_acts": (
        "theanets.Regressor([5, (6, 'lgrelu'), (6, 'elu'), (6, 'maxout:3'), "
        "(5, 'relu+norm:z'), (4, 'leaky-relu'), 3], rng=21)",
        "regression",
        (5,),
    ),
    "ff_fixed_acts": (
        "theanets.Regressor([5, (6, 'rect:min'), (6, 'rect:minmax'), (6, 'logistic'), "
        "(5, 'norm:mean'), (5, 'norm:max'), (5, 'softplus'), (4, 'norm:std'), "
        "(4, 'leaky-gain-relu'), 3], rng=21)",
        "regression",
        (5,),
    ),
    "ff_softmax_form": (
        "theanets.Classifier([6, (5, 'ff', 'sigmoid'), (4, 'softmax')], rng=21)",
        "classification",
        (6,),
    ),
    "ff_graph": (
        "theanets.Regressor([6, (5, 'tanh'), "
        "dict(size=4, inputs=('in:out', 'hid1:out'), activation='tanh'), "
        "dict(form='concat', inputs=('hid2:out', 'hid1:out')), "
        "dict(size=9, activation='sigmoid', inputs='in:out'), "
        "dict(form='prod', inputs=('hid3:out', 'hid4:out')), 3], rng=21)",
        "regression",
        (6,),
    ),
    "ff_weighted_mae": (
        "theanets.Regressor([4, (5, 'relu'), 2], loss='mae', weighted=True, rng=21)",
        "weighted",
        (4,),
    ),
    "ae_untied": (
        "theanets.Autoencoder([6, (5, 'sigmoid'), (3, 'prelu'), (5, 'tanh'), 6], rng=21)",
        "autoencoder",
        (6,),
    ),
    "ae_tied_acts": (
        "theanets.Autoencoder([6, (5, 'sigmoid'), (3, 'tanh'), ('tied', 'lgrelu'), "
        "('tied', 'sigmoid')], rng=21)",
        "autoencoder",
        (6,),
    ),
    "sparse_input": (
        "theanets.Regressor([dict(size=6, sparse='csr'), (4, 'tanh'), 2], rng=21)",
        "sparse",
        (6,),
    ),
    "conv2_flat": (
        "theanets.Regressor([dict(shape=(5, 5, 2)), "
        "dict(form='conv2', size=3, filter_size=(2, 2), activation='tanh'), "
        "'flat', 4], rng=21)",
        "regression",
        (5, 5, 2),
    ),
    "rnn_regressor": (
        "theanets.recurrent.Regressor([4, (5, 'rnn', 'tanh'), 2], rng=21)",
        "regression",
        (None, 4),
    ),
    "lstm_classifier": (
        "theanets.recurrent.Classifier([4, (5, 'lstm'), 3], rng=21)",
        "classification",
        (None, 4),
    ),
    "rrnn_rates": (
        "theanets.recurrent.Regressor([4, dict(size=5, form='rrnn', rate='matrix'), "
        "dict(size=4, form='rrnn', rate='vector', activation='tanh'), "
        "dict(size=4, form='rrnn', rate='uniform'), 2], rng=21)",
        "regression",
        (None, 4),
    ),
    "mrnn_clockwork": (
        "theanets.recurrent.Regressor([4, dict(size=5, form='mrnn', factors=3, "
        "activation='tanh'), dict(size=6, form='clockwork', periods=(4, 1, 2)), 2], rng=21)",
        "regression",
        (None, 4),
    ),
    "mut1_scrn": (
        "theanets.recurrent.Regressor([4, (5, 'mut1'), "
        "dict(size=4, form='scrn', activation='sigmoid'), 2], rng=21)",
        "regression",
        (None, 4),
    ),
    "gru_autoencoder": (
        "theanets.recurrent.Autoencoder([4, (5, 'gru', 'tanh'), (4, 'linear')], rng=21)",
        "autoencoder",
        (None, 4),
    ),
    "conv1_regressor": (
        "theanets.recurrent.Regressor([4, dict(form='conv1', size=5, filter_size=2, "
        "activation='tanh'), 2], rng=21)",
        "regression_conv1",
        (None, 4),
    ),
    "backward_rnn": (
        "theanets.recurrent.Regressor([4, dict(size=5, form='rnn', direction='back', "
        "activation='tanh'), 2], rng=21)",
        "regression",
        (None, 4),
    ),
    "bidirectional": (
        "theanets.recurrent.Regressor([4, dict(size=6, form='bidirectional', worker='lstm'), "
        "2], rng=21)",
        "regression",
        (None, 4),
    ),
    "conv2_classifier": (
        "theanets.convolution.Classifier([dict(shape=(4, 4, 2)), "
        "dict(form='conv2', size=2, filter_size=(2, 2), border_mode='full'), "
        "dict(form='flatten'), 3], rng=21)",
        "classification",
        (4, 4, 2),
    ),
    "bcrnn": (
        "theanets.recurrent.Regressor([4, dict(size=4, form='bcrnn', num_modules=2), 2], rng=21)",
        "regression",
        (None, 4),
    ),
}

STEPS = 5


def _data(kind, net, shape, rs):
    """Training data for a model: 64 examples."""
    n = 64
    shape = tuple(STEPS if s is None else s for s in shape)
    x = rs.randn(n, *shape).astype("f")
    out = net.layers[-1].output_size
    recurrent = len(shape) == 2 and shape[0] == STEPS and kind != "sparse"
    if kind == "autoencoder":
        return [x]
    if kind == "sparse":
        x[x < 0.5] = 0
        return [scipy.sparse.csr_matrix(x), rs.randn(n, out).astype("f")]
    if kind == "classification":
        labels = rs.randint(out, size=(n, STEPS) if recurrent else n).astype("i")
        return [x, labels]
    if kind == "weighted":
        return [x, rs.randn(n, out).astype("f"), rs.rand(n, out).astype("f")]
    if kind == "regression_conv1":
        return [x, rs.randn(n, STEPS - 1, out).astype("f")]
    ys = (n, STEPS, out) if recurrent else (n, out)
    return [x, rs.randn(*ys).astype("f")]


def _layer_info(layer, net):
    act = layer.kwargs.get("activation", "relu")
    partner = getattr(layer, "partner", None)
    return dict(
        cls="{}.{}".format(type(layer).__module__, type(layer).__name__),
        name=layer.name,
        activation=act if isinstance(act, str) else repr(act),
        params=[p.name for p in layer.params],
        partner=partner.name if partner is not None else None,
    )


def main():
    os.makedirs(OUT, exist_ok=True)
    failures = {}
    for key, (ctor, kind, shape) in MODELS.items():
        rs = np.random.RandomState(99)
        try:
            net = eval(ctor)
        except Exception as err:  # master cannot build it: record why
            failures[key] = "{}: {}".format(type(err).__name__, err)
            print("cannot build", key, failures[key])
            continue
        info = dict(
            construct=ctor,
            model_class="{}.{}".format(type(net).__module__, type(net).__name__),
            layers=[_layer_info(layer, net) for layer in net.layers],
            loss=[type(loss).__name__ for loss in net.losses],
            versions=dict(theanets=theanets.__version__, numpy=np.__version__),
            files={"{}.pkl".format(key): "net.save('{}.pkl')".format(key)},
        )
        trained = 0
        if kind is not None:
            data = _data(kind, net, shape, rs)
            for trained, _ in enumerate(
                net.itertrain(data, algo="sgd", learning_rate=0.01, momentum=0.5, batch_size=16),
                start=1,
            ):
                if trained >= 3:
                    break
        info["training"] = dict(iterations_done=trained, data_seed=99, data_kind=kind)
        net.save(os.path.join(OUT, "{}.pkl".format(key)))
        if kind is not None:
            xs = tuple(STEPS if s is None else s for s in shape)
            X = np.random.RandomState(5).randn(10, *xs).astype("f")
            arrays = dict(X=X)
            if kind == "sparse":
                X[X < 0.5] = 0
                arrays["X"] = X
                X = scipy.sparse.csr_matrix(X)
            arrays["predict"] = np.asarray(net.predict(X))
            if isinstance(net, theanets.Classifier):
                arrays["proba"] = np.asarray(net.predict_proba(X))
            for name, value in net.feed_forward(X).items():
                if scipy.sparse.issparse(value):
                    value = value.toarray()
                arrays[name] = np.asarray(value)
            for param in net.params:
                arrays[param.name] = param.get_value()
            np.savez_compressed(os.path.join(OUT, "{}.npz".format(key)), **arrays)
            info["files"]["{}.npz".format(key)] = "arrays"
            loaded = theanets.Network.load(os.path.join(OUT, "{}.pkl".format(key)))
            assert np.allclose(loaded.predict(X), arrays["predict"]), key
        with open(os.path.join(OUT, "{}.json".format(key)), "w") as handle:
            json.dump(info, handle, indent=1, sort_keys=True)
        print("ok", key, os.path.getsize(os.path.join(OUT, "{}.pkl".format(key))))
    if failures:
        print("not built:", json.dumps(failures, indent=1))


if __name__ == "__main__":
    main()
