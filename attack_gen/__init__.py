"""Offline side of smart-study: data loaders, recognizers, the SMART attack, stimulus batches.

The only package that imports torch (and only in the modules that need it:
``attack_gen.data`` is numpy-only).
"""

__version__ = "0.1.0"
