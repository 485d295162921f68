"""Geometry used everywhere: one definition of each formula.

Functions take numpy arrays or torch tensors (batched where noted) and return the same kind.
"""
