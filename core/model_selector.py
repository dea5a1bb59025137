"""The seed's import path for ``core.registry.model_selector`` (the module lives with the rest of the
registry)."""

from core.registry.model_selector import *
