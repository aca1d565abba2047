r"""Gradient methods with per-parameter adaptive step sizes.

:class:`RProp`, :class:`RMSProp`, :class:`ADAGRAD`, :class:`ADADELTA`,
:class:`ESGD` and :class:`Adam`, with the formulas, keyword names and
defaults of the ``downhill`` package (Adam follows the paper, where
``downhill`` 0.4 did not). Several of them turn a half-life :math:`h` (in
updates) into the weight of an exponentially weighted moving average,
:math:`\gamma = e^{-\ln 2 / h}`; that is the ``alpha`` or ``rho`` of
``torch.optim``.
"""

import numpy as np
import pytensor
import pytensor.gradient
import pytensor.tensor as pt

from .. import util
from .base import Optimizer

__all__ = ["RProp", "RMSProp", "ADAGRAD", "ADADELTA", "ESGD", "Adam"]


class RProp(Optimizer):
    r"""Resilient backpropagation (the iRprop⁻ variant).

    Keyword arguments of :meth:`iterate <theanets.optimizers.Optimizer.iterate>`
    (besides the shared options):

    - ``rprop_increase`` (default 1.01): factor :math:`\eta_+ > 0` applied to a
      step size when the gradient keeps its sign;
    - ``rprop_decrease`` (default 0.99): factor :math:`\eta_- > 0` applied when
      the sign flips;
    - ``rprop_min_step`` (default 0) and ``rprop_max_step`` (default 100):
      bounds :math:`\Delta_-, \Delta_+` on every step size;
    - ``learning_rate`` (default 1e-4): the initial step size.

    Parameters
    ----------
    loss, params, inputs, updates, monitors, monitor_gradients, mode
        As for :class:`~theanets.optimizers.Optimizer`; each parameter element gets a step
        size and a copy of its last gradient.

    Notes
    -----
    Only the sign of the gradient is used. Each parameter element keeps its own
    step size :math:`\Delta` (starting at the learning rate) and the previous
    gradient :math:`g_{t-1}` (starting at 0):

    .. math::
        \Delta_t = \operatorname{clip}\left(\Delta_{t-1} \cdot
        \begin{cases}
            \eta_+ & g_{t-1} g_t > 0 \\
            \eta_- & g_{t-1} g_t < 0 \\
            1 & g_{t-1} g_t = 0
        \end{cases},\ \Delta_-, \Delta_+\right)

    When the sign flips the current gradient is forgotten (:math:`g_t \leftarrow 0`,
    so that no step is taken and the next comparison is neutral); then

    .. math::
        \theta_{t+1} = \theta_t - \operatorname{sgn}(g_t)\,\Delta_t .

    This is the rule of ``torch.optim.Rprop(lr, etas=(rprop_decrease,
    rprop_increase), step_sizes=(rprop_min_step, rprop_max_step))``.

    References
    ----------
    .. [Ried92] M. Riedmiller & H. Braun (1992). "Rprop - a fast adaptive
       learning algorithm." Proc. International Symposium on Computer and
       Information Science VII.
    .. [Igel00] C. Igel & M. Hüsken (2000). "Improving the Rprop learning
       algorithm." Proc. Second International Symposium on Neural Computation.
    """

    hyperparameters = {
        "rprop_increase": 1.01,
        "rprop_decrease": 0.99,
        "rprop_min_step": 0,
        "rprop_max_step": 100,
    }

    def _check_hyperparameters(self, config):
        for name in ("rprop_increase", "rprop_decrease"):
            config[name] = util.check_number(name, config[name], low=0, low_open=True)
        config["rprop_min_step"] = util.check_number(
            "rprop_min_step", config["rprop_min_step"], low=0
        )
        config["rprop_max_step"] = util.check_number(
            "rprop_max_step", config["rprop_max_step"], low=0
        )
        if config["rprop_max_step"] < config["rprop_min_step"]:
            raise util.ConfigurationError(
                f"rprop_max_step ({config['rprop_max_step']}) must be at least "
                f"rprop_min_step ({config['rprop_min_step']})"
            )

    def _set_scalars(self, config):
        super()._set_scalars(config)
        for name in self.hyperparameters:
            self._set_scalar(name, config[name])

    def _get_updates_for(self, param, grad):
        dtype = param.dtype
        grad_tm1 = self._state(param, "rprop_grad")
        step_tm1 = self._state(param, "rprop_step", init=lambda c: c["learning_rate"])
        test = grad * grad_tm1
        same = pt.cast(pt.gt(test, 0), dtype)
        flip = pt.cast(pt.lt(test, 0), dtype)
        zero = pt.cast(pt.eq(test, 0), dtype)
        scale = (
            zero
            + same * self._hyper("rprop_increase", dtype)
            + flip * self._hyper("rprop_decrease", dtype)
        )
        step = pt.clip(
            step_tm1 * scale,
            self._hyper("rprop_min_step", dtype),
            self._hyper("rprop_max_step", dtype),
        )
        grad = grad * (1 - flip)
        yield grad_tm1, grad
        yield step_tm1, step
        yield param, pt.sign(grad) * step


