"""Save small upstream theanets 0.7.3 models for load-compatibility tests.

Run with the throw-away reference interpreter (see README.md in this folder):

    THEANO_FLAGS=blas.ldflags=,floatX=float32,cxx= \
        /tmp/upstream/bin/python scripts/upstream/make_legacy_models.py

Writes into tests/fixtures/legacy/:
    regressor.pkl            feed-forward Regressor, saved with net.save()
    classifier.pkl.gz        Classifier, saved with net.save() (gzipped)
    autoencoder_tied.pkl     tied-weights Autoencoder, net.save()
    lstm_regressor.pkl       recurrent.Regressor with an LSTM layer, net.save()
    regressor_pickle_dump.pkl  the regressor again, via pickle.dump(net, f)
                               (default protocol instead of save()'s -1)
    expected.npz             "<model>/x", "<model>/predict" (plus
                             "<model>/predict_proba" for the classifier,
                             "<model>/encode" for the autoencoder, and
                             "<model>/<param name>" for every parameter)
    manifest.json            what each file is, how it was made
"""

import collections
import collections.abc
import json
import os
import pickle

import numpy as np
import theanets
import theanets.recurrent

# downhill 0.4.0 still uses collections.Callable (removed in Python 3.10).
if not hasattr(collections, 'Callable'):
    collections.Callable = collections.abc.Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, 'tests', 'fixtures', 'legacy')


def nudge(net, seed):
    """Train a few SGD steps, then add a small deterministic perturbation."""
    rs = np.random.RandomState(seed)
    for p in net.params:
        v = p.get_value()
        p.set_value((v + 0.05 * rs.randn(*v.shape)).astype(v.dtype))


def train_a_little(net, data):
    net.train(data, algo='sgd', learning_rate=0.05, max_updates=3,
              validate_every=1, patience=100, batch_size=8)


def main():
    os.makedirs(OUT, exist_ok=True)
    rs = np.random.RandomState(2015)
    expected = {}
    manifest = {'theanets_version': theanets.__version__,
                'numpy_version': np.__version__,
                'floatX': theanets.util.FLOAT,
                'models': {}}

    def record(key, net, filename, ctor, how, x, extra=()):
        expected['{}/x'.format(key)] = x
        expected['{}/predict'.format(key)] = np.asarray(net.predict(x))
        for name, value in extra:
            expected['{}/{}'.format(key, name)] = np.asarray(value)
        for p in net.params:
            expected['{}/{}'.format(key, p.name)] = p.get_value()
        manifest['models'][key] = {
            'file': filename, 'ctor': ctor, 'saved_with': how,
            'class': '{}.{}'.format(type(net).__module__, type(net).__name__),
            'layers': [l.name for l in net.layers],
            'params': [p.name for p in net.params],
            'losses': [type(l).__name__ for l in net.losses],
        }

    # feed-forward regressor ------------------------------------------------
    ctor = "theanets.Regressor([4, (5, 'relu'), (3, 'tanh'), 2])"
    net = eval(ctor)
    X = rs.randn(32, 4).astype('f')
    Y = rs.randn(32, 2).astype('f')
    train_a_little(net, [X, Y])
    nudge(net, 1)
    net.save(os.path.join(OUT, 'regressor.pkl'))
    x = rs.randn(5, 4).astype('f')
    record('regressor', net, 'regressor.pkl', ctor, 'net.save', x)
    with open(os.path.join(OUT, 'regressor_pickle_dump.pkl'), 'wb') as f:
        pickle.dump(net, f)
    manifest['models']['regressor_pickle_dump'] = dict(
        manifest['models']['regressor'], file='regressor_pickle_dump.pkl',
        saved_with='pickle.dump(net, f) default protocol {}'.format(
            pickle.DEFAULT_PROTOCOL),
        expected_key='regressor')

    # classifier (gzipped) ----------------------------------------------------
    ctor = "theanets.Classifier([4, (6, 'tanh'), 3])"
    net = eval(ctor)
    X = rs.randn(32, 4).astype('f')
    Y = rs.randint(3, size=32).astype('i')
    train_a_little(net, [X, Y])
    nudge(net, 2)
    net.save(os.path.join(OUT, 'classifier.pkl.gz'))
    x = rs.randn(6, 4).astype('f')
    record('classifier', net, 'classifier.pkl.gz', ctor, 'net.save', x,
           [('predict_proba', net.predict_proba(x)),
            ('predict_logit', net.predict_logit(x))])

    # tied autoencoder --------------------------------------------------------
    ctor = "theanets.Autoencoder([6, (4, 'sigmoid'), ('tied', 6)])"
    net = eval(ctor)
    X = rs.randn(32, 6).astype('f')
    train_a_little(net, [X])
    nudge(net, 3)
    net.save(os.path.join(OUT, 'autoencoder_tied.pkl'))
    x = rs.randn(4, 6).astype('f')
    record('autoencoder_tied', net, 'autoencoder_tied.pkl', ctor, 'net.save', x,
           [('encode', net.encode(x))])

    # recurrent LSTM regressor --------------------------------------------------
    ctor = "theanets.recurrent.Regressor([3, (4, 'lstm'), 2])"
    net = eval(ctor)
    X = rs.randn(8, 5, 3).astype('f')
    Y = rs.randn(8, 5, 2).astype('f')
    train_a_little(net, [X, Y])
    nudge(net, 4)
    net.save(os.path.join(OUT, 'lstm_regressor.pkl'))
    x = rs.randn(2, 5, 3).astype('f')
    record('lstm_regressor', net, 'lstm_regressor.pkl', ctor, 'net.save', x)

    np.savez_compressed(os.path.join(OUT, 'expected.npz'), **expected)
    with open(os.path.join(OUT, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=1, sort_keys=True)

    # sanity: upstream can load its own files and reproduce the predictions.
    for key, info in manifest['models'].items():
        loaded = theanets.Network.load(os.path.join(OUT, info['file']))
        ref = info.get('expected_key', key)
        got = loaded.predict(expected['{}/x'.format(ref)])
        assert np.allclose(got, expected['{}/predict'.format(ref)]), key
        print('ok', key, info['file'])


if __name__ == '__main__':
    main()
