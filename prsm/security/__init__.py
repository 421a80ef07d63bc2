"""Tokens and API keys, policy, rate limits, audit."""
