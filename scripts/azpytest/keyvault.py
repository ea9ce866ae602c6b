"""Read the connection metadata from Key Vault: every secret at once, each access audited.

One `SecretClient`, a thread pool, and the vault token asked for while Key Vault's first
401 challenge is in flight; the other requests go out once one has carried the token (one
challenge per prepare, not one per thread): twenty secrets cost about three round trips.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.core.exceptions import (
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from azpytest import errors, http
from azpytest.identity import Identity, azure_transient
from azpytest.inputs import denied_variable, env_name_for
from azpytest.masking import MIN_SCRUBBED
from azpytest.settings import Settings

MAX_WORKERS = 32


@dataclass(frozen=True)
class FetchedSecret:
    name: str
    env: str
    version: str
    value: str
    content_type: str | None


class AuditLog:
    """One JSON line per secret access: who, which vault, which secret and version, outcome.
    Never a value."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def record(
        self,
        identity: Identity,
        vault: str,
        secret: str,
        version: str | None,
        outcome: str,
        kind: str | None = None,
    ) -> None:
        entry = {
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
            "client_id": identity.principal.get("appid")
            or identity.principal.get("azp")
            or identity.client_id,
            "object_id": identity.principal.get("oid"),
            "vault": vault,
            "secret": secret,
            "version": version,
            "outcome": outcome,
            **({"kind": kind} if kind else {}),
        }
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry) + "\n")


def fetch(settings: Settings, identity: Identity, audit: AuditLog) -> list[FetchedSecret]:
    """Fetch what the `secrets` input asks for; a Diagnosis explains any failure."""
    from azure.keyvault.secrets import SecretClient

    assert settings.key_vault is not None and settings.vault_name is not None
    vault = settings.vault_name
    # One connection per worker, so the pool never drops and re-opens TLS connections. The
    # bounds go to the transport (a client given transport= ignores its own); _call retries
    # transient answers within the deadline, so the SDK does not.
    authorized = threading.Event()  # a request went out with the token: the challenge is known

    def seen(request: Any) -> None:  # after the challenge policy, for every request it sends
        if "Authorization" in request.http_request.headers:
            authorized.set()

    client = SecretClient(
        settings.key_vault,
        identity,
        transport=http.transport(
            identity.workflow.environ, http.Timeouts(settings.timeout), pool_size=MAX_WORKERS
        ),
        retry_total=0,
        raw_request_hook=seen,
    )
    globs = [s for s in settings.secrets if s.is_glob]
    named = [s for s in settings.secrets if not s.is_glob]

    with ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="keyvault") as pool:
        # Ask Entra for the vault token while the first request draws Key Vault's challenge.
        warm = pool.submit(
            identity.get_token_info,
            settings.cloud.vault_scope,
            options={"enable_cae": True, "tenant_id": settings.tenant_id}
            if settings.tenant_id
            else {"enable_cae": True},
        )
        wanted = [(s.source, s.env or env_name_for(s.source)) for s in named]
        if not wanted and not globs:
            return []

        def get(name: str, env: str) -> Future[FetchedSecret]:
            return pool.submit(_get, client, settings, identity, audit, vault, name, env)

        taken = {name.lower() for name, _ in wanted}
        guard = threading.Lock()
        by_glob: list[tuple[int, str, Future[FetchedSecret]]] = []
        skipped: list[tuple[int, str, Callable[[], None]]] = []

        def take(page: Iterable[Any]) -> None:
            """A page of the listing: a read started at once for each secret a glob takes
            (the first glob that matches it), while the next page is asked for."""
            for props in page:
                name = props.name
                with guard:
                    index = next((i for i, g in enumerate(globs) if g.matches(name)), None)
                    if index is None or name.lower() in taken:
                        continue
                    taken.add(name.lower())
                spec = globs[index]
                state = _state(props.enabled, props.expires_on, props.not_before)
                env = env_name_for(name)
                if state:
                    problem = errors.secret_skipped(
                        vault=vault, secret=name, state=state, glob=spec.source
                    )
                    outcome = f"skipped: {state}"
                elif denied_variable(env):
                    problem = errors.secret_name_denied(
                        vault=vault, secret=name, env=env, glob=spec.source
                    )
                    outcome = "skipped: denied name"
                else:
                    future = get(name, env)
                    with guard:
                        by_glob.append((index, name, future))
                    continue

                def say(
                    name: str = name,
                    version: Any = props.version,
                    outcome: str = outcome,
                    problem: str = problem,
                ) -> None:
                    audit.record(identity, vault, name, version, outcome)
                    identity.workflow.warning(problem)

                with guard:
                    skipped.append((index, name, say))

        def listing() -> None:
            # A retried listing starts again: the names it took already are not taken twice.
            for page in client.list_properties_of_secrets().by_page():
                take(page)

        # One request draws Key Vault's challenge (the glob's listing, else the first read);
        # the others go out once a request carried the token, so none is sent without it.
        opener: Future[Any] = (
            pool.submit(
                _call, listing, identity, settings, vault, None, "secrets/readMetadata/action"
            )
            if globs
            else get(*wanted[0])
        )
        opener.add_done_callback(lambda _: authorized.set())
        authorized.wait()
        futures: list[Future[Any]] = [] if globs else [opener]
        futures += [get(name, env) for name, env in wanted[len(futures) :]]
        if globs:
            opener.result()  # the whole listing: every glob's reads have started
        # In the order of the globs, then of the names: the same output on every run.
        for _, _, say in sorted(skipped, key=lambda entry: entry[:2]):
            say()
        futures += [future for _, _, future in sorted(by_glob, key=lambda entry: entry[:2])]
        warm.exception()  # a failure here shows again, diagnosed, in the first get
        return [f.result() for f in futures]


