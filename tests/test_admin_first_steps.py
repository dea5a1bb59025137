"""README's team mode, as the admin reads it: the server started with approval required, then README's own Python
block run as the admin (users alice and bob, EDIT and MANAGE on the model) gives a team where alice asks and bob
approves, and alice cannot approve herself.

The block is taken from README.md and run as written, with only the server's address and the passwords filled in.
"""

from __future__ import annotations

import re
import secrets

import pytest
from app_server import ADMIN
from conftest import ROOT

from core.auth import Credentials, acting_as
from core.errors import ApprovalError

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("admin_first_steps")]
MODEL = "Topic_Modeling_Consumer_Topic"
PASSWORD = "pw-" + secrets.token_hex(8)  # what each "..." in the block stands for


@pytest.fixture(scope="module")
def app_server_approval() -> str:
    return "required"


def readme_block() -> str:
    """README's Python block in its team-mode section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Team mode"):]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_readmes_first_steps_make_a_team_where_someone_else_approves(app_server, monkeypatch, tmp_path):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", app_server)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.delenv("TUNEBOARD_APPROVAL", raising=False)  # the server's rule alone
    monkeypatch.setenv("TUNEBOARD_HOME", str(tmp_path / "home"))
    block = readme_block()
    assert "http://SERVERHOST:5000" in block and '"..."' in block, "README's block changed: update this test"
    with acting_as(ADMIN):
        exec(block.replace("http://SERVERHOST:5000", app_server).replace('"..."', repr(PASSWORD)), {})  # noqa: S102 (README's own block)
        client = MlflowClient(app_server, app_server)
        run = client.create_run(client.create_experiment("Trained by alice"), run_name="fine-tune")
        client.log_text(run.info.run_id, "weights", "model/weights.txt")
        client.set_terminated(run.info.run_id)
        client.create_registered_model(MODEL)
        version = client.create_model_version(MODEL, f"{run.info.artifact_uri}/model", run.info.run_id).version

    from core.registry.model_transition import ModelTransition

    alice, bob = Credentials("alice", PASSWORD), Credentials("bob", PASSWORD)
    with acting_as(alice):
        asked = ModelTransition(MODEL).request(version, reason="beats production on the held-out calls")
        with pytest.raises(ApprovalError, match="alice requested this promotion"):
            ModelTransition(MODEL).approve(asked.id)
        assert ModelTransition(MODEL).current("Production") is None
    with acting_as(bob):
        done = ModelTransition(MODEL).approve(asked.id, reason="read the examples")
        assert done.decided_by == "bob" and ModelTransition(MODEL).current("Production").version == str(version)
