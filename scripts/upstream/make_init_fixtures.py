"""Record initial parameters and forward outputs of upstream theanets 0.7.3.

Run with the throw-away reference interpreter (see README.md in this folder):

    THEANO_FLAGS=blas.ldflags=,floatX=float32,cxx= \
        /tmp/upstream/bin/python scripts/upstream/make_init_fixtures.py

Writes tests/fixtures/upstream_init.npz and tests/fixtures/upstream_init.json.

npz keys:
    "<case>/<param name>"       initial value of each parameter (float32)
    "<case>/@x"                 fixed input used for the forward oracle
    "<case>/@ff/<output name>"  feed_forward(x) value for every graph output
    "<case>/@predict"           predict(x)
    "<case>/@predict_proba", "<case>/@predict_logit"  (classifiers)
    "<case>/@encode"            (autoencoders, default middle layer)
"""

import json
import os
import sys
import traceback

import numpy as np
import theanets
import theanets.recurrent


def _enable_python_conv():
    # Theano 1.0.5 looks for private scipy.signal helpers at old locations; with
    # cxx= (no C compiler) ConvOp needs them, so point Theano at their new home.
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
OUT_DIR = os.path.join(ROOT, 'tests', 'fixtures')

FF = 'theanets.Regressor'
RR = 'theanets.recurrent.Regressor'


def case_list():
    """(case name, model class path, spec text, extra ctor kwargs text, forward?)"""
    c = []
    add = c.append
    # --- feed-forward -------------------------------------------------------
    add(('regressor', FF, "[4, (5, 'relu'), (3, 'tanh'), 2]", '', True))
    add(('regressor_rng7', FF, "[4, (5, 'relu'), (3, 'tanh'), 2]", 'rng=7', True))
    add(('regressor_rngstate7', FF, "[4, (5, 'relu'), (3, 'tanh'), 2]",
         'rng=np.random.RandomState(7)', False))
    add(('classifier', 'theanets.Classifier', '[4, 6, 3]', '', True))
    add(('autoencoder_tied', 'theanets.Autoencoder',
         "[6, (4, 'sigmoid'), ('tied', 6)]", '', True))
    add(('autoencoder_deep_tied', 'theanets.Autoencoder',
         "[6, 4, (3, 'tanh'), ('tied', 4), ('tied', 6, 'linear')]", '', True))
    add(('autoencoder_untied', 'theanets.Autoencoder', "[6, 4, 6]", '', True))
    add(('ff_std_mean', FF, "[4, dict(size=5, std=0.5, mean=0.1), 2]", '', False))
    add(('ff_sparsity', FF, "[4, dict(size=5, sparsity=0.5), 2]", '', False))
    add(('ff_sparsity_tall', FF, "[7, dict(size=3, sparsity=0.5), 2]", '', False))
    add(('ff_diagonal', FF, "[4, dict(size=5, diagonal=1), 2]", '', False))
    add(('ff_diagonal_2', FF, "[6, dict(size=3, diagonal=2.5), 2]", '', False))
    add(('ff_per_param', FF,
         "[4, dict(size=5, std_w=0.3, mean_w=-0.1, std_b=0.2, mean_b=0.5), 2]",
         '', False))
    add(('ff_std_mean_bias_unaffected', FF,
         "[4, dict(size=5, std=2.0, mean=3.0, sparsity_w=0.4), 2]", '', False))
    add(('ff_multi_input', FF,
         "[4, 5, dict(size=3, inputs=('in', 'hid1')), 2]", '', True))
    add(('ff_prelu', FF, "[4, (5, 'prelu'), 2]", '', True))
    add(('ff_lgrelu', FF, "[4, (5, 'lgrelu'), 2]", '', True))
    add(('ff_maxout', FF, "[4, (5, 'maxout:3'), 2]", '', True))
    add(('ff_activations', FF,
         "[4, (5, 'rect:min'), (5, 'rect:minmax'), (5, 'norm:z'), "
         "(5, 'norm:mean'), (5, 'norm:max'), (5, 'norm:std'), (5, 'softplus'), "
         "(5, 'logistic'), (5, 'tanh+norm:z'), (3, 'softmax')]", '', True))
    add(('ff_classifier_layer', FF, "[4, (5, 'classifier')]", '', True))
    add(('ff_output_tanh', FF, "[4, (2, 'tanh')]", '', True))
    # --- recurrent ----------------------------------------------------------
    add(('rnn', RR, "[3, (5, 'rnn'), 2]", '', True))
    add(('rnn_square_input', RR, "[5, (5, 'rnn'), 2]", '', True))
    add(('rnn_radius', RR, "[5, dict(size=5, form='rnn', radius=1.1), 2]", '', False))
    add(('rnn_radius_nonsquare_input', RR,
         "[3, dict(size=5, form='rnn', radius=1.1), 2]", '', False))
    add(('rnn_diagonal', RR, "[3, dict(size=5, form='rnn', diagonal=1), 2]", '', False))
    add(('rnn_sparsity', RR, "[3, dict(size=5, form='rnn', sparsity=0.5), 2]", '', False))
    add(('rnn_tanh', RR, "[3, (5, 'rnn', 'tanh'), 2]", '', True))
    add(('rrnn', RR, "[3, (5, 'rrnn'), 2]", '', True))
    add(('rrnn_vector', RR, "[3, dict(size=5, form='rrnn', rate='vector'), 2]", '', True))
    add(('mrnn', RR, "[3, dict(size=4, form='mrnn', factors=3), 2]", '', True))
    add(('mrnn_default_factors', RR, "[3, dict(size=5, form='mrnn'), 2]", '', False))
    add(('lstm', RR, "[3, (4, 'lstm'), 2]", '', True))
    add(('lstm_radius', RR, "[3, dict(size=4, form='lstm', radius=0.9), 2]", '', False))
    add(('gru', RR, "[3, (4, 'gru'), 2]", '', True))
    add(('clockwork', RR, "[3, dict(form='clockwork', periods=(1, 2), size=4), 2]", '', True))
    add(('clockwork_3', RR,
         "[3, dict(form='clockwork', periods=(4, 1, 2), size=6, activation='tanh'), 2]",
         '', True))
    add(('mut1', RR, "[3, (4, 'mut1'), 2]", '', True))
    add(('scrn', RR, "[3, (4, 'scrn'), 2]", '', True))
    add(('bidirectional', RR, "[3, dict(size=4, form='bidirectional'), 2]", '', True))
    add(('bidirectional_tanh', RR,
         "[3, dict(size=4, form='bidirectional', activation='tanh'), 2]", '', True))
    add(('bidirectional_lstm', RR,
         "[3, dict(size=4, form='bidirectional', worker='lstm'), 2]", '', True))
    add(('conv1', RR, "[3, dict(size=4, form='conv1', filter_size=2), 2]", '', True))
    add(('recurrent_classifier', 'theanets.recurrent.Classifier',
         "[3, (4, 'lstm'), 3]", '', True))
    add(('recurrent_autoencoder', 'theanets.recurrent.Autoencoder',
         "[3, (4, 'rnn'), 3]", '', True))
    # recurrent forms whose init uses the *global* numpy RNG (not reproducible)
    add(('rrnn_uniform', RR, "[3, dict(size=5, form='rrnn', rate='uniform'), 2]", '', False))
    add(('scrn_log', RR, "[3, dict(size=4, form='scrn', rate='log'), 2]", '', False))
    return c


