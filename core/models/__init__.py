"""Models: any name a user gives, to a Hugging Face model that loads, is logged, and scores texts.

- ``loading``: base models (a hub id, or a folder as ``save_pretrained`` or the hub lays it out), checked and
  loaded for classification; trained models logged to MLflow (``mlflow.transformers``);
- ``sources``: models in MLflow (``models:/NAME@alias``, ``models:/NAME/3``, ``runs:/...``, a run id) resolved
  to one version, downloaded once into the model cache, loaded for inference;
- ``infer``: batched inference on the job's device.

Below training, scoring and the registry, which all use them; above the foundation only.
"""
