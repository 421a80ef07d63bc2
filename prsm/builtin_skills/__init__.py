"""The skills PRSM ships, declared with ``prsm.skill`` and found through the ``prsm.skills``
entry points of PRSM's own ``pyproject.toml`` — the same way as any package's skills.

- ``compute``: numbers, texts, lists, and the ``reduce.*`` skills;
- ``simulation``: ODEs solved with SciPy and a Monte Carlo estimate;
- ``system``: where the code runs (``sys.where``) and a model call (``llm.complete``, run
  by the agent through the inference port).
"""
