"""The fault corpus's fixtures; the helpers live in corpus.py (a plain module, so test files can import them)."""
from corpus import workdir  # noqa: F401  (the fixture)
