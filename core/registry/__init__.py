"""The registry: choose the best run, promote it, ask for and give approval, and keep the record.

- ``model_selector``: the seed's ``ModelSelector`` (best run overall and per group, within noise of the best);
- ``model_transition``: the seed's ``ModelTransition`` (register, promote with aliases and stages, roll back, the
  audit trail);
- ``promotion``: what a promotion would replace, and the like-for-like comparison shown before it;
- ``approvals``: requests and approvals (four eyes), in process on the embedded store;
- ``approval_server`` / ``approval_client``: the team server's app that keeps the approval rule, and the client
  side that uses its endpoints when the server has them;
- ``request_body``: the team server's refusal of a request that MLflow's sign-in check and its handler would read
  differently (a write whose body is not labelled JSON);
- ``decision_record``: the self-contained HTML record of each promotion.

``core.model_selector`` and ``core.model_transition`` stay the seed's import paths.
"""