def _state(
    enabled: bool | None, expires: dt.datetime | None, not_before: dt.datetime | None
) -> str | None:
    now = dt.datetime.now(dt.timezone.utc)
    if enabled is False:
        return "disabled"
    if expires is not None and expires <= now:
        return f"expired (since {expires:%Y-%m-%d %H:%M} UTC)"
    if not_before is not None and not_before > now:
        return f"not yet valid (until {not_before:%Y-%m-%d %H:%M} UTC)"
    return None


def _get(
    client: Any,
    settings: Settings,
    identity: Identity,
    audit: AuditLog,
    vault: str,
    name: str,
    env: str,
) -> FetchedSecret:
    def get() -> Any:
        return client.get_secret(name)

    try:
        secret = _call(get, identity, settings, vault, name, "secrets/getSecret/action", client)
    except errors.Diagnosis as diagnosis:
        audit.record(identity, vault, name, None, _outcome(diagnosis), diagnosis.kind)
        raise
    value = secret.value or ""
    identity.workflow.mask(value)  # before anything else can print it
    if 0 < len(value.strip()) < MIN_SCRUBBED:
        identity.workflow.warning(errors.secret_too_short(vault=vault, secret=name, env=env))
    props = secret.properties
    state = _state(props.enabled, props.expires_on, props.not_before)
    if state:
        audit.record(identity, vault, name, props.version, f"refused: {state}")
        raise errors.secret_unusable(vault=vault, secret=name, state=state)
    audit.record(identity, vault, name, props.version, "read")
    return FetchedSecret(
        name=props.name or name,
        env=env,
        version=props.version or "",
        value=value,
        content_type=props.content_type,
    )


# The audit log's outcome of a refused access, by the diagnosis's kind (never its prose).
_OUTCOMES = {"keyvault-forbidden": "forbidden", "keyvault-secret-not-found": "not found"}


def _outcome(diagnosis: errors.Diagnosis) -> str:
    return _OUTCOMES.get(diagnosis.kind, "failed")


def _call(
    action: Any,
    identity: Identity,
    settings: Settings,
    vault: str,
    secret: str | None,
    data_action: str,
    client: Any = None,
) -> Any:
    """Run one Key Vault call, turning what can go wrong into a Diagnosis: a transient
    answer (429, 5xx, a reset, a timeout, a 200 that is not JSON) is asked again until the
    deadline; then the diagnosis names Key Vault and its host."""
    timeouts = http.Timeouts(settings.timeout)
    host = settings.key_vault.removeprefix("https://").rstrip("/") if settings.key_vault else vault

    def attempt(_timeout: tuple[float, float]) -> Any:
        try:
            return action()
        except errors.Diagnosis:
            raise
        except (HttpResponseError, ServiceRequestError, ServiceResponseError) as exc:
            transient = _transient(exc, timeouts)
            if transient is None:
                raise
            raise transient from None

    try:
        return http.retrying(attempt, timeouts)
    except http.GaveUp as gave_up:
        raise errors.service_unavailable(
            service=errors.KEY_VAULT,
            host=host,
            said=gave_up.summary(),
            environ=identity.workflow.environ,
        ) from None
    except errors.Diagnosis:
        raise
    except ResourceNotFoundError:
        assert secret is not None
        raise errors.secret_not_found(
            vault=vault, secret=secret, close=_close_names(client, secret)
        ) from None
    except HttpResponseError as exc:
        if exc.status_code == 403 and "disabled secret" in str(exc):
            raise errors.secret_unusable(
                vault=vault, secret=secret or "?", state="disabled"
            ) from None
        if exc.status_code == 403:
            resource = re.search(r"Resource: '([^']+)'", str(exc))
            raise errors.vault_forbidden(
                vault=vault,
                secret=secret,
                client_id=identity.principal.get("appid", identity.client_id or "?"),
                object_id=identity.principal.get("oid", "?"),
                action=f"Microsoft.KeyVault/vaults/{data_action}",
                resource=_vault_scope(resource.group(1)) if resource else None,
            ) from None
        raise errors.vault_failed(
            vault=vault,
            secret=secret,
            status=exc.status_code,
            message=(exc.message or str(exc)).splitlines()[0],
        ) from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise errors.unreachable(host, str(exc), identity.workflow.environ) from None


def _transient(exc: Exception, timeouts: http.Timeouts) -> http.Transient | None:
    """Key Vault's answers worth asking again: identity.azure_transient's rules (the same
    azure-core exceptions), except that a name the proxy cannot reach is not retried."""
    if isinstance(exc, ServiceRequestError) and http.proxy_refused(exc):
        return None
    return azure_transient(exc, timeouts)


def _vault_scope(resource: str) -> str:
    # Key Vault names the secret's resource in lower case; the role goes on the vault.
    return resource.split("/secrets/", 1)[0]


def _close_names(client: Any, secret: str) -> list[str]:
    if client is None:
        return []
    try:
        names = [p.name for p in client.list_properties_of_secrets()]
    except Exception:  # may not list: no hint, but still the 404 diagnosis
        return []
    return difflib.get_close_matches(secret, [n for n in names if n], n=3, cutoff=0.6)
