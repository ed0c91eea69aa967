"""tradingrl: reproducible MLOps pipeline for hybrid trading research."""
__version__ = "0.1.0"
