"""Local stand-ins of GitHub OIDC, Entra ID, Key Vault, ARM and the AKS API server.

Only the CLI's `sandbox` subcommand and the tests import this package: the product reaches
it through standard environment (HTTPS_PROXY, REQUESTS_CA_BUNDLE, ACTIONS_ID_TOKEN_REQUEST_*)
and what ARM returns, never by knowing about it.
"""

from __future__ import annotations

from .scenario import Scenario, ScenarioError, build_scenario, load_scenario
from .server import Sandbox

__all__ = ["Sandbox", "Scenario", "ScenarioError", "build_scenario", "load_scenario"]