class ADAGRAD(Optimizer):
    r"""ADAGRAD: steps scaled by the accumulated squared gradients.

    Keyword arguments of :meth:`iterate <theanets.optimizers.Optimizer.iterate>`
    (besides the shared options): ``learning_rate`` (default 1e-4) and
    ``rms_regularizer`` (default 1e-8), the :math:`\epsilon` below.

    Parameters
    ----------
    loss, params, inputs, updates, monitors, monitor_gradients, mode
        As for :class:`~theanets.optimizers.Optimizer`; each parameter gets a running sum of
        its squared gradients.

    Notes
    -----
    With :math:`G` the running sum of squared gradients (starting at 0),

    .. math::
        G_t = G_{t-1} + g_t^2, \qquad
        \theta_{t+1} = \theta_t - \frac{\alpha\, g_t}{\sqrt{G_t + \epsilon}} .

    Since :math:`G` only grows, the effective learning rate of every element
    decays over training. As in ``downhill``, :math:`\epsilon` is added
    inside the square root; the paper and ``torch.optim.Adagrad`` add it to
    :math:`\sqrt{G_t}` instead, so the two agree only for :math:`\epsilon = 0`.

    References
    ----------
    .. [Duch11] J. Duchi, E. Hazan & Y. Singer (2011). "Adaptive subgradient
       methods for online learning and stochastic optimization." JMLR 12,
       2121-2159.
    """

    hyperparameters = {"rms_regularizer": 1e-8}

    def _check_hyperparameters(self, config):
        config["rms_regularizer"] = util.check_number(
            "rms_regularizer", config["rms_regularizer"], low=0
        )

    def _set_scalars(self, config):
        super()._set_scalars(config)
        self._set_scalar("epsilon", config["rms_regularizer"])

    def _get_updates_for(self, param, grad):
        dtype = param.dtype
        g2_tm1 = self._state(param, "adagrad_g2")
        g2_t = g2_tm1 + pt.sqr(grad)
        yield g2_tm1, g2_t
        lr = self._hyper("learning_rate", dtype)
        yield param, lr * grad / pt.sqrt(g2_t + self._hyper("epsilon", dtype))


