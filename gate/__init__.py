"""gate: hold CSP purchases until the customer's MCA acceptance is confirmed."""

__version__ = "0.1.0"
__all__ = ["__version__"]
