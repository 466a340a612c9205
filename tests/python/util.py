# SPDX-License-Identifier: Apache-2.0
"""Shared helpers of the Python tests."""
import importlib


def optional(name):
    """(module, None) or (None, reason) for an optional import."""
    try:
        return importlib.import_module(name), None
    except ImportError as e:
        return None, "%s not importable by this interpreter (%s)" % (name, e)