class RMSProp(Optimizer):
    r"""RMSProp in the form of Graves (2013), centred by the mean gradient.

    Keyword arguments of :meth:`iterate <theanets.optimizers.Optimizer.iterate>`
    (besides the shared options): ``learning_rate`` (default 1e-4),
    ``rms_halflife`` (default 14) giving :math:`\gamma = e^{-\ln 2/h}`, and
    ``rms_regularizer`` (default 1e-8), the :math:`\epsilon` below.

    Parameters
    ----------
    loss, params, inputs, updates, monitors, monitor_gradients, mode
        As for :class:`~theanets.optimizers.Optimizer`; each parameter gets moving averages
        of its gradient and of its square.

    Notes
    -----
    Moving averages of the gradient and of its square (both starting at 0)
    give a running variance that normalises the step:

    .. math::
        f_t = \gamma f_{t-1} + (1 - \gamma) g_t, \qquad
        s_t = \gamma s_{t-1} + (1 - \gamma) g_t^2,

    .. math::
        \theta_{t+1} = \theta_t - \frac{\alpha\, g_t}{\sqrt{s_t - f_t^2 + \epsilon}} .

    :math:`\epsilon` sits inside the square root, as in Graves' paper and
    ``downhill``. ``torch.optim.RMSprop(alpha=gamma, centered=True)`` adds it
    to the root instead; otherwise (momentum included) the rules are the same.

    References
    ----------
    .. [Grav13] A. Graves (2013). "Generating sequences with recurrent neural
       networks." arXiv:1308.0850, equations 38-45.
    """

    hyperparameters = {"rms_halflife": 14, "rms_regularizer": 1e-8}

    def _check_hyperparameters(self, config):
        config["rms_regularizer"] = util.check_number(
            "rms_regularizer", config["rms_regularizer"], low=0
        )
        _halflife_to_decay("rms_halflife", config["rms_halflife"])

    def _set_scalars(self, config):
        super()._set_scalars(config)
        self._set_scalar("ewma", _halflife_to_decay("rms_halflife", config["rms_halflife"]))
        self._set_scalar("epsilon", config["rms_regularizer"])

    def _get_updates_for(self, param, grad):
        dtype = param.dtype
        ewma = self._hyper("ewma", dtype)
        g1_tm1 = self._state(param, "rms_g1")
        g2_tm1 = self._state(param, "rms_g2")
        g1_t = ewma * g1_tm1 + (1 - ewma) * grad
        g2_t = ewma * g2_tm1 + (1 - ewma) * pt.sqr(grad)
        rms = pt.sqrt(g2_t - pt.sqr(g1_t) + self._hyper("epsilon", dtype))
        yield g1_tm1, g1_t
        yield g2_tm1, g2_t
        yield param, self._hyper("learning_rate", dtype) * grad / rms


class ADADELTA(RMSProp):
    r"""ADADELTA: steps scaled by the ratio of recent step and gradient sizes.

    Keyword arguments of :meth:`iterate <theanets.optimizers.Optimizer.iterate>`
    (besides the shared options): ``rms_halflife`` (default 14) giving
    :math:`\gamma = e^{-\ln 2/h}`, and ``rms_regularizer`` (default 1e-8), the
    :math:`\epsilon` below. ``learning_rate`` is accepted but not used.

    Parameters
    ----------
    loss, params, inputs, updates, monitors, monitor_gradients, mode
        As for :class:`~theanets.optimizers.Optimizer`; each parameter gets moving averages
        of its squared gradients and of its squared steps.

    Notes
    -----
    With moving averages of squared gradients :math:`s` and of squared steps
    :math:`x` (both starting at 0):

    .. math::
        s_t = \gamma s_{t-1} + (1 - \gamma) g_t^2, \qquad
        \Delta_t = g_t \frac{\sqrt{x_{t-1} + \epsilon}}{\sqrt{s_t + \epsilon}},

    .. math::
        x_t = \gamma x_{t-1} + (1 - \gamma) \Delta_t^2, \qquad
        \theta_{t+1} = \theta_t - \Delta_t .

    This is ``torch.optim.Adadelta(lr=1, rho=gamma, eps=epsilon)``.

    References
    ----------
    .. [Zeil12] M. Zeiler (2012). "ADADELTA: an adaptive learning rate method."
       arXiv:1212.5701.
    """

    def _get_updates_for(self, param, grad):
        dtype = param.dtype
        ewma = self._hyper("ewma", dtype)
        eps = self._hyper("epsilon", dtype)
        x2_tm1 = self._state(param, "adadelta_x2")
        g2_tm1 = self._state(param, "adadelta_g2")
        g2_t = ewma * g2_tm1 + (1 - ewma) * pt.sqr(grad)
        delta = grad * pt.sqrt(x2_tm1 + eps) / pt.sqrt(g2_t + eps)
        x2_t = ewma * x2_tm1 + (1 - ewma) * pt.sqr(delta)
        yield g2_tm1, g2_t
        yield x2_tm1, x2_t
        yield param, delta


