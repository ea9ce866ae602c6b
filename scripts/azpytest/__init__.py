"""azpytest: pytest integration tests against real Azure from GitHub Actions, with OIDC."""

__version__ = "0.1.0"
