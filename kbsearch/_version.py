"""The version of kbsearch (a leaf: the package, the CLI and the build fingerprint read it)."""

__version__ = "0.1.0"
