"""Errors raised while reading data files."""
from prlf_fast.errors import PRLFError


class DataError(PRLFError):
    """A data file is missing, truncated, corrupt, or holds keys/shapes that do not fit."""


class UnsafePickleError(DataError):
    """A pickle asked for something numpy's pickles never do (a global outside the allow-list,
    state on another object, an allocation sized from a bare number, ...); nothing from it was run
    or returned."""
