"""rtfd: a real-time fraud-detection appliance."""

__version__ = "0.1.0"
