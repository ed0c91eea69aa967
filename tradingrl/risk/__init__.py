"""Risk layer: every proposed position passes through ``apply_risk``."""

from tradingrl.risk.layer import advance_breaker, apply_risk
from tradingrl.risk.limits import RULE_ORDER, VAR_LEVEL, RiskDecision, RiskLimits, RiskState

__all__ = [
    "RULE_ORDER",
    "VAR_LEVEL",
    "RiskDecision",
    "RiskLimits",
    "RiskState",
    "advance_breaker",
    "apply_risk",
]
