"""Errors the data layer raises: each carries a one-line message for people."""

from __future__ import annotations


class DataError(ValueError):
    """Base class: input that cannot become validated market data."""


class SourceError(DataError):
    """A source could not be read at all (missing file, binary file, no columns, no network)."""


class ContractError(DataError):
    """The data was read but breaks the contract beyond what quarantine may absorb."""
