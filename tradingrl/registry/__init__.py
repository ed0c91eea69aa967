"""The ``trading-policy`` model and the registry's life cycle.

- :mod:`~tradingrl.registry.bundle`: :func:`build_policy_bundle` copies the
  trend model, the agent, their scalers and the feature settings into one
  folder with a manifest (and checks the decision code it was built with);
- :mod:`~tradingrl.registry.inputs`: the OHLCV window and account a decision takes;
- :mod:`~tradingrl.registry.policy`: :class:`TradingPolicy` loads a bundle
  and decides (plain Python, no MLflow);
- :mod:`~tradingrl.registry.pyfunc`: the MLflow pyfunc (imports mlflow);
- :mod:`~tradingrl.registry.champion`: the registered models' and aliases'
  names, and the champion;
- :mod:`~tradingrl.registry.gate` and :mod:`~tradingrl.registry.promotion`:
  the promotion gate and the registration that applies it;
- :mod:`~tradingrl.registry.comparison`: the champion compared like for like
  (the replay itself is :func:`tradingrl.monitoring.reference.champion_comparison`);
- :mod:`~tradingrl.registry.provenance`: the bundle's pieces were trained
  from the inputs the evaluation judged;
- :mod:`~tradingrl.registry.consistency`: the served trend model predicts
  like the walk-forward's fold models on the same bars.

Import from the modules; this package imports nothing, so that reading a
name (the champion's alias, say) does not load the decision code.
"""
