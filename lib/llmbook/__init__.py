"""llmbook: the small, tested library behind *The Theory of Large Language Models, Executable*.

Every chapter of the book imports its reusable code from here; every public function is
tested in ``tests/``. The version number below is the single version of both the book and
the library (the site footer shows it).
"""

from llmbook._env import get_device, seed_everything, setup_notebook

__version__ = "0.1.0"

__all__ = ["__version__", "get_device", "seed_everything", "setup_notebook"]
