"""Using a model without code: score a file of texts, or tag a call's topics with an NLI model.

- ``models``: what a user names (``models:/NAME@production``, ``models:/NAME/3``, a run id) to a model
  that loads, and a local folder holding it;
- ``infer``: batched class probabilities on the job's device;
- ``topics``: zero-shot topic tagging with an NLI model (entailment of "This call is about {}.");
- ``topic_eval``: precision, recall and F1 per topic against calls' true topics;
- ``files``: reading the user's file, writing the scored one (nothing half-written, cells neutralised);
- ``job``: a scoring job on the queue, recorded as an MLflow run of its own.
"""
