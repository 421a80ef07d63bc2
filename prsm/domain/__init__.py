"""Pure rules and data. Imports nothing else of PRSM and no framework."""
