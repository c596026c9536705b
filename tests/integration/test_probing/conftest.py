"""The authenticated app of the security tests, for the CLI table run against it."""

from tests.integration.test_security.conftest import issuer, make_secure, secure

__all__ = ["issuer", "make_secure", "secure"]
