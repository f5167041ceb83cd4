"""Suite-wide: this folder is on ``sys.path`` (pytest's default import mode puts a
conftest's folder there), so every test module can import :mod:`support`."""
