"""Verification: smoke harness, in-place locator, sandbox."""
