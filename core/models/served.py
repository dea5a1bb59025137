"""The served model: what ``mlflow.pyfunc.load_model(uri).predict`` and ``mlflow models serve`` run.

MLflow's transformers flavor serves a text-classification pipeline, which reads a call's first window and drops
the rest. A model logged by ``core.models.loading.log_model`` keeps that flavor (``mlflow.transformers.load_model``
still gives the pipeline) and gets this module as its python_function flavor, so a served model reads whole texts
as evaluation does:

1. loading (``_load_pyfunc``): the weights (``model/``) and the tokenizer (``components/tokenizer/``) that the
   transformers flavor saved, and the reading settings the model was evaluated with (:class:`Defaults`, recorded
   in the python_function flavor as ``served_defaults`` and as the params schema's defaults); ``params`` given
   at predict time override them;
2. topics in ``params`` (an NLI model): every text is read as windows against every topic; a topic's score is its
   largest entailment score over the windows, the window that gave it is the evidence, and a topic at or above
   the threshold is a tag: one row per text with ``tags``, ``score: <topic>`` and ``evidence: <topic>``;
3. no topics: ``text`` and ``text_pair`` (a pair model) or ``text`` alone are classified, read as windows
   (``core.models.windows.predict``: the window most likely to entail decides for an NLI model, the windows'
   mean for others): one row per text with ``label`` and ``score``.

A server started anywhere imports this module from the model's own ``code/`` folder, so it imports only the
modules shipped there (``core.models.loading.code_files``): no training, scoring or dashboard code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import TopicError, TuneboardError
from core.models import windows
from core.models.infer import default_device
from core.models.topics import MAX_TOPIC_CHARS, read_topics, tagged
from core.models.windows import DEFAULT_MAX_LENGTH, Reading
from core.tokenizer import load_tokenizer
from core.topic_pairs import (
    DEFAULT_TEMPLATE,
    DEFAULT_THRESHOLD,
    MAX_TOPICS,
    check_template,
    check_threshold,
    entailment_index,
)

DEFAULTS_KEY = "served_defaults"  # in the python_function flavor of MLmodel
TAGS = "tags"
TAG_SEPARATOR = "; "
SCORE, EVIDENCE = "score: {}", "evidence: {}"
SETTINGS = ("max_length", "window_overlap", "template", "threshold")  # what params may override
TOPICS_EXAMPLE = "{'topics': ['refund', 'fees']}"
BATCH_SIZE = 32  # as evaluation reads calls (core.scoring.topics.read_topics' default)

if TYPE_CHECKING:
    import pandas as pd  # imported where a frame is made: logging a model (core.models.loading) needs no pandas


@dataclass(frozen=True)
class Defaults:
    """The reading settings a served model uses when ``params`` do not name them: those it was evaluated with.

    ``max_length``: tokens the model reads at once; ``window_overlap``: tokens neighbouring windows share (None: an
    eighth of a window); ``template``: the hypothesis, ``{}`` where the topic goes; ``threshold``: the score at
    which a topic is a tag.
    """

    max_length: int = DEFAULT_MAX_LENGTH
    window_overlap: int | None = None
    template: str = DEFAULT_TEMPLATE
    threshold: float = DEFAULT_THRESHOLD

    def __post_init__(self) -> None:
        Reading(self.max_length, self.window_overlap)  # refuses what a reading would refuse, naming the key
        object.__setattr__(self, "template", check_template(self.template))
        object.__setattr__(self, "threshold", check_threshold(self.threshold))

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> Defaults:
        """From what the flavor records (keys left out or null keep the built-in defaults)."""
        given = {k: v for k, v in (config or {}).items() if k in SETTINGS and v is not None}
        return cls(**given)

    def config(self) -> dict[str, Any]:
        """As the flavor records it (``served_defaults``) and as the params schema's defaults."""
        return {name: getattr(self, name) for name in SETTINGS}

    def overridden(self, params: Mapping[str, Any] | None) -> Defaults:
        """These settings with those that ``params`` name (null or left out: kept)."""
        given = {k: v for k, v in (params or {}).items() if k in SETTINGS and v is not None}
        return Defaults(**{**self.config(), **given}) if given else self

    def reading(self) -> Reading:
        return Reading(self.max_length, self.window_overlap)


