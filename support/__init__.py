"""Helpers that tests/ and bench/ share for starting and stopping the product's processes.

Not product code: nothing under the product packages imports it.
"""
