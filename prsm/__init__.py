"""PRSM: a Ray platform for running AI work for scientific computing."""

__version__ = "0.1.0"
