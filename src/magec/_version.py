"""magec's version: the one place it is written (pyproject.toml reads it statically; ``magec.__version__`` imports it).

A leaf module with a plain assignment, so that setuptools can read it without importing magec or torch.
"""

__version__ = "0.1.0"