def topic_list(given: Any) -> list[str]:
    """The topics ``params`` name: a list, each item one topic or several separated by commas (MLflow's params
    schema takes a list; ``["refund, fees"]`` is two topics), or one such string. Blanks are dropped; an empty
    list means no topics. Duplicates and too many are refused."""
    if given is None:
        return []
    if isinstance(given, str):
        given = [given]
    if not isinstance(given, (list, tuple, np.ndarray)):
        raise TopicError(f"topics must be a list of strings, e.g. {TOPICS_EXAMPLE}, not {type(given).__name__}.",
                         key="topics")
    topics: list[str] = []
    for position, item in enumerate(given, start=1):
        if not isinstance(item, str):
            raise TopicError(f"Topic {position} is not text ({item!r}): give topics as strings, e.g. "
                             f"{TOPICS_EXAMPLE}.", key="topics")
        topics += [part.strip() for part in item.split(",") if part.strip()]
    seen: dict[str, int] = {}
    for position, topic in enumerate(topics, start=1):
        if len(topic) > MAX_TOPIC_CHARS:
            raise TopicError(f"Topic {position} ({topic[:40]!r}...) is {len(topic)} characters long: keep a topic "
                             f"under {MAX_TOPIC_CHARS}, a few words naming it.", key="topics")
        if topic.casefold() in seen:
            raise TopicError(f"Topic {topic!r} is listed twice (topics {seen[topic.casefold()]} and {position}): "
                             "keep it once.", key="topics")
        seen[topic.casefold()] = position
    if len(topics) > MAX_TOPICS:
        raise TopicError(f"{len(topics)} topics given; at most {MAX_TOPICS} can be scored at once (each topic is "
                         "one more pass of the model over every text). Keep the ones that matter.", key="topics")
    return topics


