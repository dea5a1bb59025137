"""Asking a server that runs Tuneboard's app (``approval_server``) to request, approve, reject, withdraw and
roll back: the server carries them out as the signed-in user. On the embedded store, and on a server without the
app, ``approvals`` and ``model_transition`` (``core.registry``) do it in this process, as before.

Every call carries the session's credentials (``core.auth`` hands them to MLflow's own credential reader).
"""

from __future__ import annotations

import threading
import time

from core.errors import ApprovalError, AuthError, NotFoundError, RegistryError

API = "/tuneboard/api"  # as core.registry.approval_server serves it
KEEP_SECONDS = 60.0  # how long a server's answer is trusted: a restarted server may keep another rule
_known: dict[str, tuple[float, dict | None]] = {}  # uri -> (when asked, the app's answer; None: no app there)
_lock = threading.Lock()


def _uri(transition) -> str:
    return str(getattr(transition, "registry_uri", None) or transition.client.tracking_uri)


def served(transition) -> bool:
    """Whether the model's registry is a server running Tuneboard's app (asked once a minute per server)."""
    return _app(transition) is not None


def server_rule(transition) -> str | None:
    """The approval rule the server keeps (its ``TUNEBOARD_APPROVAL``: "required" or "off"); None where the
    registry is not a server running Tuneboard's app."""
    answer = _app(transition)
    return None if answer is None else str(answer.get("approval") or "off")


def _app(transition) -> dict | None:
    """What ``GET /tuneboard/api/version`` answered (None: a local store, or a server without the app)."""
    uri = _uri(transition)
    if not uri.startswith(("http://", "https://")):
        return None
    with _lock:
        asked = _known.get(uri)
    if asked is not None and time.monotonic() - asked[0] < KEEP_SECONDS:
        return asked[1]
    response = _send(uri, "GET", f"{API}/version")
    if response.status_code == 401:  # no credentials yet: do not remember; the server refuses what follows anyway
        return None
    try:
        answer = response.json() if response.status_code == 200 else None
    except ValueError:
        answer = None
    found = answer if isinstance(answer, dict) and answer.get("app") == "tuneboard" else None
    with _lock:
        _known[uri] = (time.monotonic(), found)
    return found


def call(transition, action: str, **fields) -> dict:
    """POST ``action`` for the model to the server; its answer, or the refusal as our typed error."""
    body = {"name": transition.model_name, **{k: v for k, v in fields.items() if v is not None}}
    response = _send(_uri(transition), "POST", f"{API}/requests/{action}", json=body)
    try:
        answer = response.json()
    except ValueError:
        answer = {"message": response.text[:500]}
    if response.status_code == 200:
        return answer
    message = answer.get("message") or f"the server answered {response.status_code}"
    kind = answer.get("tuneboard")
    if response.status_code == 401:
        raise AuthError(f"The MLflow server asks for sign-in to {action} for {transition.model_name!r}.")
    if kind == "auth":
        raise AuthError(message)
    if kind == "not_found":
        raise NotFoundError(message)
    if kind in ("approval", None) and response.status_code in (403, 409):
        raise ApprovalError(message)
    raise RegistryError(message)


def _send(uri: str, method: str, endpoint: str, **kwargs):
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    return http_request(get_default_host_creds(uri), endpoint, method, max_retries=0, raise_on_status=False,
                        timeout=600, **kwargs)
