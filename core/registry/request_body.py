"""One reading of a request on the team server: MLflow's sign-in check and its handlers see the same fields.

MLflow's permission check (``mlflow.server.auth._get_request_param``) reads a POST's or PATCH's fields from the body
only when it is labelled JSON, and a DELETE's from the query string unless its body is labelled JSON; its handlers
(``mlflow.server.handlers._get_request_message``) read every non-GET body as JSON whatever its label says, and a
GET's body when its query is empty. So ``DELETE .../registered-models/alias?name=MINE`` with a ``text/plain`` body
naming someone else's model was checked against ``MINE`` and carried out on the other (issue 28). On MLflow's API
routes (``/api/...``, ``/ajax-api/...``) the server therefore refuses, before any handler runs:

1. a POST, PATCH or DELETE with a body not labelled ``application/json`` (HTTP 415): with the label, the check and
   the handler both read the body; with no body, the handler reads nothing;
2. a GET with a body (HTTP 400): its fields go in the query, which is all the check reads.

MLflow's clients (``MlflowClient``, the CLI, ``get_app_client``) and its UI send JSON so labelled and GETs without a
body. Two routes take a body that is not JSON by design and read their fields from elsewhere, as their checks do:
the UI's artifact upload (query) and the sign-up form (form fields). Artifact uploads to ``mlflow-artifacts`` are
PUTs (path). Tuneboard's own endpoints (``/tuneboard/api/...``) read a JSON body as their own checks do.
"""

from __future__ import annotations

WRITES = ("POST", "PATCH", "DELETE")


def refusal() -> tuple[int, str] | None:
    """(HTTP status, message) when the request in hand would be read one way by the check and another by the
    handler; None when it is read one way."""
    from flask import request

    if not _is_api_route(request.path) or request.method not in (*WRITES, "GET"):
        return None
    if (request.path, request.method) in _not_json_by_design():
        return None
    if request.method == "GET":
        if not request.get_data(cache=True):
            return None
        return 400, (f"GET {request.path} came with a body, which this server does not read: a GET's fields go in "
                     "its query string. Send it again without a body.")
    if request.is_json or not request.get_data(cache=True):
        return None
    label = request.content_type or "no Content-Type"
    return 415, (f"{request.method} {request.path} came with a body labelled {label}, and nothing was changed: this "
                 "server reads a request's fields from one place. Send the body as JSON with Content-Type: "
                 "application/json (MLflow's clients and UI do).")


def _is_api_route(path: str) -> bool:
    from mlflow.server.handlers import _add_static_prefix

    return path.startswith((_add_static_prefix("/api/"), _add_static_prefix("/ajax-api/")))


def _not_json_by_design() -> set[tuple[str, str]]:
    from mlflow.server.auth.routes import CREATE_USER_UI, UPLOAD_ARTIFACT

    return {(UPLOAD_ARTIFACT, "POST"), (CREATE_USER_UI, "POST")}