# -- the pyfunc model -------------------------------------------------------------------------------------------
class ServedModel:
    """A Hugging Face classifier behind ``mlflow.pyfunc``: ``predict(data, params)`` as the module docstring says."""

    def __init__(self, model, tokenizer, defaults: Defaults | None = None, device: str | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.defaults = defaults or Defaults()
        self.device = device or default_device()
        self.id2label = {int(i): str(name) for i, name in model.config.id2label.items()}
        self.entailment = entailment_index(self.id2label)

    def predict(self, data, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """One row per text: ``tags``, ``score: <topic>``, ``evidence: <topic>`` when ``params`` name topics, else
        ``label`` and ``score``. A request the model cannot answer is refused in plain words (MLflow's
        INVALID_PARAMETER_VALUE: a 400 from a server)."""
        from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

        try:
            return self._predict(data, params or {})
        except TuneboardError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None

    def _predict(self, data, params: Mapping[str, Any]) -> pd.DataFrame:
        settings = self.defaults.overridden(params)
        topics = topic_list(params.get("topics"))
        frame = as_frame(data)
        if not len(frame.columns):
            raise TopicError("No texts given: give the texts as a list of strings, or a DataFrame with a text "
                             "column.", key="transcripts")
        text_column = "text" if "text" in frame.columns else frame.columns[0]
        texts = _strings(frame[text_column], "Text")
        pairs = _strings(frame["text_pair"], "text_pair") if "text_pair" in frame.columns else None
        if topics:
            if self.entailment is None:
                labels = ", ".join(repr(v) for _, v in sorted(self.id2label.items()))
                raise TopicError(f"This model cannot tag topics: it is not an NLI (entailment) model. Its labels are "
                                 f"{labels}; topic tagging needs a model with an 'entailment' label, such as a "
                                 "zero-shot NLI model. Leave topics out to classify texts with it.", key="model")
            if pairs is not None:
                raise TopicError("Give either topics in params (to tag whole texts) or a text_pair column (to "
                                 "classify text pairs), not both.", key="topics")
            return self._tag(texts, topics, settings)
        if pairs is None and self.entailment is not None:
            raise TopicError(f"This model tags whole calls with topics: give topics in params, e.g. {TOPICS_EXAMPLE}"
                             " (or give a text_pair column to classify text pairs).", key="topics")
        return self._classify(texts, pairs, settings)

    def _tag(self, texts: list[str], topics: list[str], settings: Defaults) -> pd.DataFrame:
        import pandas as pd

        read = read_topics(self.model, self.tokenizer, texts, topics, settings.template, reading=settings.reading(),
                           batch_size=BATCH_SIZE, device=self.device)
        columns: dict[str, list] = {TAGS: [TAG_SEPARATOR.join(t) for t in tagged(read.scores, topics,
                                                                                   settings.threshold)]}
        for j, topic in enumerate(topics):
            columns[SCORE.format(topic)] = [float(s) for s in read.scores[:, j]]
        for j, topic in enumerate(topics):
            columns[EVIDENCE.format(topic)] = [read.evidence(i, j).text for i in range(len(texts))]
        return pd.DataFrame(columns)

    def _classify(self, texts: list[str], pairs: list[str] | None, settings: Defaults) -> pd.DataFrame:
        import pandas as pd

        read = windows.predict(self.model, self.tokenizer, texts, pairs, reading=settings.reading(),
                               device=self.device, entailment=self.entailment if pairs is not None else None)
        best = read.probabilities.argmax(axis=1)
        return pd.DataFrame({"label": [self.id2label[int(i)] for i in best],
                             "score": [float(p) for p in read.probabilities.max(axis=1)]})


def as_frame(data) -> pd.DataFrame:
    """What predict was given, as a frame with a ``text`` (or first) column and perhaps ``text_pair``: a string, a
    list of strings (or of ``{text, text_pair}`` records), a Series, a dict of columns or one record, a frame;
    numpy arrays as a server parses JSON."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, pd.Series):
        return data.to_frame(name="text")
    data = _plain(data)
    if isinstance(data, str):
        return pd.DataFrame({"text": [data]})
    if isinstance(data, dict):
        if data and all(isinstance(v, list) for v in data.values()):
            return pd.DataFrame(data)
        return pd.DataFrame([data])
    if isinstance(data, list):
        if data and all(isinstance(row, dict) for row in data):
            return pd.DataFrame(data)
        return pd.DataFrame({"text": data})
    raise TopicError(f"The input is a {type(data).__name__}; give the texts as a list of strings, a pandas Series, "
                     "or a DataFrame with a text column (and a text_pair column to classify pairs).",
                     key="transcripts")


def _plain(value):
    """numpy values (a server's parsed JSON) as plain Python: arrays as lists, 0-d arrays and numpy strings as
    their value; in dicts and lists too."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _strings(column: pd.Series, what: str) -> list[str]:
    values = [_plain(v) for v in column.tolist()]
    for position, value in enumerate(values, start=1):
        if not isinstance(value, str):
            raise TopicError(f"{what} {position} is not text ({type(value).__name__}: {value!r:.60}): give each "
                             "text as a string.", key="transcripts")
    return values


def load(path: str | Path, device: str | None = None) -> ServedModel:
    """The served model in ``path`` (a folder the logged model was downloaded to), on ``device`` (cuda where
    there is one)."""
    from mlflow.models import Model
    from transformers import AutoModelForSequenceClassification

    folder = Path(path)
    flavors = Model.load(str(folder)).flavors
    weights = folder / flavors.get("transformers", {}).get("model_binary", "model")
    tokenizer = load_tokenizer(str(folder), str(folder / "components" / "tokenizer"))
    model = AutoModelForSequenceClassification.from_pretrained(str(weights), trust_remote_code=False)
    device = device or default_device()
    model.to(device).eval()
    defaults = Defaults.from_config(flavors.get("python_function", {}).get(DEFAULTS_KEY))
    return ServedModel(model, tokenizer, defaults, device)


def _load_pyfunc(path: str) -> ServedModel:
    """MLflow's entry point for the python_function flavor (``loader_module``)."""
    return load(path)
