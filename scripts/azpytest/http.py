"""HTTP sessions for the Azure SDKs and GitHub: connection pools sized for our threads, and
one TLS context per CA bundle.

With `REQUESTS_CA_BUNDLE` set (corporate proxies, self-hosted runners), requests loads the
bundle again for every new connection: about 50 ms of CPU each for a system bundle, which
made twenty parallel Key Vault reads CPU-bound. We load it once and share the context.
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry


@functools.lru_cache(maxsize=4)
def _context(bundle: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=bundle)


class _SharedContextAdapter(HTTPAdapter):
    def __init__(self, bundle: str | None, **kwargs: Any) -> None:
        self._bundle = bundle
        self._context = _context(bundle) if bundle else None
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._context is not None:
            kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        if self._context is not None:
            proxy_kwargs["ssl_context"] = self._context
        return super().proxy_manager_for(proxy, **proxy_kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
        if self._context is not None and verify == self._bundle:
            # The shared context already trusts this bundle: do not load it again.
            conn.ca_certs = None
            conn.ca_cert_dir = None


def session(
    environ: Mapping[str, str] | None = None, *, pool_size: int = 10, retry: Retry | None = None
) -> requests.Session:
    env = os.environ if environ is None else environ
    bundle = env.get("REQUESTS_CA_BUNDLE") or env.get("CURL_CA_BUNDLE") or None
    if bundle and not os.path.isfile(bundle):
        bundle = None  # requests reports the missing file itself, naming it
    adapter = _SharedContextAdapter(
        bundle, pool_connections=4, pool_maxsize=pool_size, max_retries=retry or 0
    )
    result = requests.Session()
    result.mount("https://", adapter)
    return result
