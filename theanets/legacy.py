"""Reading model files saved by Theano-era theanets (0.7 / 0.8)."""

__all__ = ["network_from_legacy"]


def network_from_legacy(obj):
    """Rebuild a network from an object unpickled from a Theano-era file.

    Parameters
    ----------
    obj : object
        What the restricted unpickler produced.

    Returns
    -------
    :class:`theanets.graph.Network`

    Raises
    ------
    ValueError
        If ``obj`` is not a recognisable theanets model.
    """
    raise ValueError(f"not a theanets model file (found {type(obj).__name__})")
