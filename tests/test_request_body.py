"""One reading of a request (issue 28): on the team server, MLflow's permission check and the write it allows read
the same fields, with no approval rule at all (``core.registry.request_body``).

MLflow's check reads a DELETE's fields from the query unless its body is labelled JSON, while MLflow carries the
DELETE out on its body, read as JSON whatever its label: carol, her own model in the query and the owner's in a
text/plain body, deleted the owner's alias. The approval gate governs only production moves; this holds for every
route. Users: the owner (the other model and run) and carol (her own); the server's default permission is READ.
"""

from __future__ import annotations

import json
import secrets

import pytest
import requests
from app_server import ADMIN, CAROL
from mlflow.exceptions import MlflowException

from core.auth import Credentials, acting_as

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("request_body")]  # one worker builds its fixture
OWNER = Credentials("owner", "owner-" + secrets.token_hex(8))


@pytest.fixture(scope="module")
def made(app_server):
    """conftest's ``app_server`` (no approval rule), the owner's model and run, carol's model and run."""
    from mlflow.server import get_app_client

    with acting_as(ADMIN):
        users = get_app_client("basic-auth", tracking_uri=app_server)
        for person in (OWNER, CAROL):
            users.create_user(person.username, person.password)
    return app_server, _model_with_alias(app_server, OWNER, "Owners_Model"), _model_with_alias(
        app_server, CAROL, "Carols_Model")


def test_a_body_read_one_way_by_the_check_and_another_by_the_write_is_refused(made):
    """Carol names her own model (or run) in the query and the owner's in a body not labelled JSON, on the REST and
    the ajax routes: each is refused and nothing changes, hers or the owner's. The alias and the tag deletes
    answered 200 and changed the owner's model before; a run's tags are deleted by POST, which MLflow's check already
    refuses with 400 (its fields read from an unlabelled body: none); a GET with a body is refused too."""
    url, theirs, mine = made
    before = _both(url, theirs, mine)
    signed_in = (CAROL.username, CAROL.password)
    writes = [("DELETE", "registered-models/alias", {"name": mine["name"], "alias": "best"},
               {"name": theirs["name"], "alias": "best"}),
              ("DELETE", "registered-models/delete-tag", {"name": mine["name"], "key": "team"},
               {"name": theirs["name"], "key": "team"}),
              ("POST", "runs/delete-tag", {"run_id": mine["run"]}, {"run_id": theirs["run"], "key": "team"})]
    for prefix in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow"):
        for method, route, query, body in writes:
            for headers in ({"Content-Type": "text/plain"}, {}):  # labelled as text, and not labelled at all
                answer = requests.request(method, f"{url}{prefix}/{route}", params=query, data=json.dumps(body),
                                          headers=headers, auth=signed_in, timeout=30)
                assert answer.status_code in (400, 415), (prefix, route, headers, answer.text)
                assert _both(url, theirs, mine) == before, (prefix, route, headers)
                if method == "DELETE":
                    assert answer.status_code == 415, answer.text
                    assert "Content-Type: application/json" in answer.json()["message"]
        answer = requests.get(f"{url}{prefix}/registered-models/get", params={"name": mine["name"]},
                              data=json.dumps({"name": theirs["name"]}), auth=signed_in, timeout=30)
        assert answer.status_code == 400 and "without a body" in answer.json()["message"], answer.text
    with acting_as(CAROL), pytest.raises(MlflowException) as refused:  # sent as JSON, the check reads the body
        _client(url).delete_registered_model_alias(theirs["name"], "best")
    assert refused.value.error_code == "PERMISSION_DENIED"
    assert _both(url, theirs, mine) == before


def test_what_mlflow_client_and_ui_send_goes_on(made):
    """Carol's own work as MLflow's client sends it (JSON so labelled), as the UI labels it (with a charset), and the
    UI's artifact upload (a raw body, its fields in the query, as its check reads them)."""
    url, theirs, mine = made
    owners = _state(url, theirs)
    with acting_as(CAROL):
        plain = _client(url)
        plain.set_tag(mine["run"], "note", "mine")
        plain.delete_tag(mine["run"], "team")
        plain.log_metric(mine["run"], "accuracy", 0.9)
        plain.log_text(mine["run"], "notes", "notes/a.txt")
        plain.set_registered_model_tag(mine["name"], "work", "trial")
        plain.delete_registered_model_tag(mine["name"], "team")
        plain.delete_registered_model_alias(mine["name"], "best")
        plain.set_registered_model_alias(mine["name"], "best", mine["version"])
    signed_in = (CAROL.username, CAROL.password)
    answer = requests.delete(f"{url}/ajax-api/2.0/mlflow/registered-models/alias", auth=signed_in, timeout=30,
                             data=json.dumps({"name": mine["name"], "alias": "best"}),
                             headers={"Content-Type": "application/json; charset=utf-8"})
    assert answer.status_code == 200, answer.text
    answer = requests.post(f"{url}/ajax-api/2.0/mlflow/upload-artifact", auth=signed_in, timeout=30, data=b"raw",
                           params={"run_uuid": mine["run"], "path": "notes/b.txt"},
                           headers={"Content-Type": "text/plain"})
    assert answer.status_code == 200, answer.text
    aliases, tags, run_tags = _state(url, mine)
    assert aliases == {} and tags == {"work": "trial"} and run_tags == {"note": "mine"}
    with acting_as(CAROL):
        assert sorted(a.path for a in _client(url).list_artifacts(mine["run"], "notes")) == ["notes/a.txt",
                                                                                             "notes/b.txt"]
    assert _state(url, theirs) == owners


def _client(url: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(url, url)


def _model_with_alias(url: str, person: Credentials, name: str) -> dict[str, str]:
    """``person``'s run (tag team) and model ``name`` (tag team, one version, alias best): their ids."""
    with acting_as(person):
        client = _client(url)
        run = client.create_run(client.create_experiment(f"{name} runs"), tags={"team": person.username})
        client.create_registered_model(name, tags={"team": person.username})
        version = client.create_model_version(name, f"{run.info.artifact_uri}/model", run.info.run_id).version
        client.set_registered_model_alias(name, "best", version)
    return {"name": name, "run": run.info.run_id, "version": str(version)}


def _state(url: str, made: dict[str, str]) -> tuple[dict, dict, dict]:
    """The model's aliases and tags and the run's own tags, read as the admin."""
    with acting_as(ADMIN):
        client = _client(url)
        model = client.get_registered_model(made["name"])
        run_tags = {k: v for k, v in client.get_run(made["run"]).data.tags.items() if not k.startswith("mlflow.")}
        return model.aliases, model.tags, run_tags


def _both(url: str, theirs: dict[str, str], mine: dict[str, str]) -> tuple:
    return _state(url, theirs), _state(url, mine)
