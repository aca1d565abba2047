r"""First-order gradient descent: :class:`SGD` and :class:`NAG`."""

from .. import util
from .base import Optimizer

__all__ = ["SGD", "NAG"]


class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with (Nesterov) momentum.

    Keyword arguments of :meth:`iterate <theanets.optimizers.Optimizer.iterate>`:
    ``learning_rate`` (default 1e-4), ``momentum`` (0), ``nesterov`` (False)
    and the options shared by every optimizer.

    Parameters
    ----------
    loss, params, inputs, updates, monitors, monitor_gradients, mode
        As for :class:`~theanets.optimizers.Optimizer`; with momentum, each parameter also
        gets a velocity.

    Notes
    -----
    The step for a parameter :math:`\theta` with gradient
    :math:`g = \partial\mathcal{L}/\partial\theta` and learning rate
    :math:`\alpha` is :math:`\Delta = \alpha g`, so without momentum

    .. math::
        \theta_{t+1} = \theta_t - \alpha g_t ,

    and with momentum :math:`\mu`

    .. math::
        v_{t+1} = \mu v_t - \alpha g_t, \qquad \theta_{t+1} = \theta_t + v_{t+1},

    which is ``torch.optim.SGD(lr=alpha, momentum=mu)`` (``dampening=0``)
    with :math:`v = -\alpha\,b` for its momentum buffer :math:`b`. With
    ``nesterov=True`` the rule of :class:`NAG` is used.

    References
    ----------
    .. [Rume86] D. E. Rumelhart, G. E. Hinton & R. J. Williams (1986).
       "Learning representations by back-propagating errors." Nature 323,
       533-536.
    """

    def _get_updates_for(self, param, grad):
        yield param, self._hyper("learning_rate", param.dtype) * grad


class NAG(SGD):
    r"""Stochastic gradient descent with Nesterov's accelerated gradient.

    This is :class:`SGD` with ``nesterov=True`` always; ``momentum`` (default
    0, as in ``downhill``) should be set to a positive value, otherwise the
    updates are plain SGD.

    Parameters
    ----------
    loss, params, inputs, updates, monitors, monitor_gradients, mode
        As for :class:`SGD`.

    Raises
    ------
    ConfigurationError
        From :meth:`iterate` if ``nesterov=False`` is passed.

    Notes
    -----
    Nesterov momentum evaluates the gradient where the velocity is about to
    carry the parameter:

    .. math::
        v_{t+1} = \mu v_t - \alpha \left.\frac{\partial\mathcal{L}}{\partial\theta}
        \right|_{\theta_t + \mu v_t}, \qquad \theta_{t+1} = \theta_t + v_{t+1}.

    It is implemented in the equivalent form of Bengio et al. (2013), which
    stores the look-ahead point :math:`\theta_t + \mu v_t` as the parameters
    and so needs the gradient :math:`g_t` only there (see
    :class:`~theanets.optimizers.Optimizer`):

    .. math::
        v_{t+1} = \mu v_t - \alpha g_t, \qquad
        \theta_{t+1} = \theta_t + \mu v_{t+1} - \alpha g_t .

    With ``torch.optim.SGD(lr=alpha, momentum=mu, nesterov=True)`` the
    parameters follow the same trajectory.

    References
    ----------
    .. [Nest83] Y. Nesterov (1983). "A method of solving a convex programming
       problem with convergence rate O(1/k^2)." Soviet Mathematics Doklady 27,
       372-376.
    .. [Suts13] I. Sutskever, J. Martens, G. Dahl & G. Hinton (2013). "On the
       importance of initialization and momentum in deep learning." ICML.
    .. [Beng13] Y. Bengio, N. Boulanger-Lewandowski & R. Pascanu (2013).
       "Advances in optimizing recurrent networks." ICASSP; arXiv:1212.0901.
    """

    hyperparameters = {"nesterov": True}

    def _check_hyperparameters(self, config):
        if not config["nesterov"]:
            raise util.ConfigurationError(
                "NAG always uses Nesterov momentum; use algo='sgd' for classical momentum"
            )
