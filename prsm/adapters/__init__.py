"""Adapters: the ports of the service layer implemented on real backends."""
