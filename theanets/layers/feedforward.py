"""Feed-forward layers: :class:`Feedforward`, :class:`Classifier` and :class:`Tied`."""

from .. import util
from .base import Layer, dot_last_axis

__all__ = ["Feedforward", "Classifier", "Tied"]


class Feedforward(Layer):
    """A fully connected layer.

    .. math::
        z = \\sum_i x_i W_i + b, \\qquad y = f(z)

    With one input the weight is called ``w``; with several inputs there is
    one weight per input, called ``w_<input>`` where ``<input>`` is the input's
    full output name (``w_in:out``). The bias ``b`` has one value per unit.

    Outputs: ``pre`` (:math:`z`) and ``out`` (:math:`y`).

    Parameters
    ----------
    size, inputs, name, activation, shape, rng
        As for :class:`~theanets.layers.base.Layer`.
    **kwargs
        Initial value settings, as for :class:`~theanets.layers.base.Layer`.

    Examples
    --------
    In a layer spec, ``(10, 'tanh')`` or ``dict(size=10, activation='tanh')``
    builds a Feedforward layer of 10 tanh units.
    """

    __extra_registration_keys__ = ["ff"]

    def _weight_name(self, input_name):
        return "w" if len(self._input_shapes) == 1 else f"w_{input_name}"

    def setup(self):
        """Create one weight matrix per input, then the bias."""
        for name, shape in self._input_shapes.items():
            self.add_weights(self._weight_name(name), shape[-1], self.size)
        self.add_bias("b", self.size)

    def transform(self, inputs):
        """Compute ``pre`` and ``out``.

        Parameters
        ----------
        inputs : dict
            Expressions by fully scoped output name; every one of the
            layer's inputs is read.

        Returns
        -------
        dict
            ``pre``, the sum of the weighted inputs and the bias, and
            ``out``, its activation.
        """
        terms = [
            dot_last_axis(inputs[name], self.find(self._weight_name(name)))
            for name in self._input_shapes
        ]
        pre = terms[0]
        for term in terms[1:]:
            pre = pre + term
        pre = pre + self.find("b")
        return dict(pre=pre, out=self.activate(pre))


class Classifier(Feedforward):
    """A fully connected layer with a softmax activation.

    .. math::
        y = \\mathrm{softmax}(x W + b)

    The activation is always the softmax, whatever ``activation`` says (a
    network fills in its output activation for every last layer), and
    :attr:`kwargs` records ``'softmax'``. Registered as ``'classifier'`` and
    ``'softmax'``.

    Parameters
    ----------
    size, inputs, name
        As for :class:`Feedforward`.
    activation : str, optional
        Ignored: the activation is ``'softmax'``.
    **kwargs
        As for :class:`Feedforward`.
    """

    __extra_registration_keys__ = ["softmax"]

    def __init__(self, size=None, inputs=None, name=None, activation=None, **kwargs):
        super().__init__(size=size, inputs=inputs, name=name, activation="softmax", **kwargs)


class Tied(Layer):
    """A layer that reuses the transposed weights of a partner layer.

    .. math::
        y = f(x W_p^\\top + b)

    where :math:`W_p` is the weight of the partner (a :class:`Feedforward`
    layer with one input). The tied layer owns only its bias ``b``; its size
    is the partner's input size. Tied layers mirror an encoder, so in a
    network spec such as ``[784, 256, 64, ('tied', 256), ('tied', 784)]`` the
    partner of each tied layer is found automatically.

    Parameters
    ----------
    partner : str or Layer
        The layer whose weights are shared: a :class:`Feedforward` layer with
        one input, or its name in the network.
    size : int, optional
        If given, it must be the partner's input size (the default).
    inputs, name, activation
        As for :class:`~theanets.layers.base.Layer`.
    **kwargs
        Passed on to :class:`~theanets.layers.base.Layer`: ``rng`` and the
        initial value settings of the bias, for instance.
    """

    def __init__(self, partner=None, size=None, inputs=None, name=None, activation=None, **kwargs):
        if partner is None:
            raise util.ConfigurationError(f"tied layer {name!r} needs a partner layer")
        self.partner = partner
        super().__init__(size=size, inputs=inputs, name=name, activation=activation, **kwargs)

    def bind(self, network, initialize=True):
        """Find the partner layer, then bind as usual.

        Parameters
        ----------
        network : :class:`theanets.graph.Network`
            The network, in which a partner given by name is looked up.
        initialize : bool, optional
            Whether to create the bias (default True).

        Raises
        ------
        ConfigurationError
            If the partner is missing or not a one-input feed-forward layer,
            or if the sizes do not match the partner's.
        """
        if isinstance(self.partner, str):
            try:
                self.partner = network.find_layer(self.partner)
            except KeyError as err:
                raise util.ConfigurationError(
                    f"tied layer {self.name!r}: partner {self.partner!r} is not in the network"
                ) from err
        if not isinstance(self.partner, Feedforward) or len(self.partner.inputs) != 1:
            raise util.ConfigurationError(
                f"tied layer {self.name!r}: partner {self.partner!r} must be a feed-forward "
                "layer with one input"
            )
        partner_in = self.partner.input_size
        if self.size is None:
            self.size = partner_in
        elif self.size != partner_in:
            raise util.ConfigurationError(
                f"tied layer {self.name!r}: size {self.size} must equal the input size "
                f"{partner_in} of its partner {self.partner.name!r}"
            )
        super().bind(network, initialize=initialize)
        if self.input_size != self.partner.size:
            raise util.ConfigurationError(
                f"tied layer {self.name!r}: its input has size {self.input_size} but partner "
                f"{self.partner.name!r} has {self.partner.size} units"
            )

    def setup(self):
        """Create the bias (the weights belong to the partner)."""
        self.add_bias("b", self.size)

    def transform(self, inputs):
        """Compute ``pre`` and ``out`` with the partner's transposed weights.

        Parameters
        ----------
        inputs : dict
            Graph outputs by full name; only the layer's single input is
            read, and the weights come from the partner.

        Returns
        -------
        dict
            ``pre``, the input times the partner's transposed weight plus
            the bias, and ``out``, its activation.
        """
        x = self._only_input(inputs)
        pre = dot_last_axis(x, self.partner.find("w").T) + self.find("b")
        return dict(pre=pre, out=self.activate(pre))

    def _spec_extra(self):
        partner = self.partner.name if isinstance(self.partner, Layer) else self.partner
        return dict(partner=partner)