class ESGD(RMSProp):
    r"""Equilibrated SGD: steps preconditioned by a Hessian-diagonal estimate.

    Keyword arguments of :meth:`iterate <theanets.optimizers.Optimizer.iterate>`
    (besides the shared options): ``learning_rate`` (default 1e-4),
    ``rms_halflife`` (default 14) giving :math:`\gamma = e^{-\ln 2/h}`,
    ``rms_regularizer`` (default 1e-8), the :math:`\epsilon` below, and
    ``hv_method`` (default ``'rop'``), how the Hessian-vector product is formed:
    ``'rop'`` (forward-mode product of the gradient, via
    :func:`pytensor.gradient.pushforward`), ``'lop'`` (reverse-mode,
    :func:`pytensor.gradient.pullback`) or ``'grad'`` (the gradient of
    :math:`g \cdot r`). All three compute the same product. ``rng`` reseeds the
    random probe vectors.

    Parameters
    ----------
    *args, **kwargs
        The loss, parameters, inputs and options, as for
        :class:`~theanets.optimizers.Optimizer`.

    Notes
    -----
    At each update a probe :math:`r \sim \mathcal{N}(0, I)` with the parameter's
    shape is drawn and the product of the parameter's Hessian block with it is
    computed without forming the Hessian. Because
    :math:`\mathbb{E}[(Hr)^2] = \operatorname{diag}(H^2)`, a moving average of
    its square (starting at 0) estimates the equilibration preconditioner:

    .. math::
        D_t = \gamma D_{t-1} + (1 - \gamma) (H r_t)^2, \qquad
        \theta_{t+1} = \theta_t - \frac{\alpha\, g_t}{\sqrt{D_t} + \epsilon} .

    Unlike the paper, which divides a running sum by the number of updates,
    the average here is exponentially weighted. When gradient clipping is on,
    the product is taken of the clipped gradient (as in ``downhill``).

    The probes come from a NumPy ``Generator`` held in a PyTensor shared
    variable that the training function advances, so successive updates draw
    fresh vectors. It is seeded with 0 when the optimizer is built, and
    reseeded from ``rng`` when :meth:`iterate` is given one.

    References
    ----------
    .. [Daup15] Y. Dauphin, H. de Vries & Y. Bengio (2015). "Equilibrated
       adaptive learning rates for non-convex optimization." NIPS;
       arXiv:1502.04390.
    """

    hyperparameters = {"hv_method": "rop"}
    structural = ("hv_method",)
    _hv_methods = ("rop", "lop", "grad")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rng = pytensor.shared(np.random.default_rng(0), name="ESGD.rng")

    def _check_hyperparameters(self, config):
        super()._check_hyperparameters(config)
        method = config["hv_method"]
        if not isinstance(method, str) or method.lower() not in self._hv_methods:
            raise util.ConfigurationError(
                f"hv_method must be one of {', '.join(map(repr, self._hv_methods))}, "
                f"got {method!r}.{util.closest_match(str(method).lower(), self._hv_methods)}"
            )
        config["hv_method"] = method.lower()

    def _prepare_run(self, config):
        if config["rng"] is not None:
            seed = util.seed_from(util.resolve_rng(config["rng"], kind="any"), high=2**31)
            self._rng.set_value(np.random.default_rng(seed), borrow=True)

    def _begin_updates(self, key):
        self._rng_current = self._rng

    def _end_updates(self):
        current, self._rng_current = self._rng_current, None
        return [(self._rng, current)] if current is not self._rng else []

    def _hessian_probe(self, param):
        """Return a symbolic standard normal vector shaped like ``param``.

        Each call chains the random generator state, so that all draws of one
        update are independent and the final state is written back.
        """
        next_rng, probe = pt.random.normal(
            0,
            1,
            size=param.shape,
            rng=self._rng_current,
            dtype=param.dtype,
            return_next_rng=True,
        )
        self._rng_current = next_rng
        return probe

    def _get_updates_for(self, param, grad):
        dtype = param.dtype
        method = self._key[-1]
        probe = self._hessian_probe(param)
        if method == "rop":
            hv = pytensor.gradient.pushforward(
                grad, param, probe, disconnected_outputs="ignore", return_disconnected="zero"
            )
        elif method == "lop":
            hv = pytensor.gradient.pullback(
                grad, param, probe, disconnected_inputs="ignore", return_disconnected="zero"
            )
        else:
            hv = pytensor.grad(
                pt.sum(grad * probe),
                param,
                disconnected_inputs="ignore",
                return_disconnected="zero",
            )
        ewma = self._hyper("ewma", dtype)
        d_tm1 = self._state(param, "esgd_d")
        d_t = ewma * d_tm1 + (1 - ewma) * pt.sqr(hv)
        yield d_tm1, d_t
        denom = pt.sqrt(d_t) + self._hyper("epsilon", dtype)
        yield param, self._hyper("learning_rate", dtype) * grad / denom


