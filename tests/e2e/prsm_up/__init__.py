"""Tests on one `prsm up` platform with the default model, shared by this package's modules
(one start-up): `ray job submit` workloads, then what operators see of them."""
