"""adamixup_jax: AdaMixup and baseline privacy defenses, measured with membership inference.

The library is organised one module per concept; see README.md for the flow of a run.
"""

__version__ = "0.1.0"
