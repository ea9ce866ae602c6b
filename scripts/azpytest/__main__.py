"""`python -m azpytest` is the `azpytest` command.

`kube-token` (kubectl's exec plugin) and the kubelogin stand-in first try the fast path
(`kubetoken`: the broker or the token cache, no Azure SDK imported); the full command runs
only when that cannot answer.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    args = sys.argv[1:]
    if args[:1] == ["kube-token"]:
        from azpytest import kubetoken

        if kubetoken.kube_token(args[1:], os.environ):
            return 0
    from azpytest.cli import main as full

    return full()


def kubelogin() -> int:
    """The kubelogin stand-in's entry point (the script `kube.install_kubelogin` writes)."""
    from azpytest import kubetoken

    if kubetoken.kubelogin(sys.argv[1:], os.environ):
        return 0
    from azpytest.kube import kubelogin_main

    return kubelogin_main()


if __name__ == "__main__":
    sys.exit(main())