def _halflife_to_decay(name, halflife):
    r"""Return the moving-average weight :math:`\gamma = e^{-\ln 2 / h}` of a half-life.

    ``halflife`` is checked to be a finite number :math:`h > 0` (in updates);
    the result lies in :math:`(0, 1)`.
    """
    h = util.check_number(name, halflife, low=0, low_open=True)
    return float(np.exp(-np.log(2) / h))


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015), with bias-corrected moment estimates.

    Keyword arguments of :meth:`iterate <theanets.optimizers.Optimizer.iterate>`
    (besides the shared options):

    - ``learning_rate`` (default 1e-4): :math:`\alpha`;
    - ``beta1_halflife`` (default 7) or ``beta1``: the decay :math:`\beta_1`
      of the first-moment average, given as a half-life
      (:math:`\beta_1 = e^{-\ln 2/7} \approx 0.906`) or directly, in
      :math:`[0, 1)`;
    - ``beta2_halflife`` (default 69) or ``beta2``: the decay :math:`\beta_2`
      of the second-moment average (:math:`e^{-\ln 2/69} \approx 0.990`), or
      directly, in :math:`[0, 1)`;
    - ``rms_regularizer`` (default 1e-8) or ``epsilon``: :math:`\epsilon \ge 0`;
    - ``beta1_decay`` (default 1): :math:`\lambda \in (0, 1]`, which shrinks
      :math:`\beta_1` a little every update (1 leaves it constant).

    Parameters
    ----------
    loss, params, inputs, updates, monitors, monitor_gradients, mode
        As for :class:`~theanets.optimizers.Optimizer`; each parameter gets its two moment
        estimates and a count of its updates.

    Raises
    ------
    ConfigurationError
        From :meth:`iterate`, if both spellings of one quantity are given
        (``beta1`` and ``beta1_halflife``, ``beta2`` and ``beta2_halflife``,
        ``epsilon`` and ``rms_regularizer``), or a value is out of range.

    Notes
    -----
    This is Algorithm 1 of the paper. With moment estimates :math:`m, v`
    starting at 0 and updates counted from :math:`t = 1`:

    .. math::
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2,

    .. math::
        \hat m_t = \frac{m_t}{1 - \beta_1^t}, \qquad
        \hat v_t = \frac{v_t}{1 - \beta_2^t}, \qquad
        \theta_{t+1} = \theta_t - \alpha\,\frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon} .

    It is the rule of ``torch.optim.Adam(lr=alpha, betas=(beta1, beta2),
    eps=epsilon)``.

    With ``beta1_decay`` :math:`\lambda < 1` the first-moment decay of update
    :math:`t` is :math:`\beta_{1,t} = \beta_1 \lambda^{t-1}` (the schedule of
    the paper's convergence analysis) and :math:`m_t` is divided by
    :math:`1 - \prod_{i \le t} \beta_{1,i} = 1 - \beta_1^t \lambda^{t(t-1)/2}`,
    which again makes :math:`\hat m_t` unbiased.

    ``downhill`` 0.4, whose keywords are kept here, divided by
    :math:`1 - \beta_{1,t}` and :math:`1 - \beta_2` instead of
    :math:`1 - \beta_1^t` and :math:`1 - \beta_2^t`, and used
    :math:`\lambda = 1 - 10^{-6}` by default.

    References
    ----------
    .. [King15] D. Kingma & J. Ba (2015). "Adam: a method for stochastic
       optimization." ICLR; arXiv:1412.6980.
    """

    hyperparameters = {
        "beta1_decay": 1.0,
        "beta1_halflife": 7,
        "beta2_halflife": 69,
        "beta1": None,
        "beta2": None,
        "epsilon": None,
        "rms_regularizer": 1e-8,
    }

    exclusive = (
        ("beta1", "beta1_halflife"),
        ("beta2", "beta2_halflife"),
        ("epsilon", "rms_regularizer"),
    )

    def _check_hyperparameters(self, config):
        config["beta1_decay"] = util.check_number(
            "beta1_decay", config["beta1_decay"], low=0, low_open=True, high=1
        )
        for which in ("beta1", "beta2"):
            halflife = f"{which}_halflife"
            decay = _halflife_to_decay(halflife, config[halflife])
            if config[which] is None:
                config[which] = decay
            else:
                config[which] = util.check_number(
                    which, config[which], low=0, high=1, high_open=True
                )
        config["rms_regularizer"] = util.check_number(
            "rms_regularizer", config["rms_regularizer"], low=0
        )
        if config["epsilon"] is None:
            config["epsilon"] = config["rms_regularizer"]
        else:
            config["epsilon"] = util.check_number("epsilon", config["epsilon"], low=0)

    def _set_scalars(self, config):
        super()._set_scalars(config)
        for name in ("beta1", "beta2", "beta1_decay", "epsilon"):
            self._set_scalar(name, config[name])

    def _get_updates_for(self, param, grad):
        dtype = param.dtype
        t_tm1 = self._scalar_state(param, "adam_t")
        m_tm1 = self._state(param, "adam_m")
        v_tm1 = self._state(param, "adam_v")
        t = t_tm1 + 1
        beta1 = self._hyper("beta1", dtype)
        beta2 = self._hyper("beta2", dtype)
        decay = self._hyper("beta1_decay", dtype)
        beta1_t = beta1 * decay**t_tm1
        m_t = beta1_t * m_tm1 + (1 - beta1_t) * grad
        v_t = beta2 * v_tm1 + (1 - beta2) * pt.sqr(grad)
        # the product of the first-moment decays of updates 1..t
        beta1_prod = beta1**t * decay ** (t * t_tm1 / 2)
        m_hat = m_t / (1 - beta1_prod)
        v_hat = v_t / (1 - beta2**t)
        yield t_tm1, t
        yield m_tm1, m_t
        yield v_tm1, v_t
        yield (
            param,
            self._hyper("learning_rate", dtype)
            * m_hat
            / (pt.sqrt(v_hat) + self._hyper("epsilon", dtype)),
        )
