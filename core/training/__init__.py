"""Training runs: one run read top to bottom, the check of its inputs, the job kind, the duration estimate.

- ``run``: :func:`~core.training.run.execute`, one baseline evaluation or fine-tune with the HF Trainer, logged
  to MLflow (``run_classification.py``'s straight path);
- ``check``: the one check of a run's data files, base model and labels, before anything exists and again in
  the run;
- ``kind``: training as a kind of background job (``core.jobkind``): a grid or one run, checked, planned,
  retried and run in a job's process; and a past experiment's grid, to start a new one from;
- ``estimate``: how long a grid should take, from past runs' measured speeds.

Importing this package loads nothing heavy; ``run`` loads transformers and torch.
"""
