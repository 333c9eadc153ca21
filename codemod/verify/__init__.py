"""Verification: smoke harness, in-place locator, sandbox."""


class VerifyError(Exception):
    """Verification could not start (bad path, config, requirements); the message says why."""
