"""Supervised models of the forward-return class: data windows, CNN+LSTM, baselines."""
