"""Market data: sources (synthetic, CSV, yfinance), the raw contract, validation."""
