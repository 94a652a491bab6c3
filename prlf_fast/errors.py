"""User-facing errors: the CLI prints their message and exits 2 without a traceback."""


class PRLFError(Exception):
    """Base of every error caused by bad input (files, shapes, options) rather than a bug."""
