"""Thin route modules: parse, call the oracle, shape the answer."""
