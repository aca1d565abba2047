"""Fused recurrent loops (placeholder)."""


def supports(layer):
    """Tell whether the fused implementation can run ``layer``."""
    return False