NONDETERMINISTIC = {'rrnn_uniform', 'scrn_log'}


def jsonable(v):
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    if isinstance(v, np.random.RandomState):
        return '<RandomState>'  # repr() would embed a memory address
    return repr(v)


def input_for(cls_path, nin, seed):
    rs = np.random.RandomState(seed)
    if '.recurrent.' in cls_path:
        return rs.randn(2, 5, nin).astype('f')
    return rs.randn(3, nin).astype('f')


def main():
    arrays = {}
    meta = {'theanets_version': theanets.__version__,
            'numpy_version': np.__version__,
            'floatX': theanets.util.FLOAT,
            'note': 'Each case is built in the same process, in order.',
            'cases': {}, 'skipped': {}}
    for i, (name, cls_path, spec, extra, forward) in enumerate(case_list()):
        ctor = '{}({}{})'.format(cls_path, spec, ', ' + extra if extra else '')
        try:
            net = eval(ctor)
        except Exception as e:  # record what upstream cannot build
            meta['skipped'][name] = {'ctor': ctor, 'error': repr(e)}
            print('SKIP', name, repr(e), file=sys.stderr)
            continue
        info = {
            'ctor': ctor,
            'model': cls_path,
            'deterministic': name not in NONDETERMINISTIC,
            'params': [p.name for p in net.params],
            'shapes': [list(p.get_value().shape) for p in net.params],
            'layers': [{'name': l.name, 'class': type(l).__name__,
                        'size': l.size, 'inputs': jsonable(getattr(l, 'inputs', {})),
                        'activation': l.activation,
                        'params': [p.name for p in l.params],
                        'spec': jsonable(l.to_spec())} for l in net.layers],
            'losses': [{'class': type(l).__name__, 'output_name': l.output_name,
                        'target': str(l._target.type), 'weight': l.weight}
                       for l in net.losses],
        }
        for p in net.params:
            arrays['{}/{}'.format(name, p.name)] = p.get_value()
        if forward:
            try:
                x = input_for(cls_path, net.layers[0].size, 100 + i)
                ff = net.feed_forward(x)
                arrays['{}/@x'.format(name)] = x
                for k, v in ff.items():
                    arrays['{}/@ff/{}'.format(name, k)] = np.asarray(v)
                info['x_shape'] = list(x.shape)
                info['feed_forward_keys'] = sorted(ff.keys())
                arrays['{}/@predict'.format(name)] = np.asarray(net.predict(x))
                if hasattr(net, 'predict_proba'):
                    arrays['{}/@predict_proba'.format(name)] = net.predict_proba(x)
                    arrays['{}/@predict_logit'.format(name)] = net.predict_logit(x)
                if hasattr(net, 'encode'):
                    arrays['{}/@encode'.format(name)] = net.encode(x)
                    info['encode_output'] = net._find_output(None)
            except Exception as e:
                traceback.print_exc()
                info['forward_error'] = repr(e)
        meta['cases'][name] = info
        print('ok', name, file=sys.stderr)

    os.makedirs(OUT_DIR, exist_ok=True)
    np.savez_compressed(os.path.join(OUT_DIR, 'upstream_init.npz'), **arrays)
    with open(os.path.join(OUT_DIR, 'upstream_init.json'), 'w') as f:
        json.dump(meta, f, indent=1, sort_keys=True)


if __name__ == '__main__':
    main()
