"""Who is acting, and what they may do, when the team's MLflow server runs its basic-auth app.

The dashboard signs a person in against the server itself (``/users/current``);
we store no password anywhere: the browser session keeps it in memory and every
MLflow request made while that session's script runs carries it. MLflow reads
credentials per request through ``mlflow.utils.credentials.read_mlflow_creds``;
:func:`install` wraps that one function so that the credentials of the session
acting in the current thread (a :class:`contextvars.ContextVar`) win over the
process's ``MLFLOW_TRACKING_USERNAME`` / ``PASSWORD`` (which stay the identity
of the CLI and the workers). A session that has not signed in sends none, so
it can never borrow the process's identity. MLflow's artifact downloads and
uploads run on thread pools of their own: :func:`install` makes those pools
run each task in the submitting thread's context, so they carry the session's
credentials too.

The server decides; the pages only ask it first so they can say why a button
is missing. A READ user's promotion is refused by the server whatever route it
takes (``tests/test_auth.py``).
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field

from core.errors import AuthError


@dataclass(frozen=True)
class Credentials:
    username: str | None
    password: str | None = field(default=None, repr=False)


ANONYMOUS = Credentials(None, None)
_ACTING: ContextVar[Credentials | None] = ContextVar("tuneboard_credentials", default=None)
_installed = threading.Lock()
_done = False


def install() -> None:
    """Make MLflow ask us for credentials first (once per process)."""
    global _done
    with _installed:
        if _done:
            return
        from mlflow.utils import credentials

        original = credentials.read_mlflow_creds

        def read_mlflow_creds():
            acting = _ACTING.get()
            if acting is None:
                return original()
            return credentials.MlflowCreds(username=acting.username, password=acting.password)

        credentials.read_mlflow_creds = read_mlflow_creds
        from mlflow.store.artifact.artifact_repo import ArtifactRepository

        ArtifactRepository._create_thread_pool = _artifact_pool
        _done = True


class _CarryingPool(ThreadPoolExecutor):
    """A thread pool whose tasks run in a copy of the submitting thread's context (its acting credentials)."""

    def submit(self, fn, /, *args, **kwargs):
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)


def _artifact_pool(repo) -> ThreadPoolExecutor:
    """MLflow's artifact repositories download and upload on a thread pool of their own; a plain pool's threads
    carry no session's credentials, so a signed-in dashboard session's download was refused by the server (401:
    "Failed to download artifacts from path ..."). As ``ArtifactRepository._create_thread_pool`` makes it."""
    return _CarryingPool(max_workers=repo.max_workers, thread_name_prefix=f"Mlflow{type(repo).__name__}")


def act_as(creds: Credentials | None) -> None:
    """From now on in this thread (one Streamlit script run), MLflow calls carry ``creds``."""
    install()
    _ACTING.set(creds)


@contextlib.contextmanager
def acting_as(creds: Credentials | None):
    install()
    token = _ACTING.set(creds)
    try:
        yield
    finally:
        _ACTING.reset(token)


def signed_in_user() -> str | None:
    acting = _ACTING.get()
    return acting.username if acting is not None else None


# -- asking the server -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServerAuth:
    """What the tracking store says about sign-in: ``required`` is False for SQLite and open servers."""

    required: bool
    detail: str


def server_auth(tracking_uri: str, timeout: float = 5.0) -> ServerAuth:
    if not tracking_uri.startswith(("http://", "https://")):
        return ServerAuth(False, "this is a local store on this machine: there is no sign-in")
    status, _ = _get(tracking_uri, "/api/2.0/mlflow/users/current", None, timeout)
    if status == 401:
        return ServerAuth(True, "the MLflow server asks everyone to sign in")
    return ServerAuth(False, "the MLflow server runs without sign-in")


@dataclass(frozen=True)
class Identity:
    username: str
    is_admin: bool


def sign_in(tracking_uri: str, username: str, password: str) -> Identity:
    """Check the user name and password with the server; the caller keeps them in memory only."""
    if not username.strip() or not password:
        raise AuthError("Give your user name and password for the MLflow server.")
    status, body = _get(tracking_uri, "/api/2.0/mlflow/users/current", Credentials(username.strip(), password))
    if status == 401:
        raise AuthError(f"The server did not accept user {username.strip()!r} with that password. Check both, "
                        "or ask the server's admin to create the account.")
    if status != 200:
        raise AuthError(f"The server at {tracking_uri} answered {status} to sign-in; is it an MLflow server "
                        "with the basic-auth app?")
    user = body["user"]
    return Identity(user["username"], bool(user.get("is_admin")))


def model_permission(tracking_uri: str, creds: Credentials, model_name: str) -> str:
    """The signed-in user's permission on a registered model: MANAGE, EDIT, READ, ... (admins: MANAGE)."""
    status, body = _get(tracking_uri, "/api/2.0/mlflow/users/current", creds)
    if status == 200 and body["user"].get("is_admin"):
        return "MANAGE"
    status, body = _get(tracking_uri, "/api/3.0/mlflow/users/permissions/get", creds,
                        params={"username": creds.username, "resource_type": "registered_model",
                                "resource_id": model_name})
    if status != 200:
        return "NO_PERMISSIONS"
    return str(body.get("permission") or "NO_PERMISSIONS")


def may_promote(permission: str) -> bool:
    return permission == "MANAGE"


def refusal(exc: Exception, action: str, model_name: str) -> AuthError | None:
    """An AuthError in plain words when ``exc`` is the server refusing ``action``; None for other errors."""
    code = getattr(exc, "error_code", "") or ""
    text = str(exc)
    if code in ("PERMISSION_DENIED", "UNAUTHENTICATED") or "Permission denied" in text or " 403" in text:
        if "TUNEBOARD_APPROVAL=" in text:  # Tuneboard's server app: its own words say what to do instead
            return AuthError(getattr(exc, "message", None) or text)
        who = signed_in_user() or "this user"
        return AuthError(f"The MLflow server refused to let {who} {action} {model_name!r}: it needs MANAGE "
                         "permission on the registered model. Ask its owner or an admin to grant it.")
    return None


def _get(tracking_uri: str, path: str, creds: Credentials | None, timeout: float = 10.0, params=None):
    import requests

    auth = (creds.username, creds.password) if creds and creds.username else None
    try:
        response = requests.get(tracking_uri.rstrip("/") + path, auth=auth, params=params, timeout=timeout)
    except requests.RequestException as exc:
        raise AuthError(f"Cannot reach the MLflow server at {tracking_uri}: {exc}. Is it running?") from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    return response.status_code, body
