"""An SIR epidemic model, declared as PRSM skills (see ``core``)."""
