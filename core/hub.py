"""The model hub as a base model meets it: whether it is switched off, whether it answers, what a failure means.

A hub id (``MoritzLaurer/deberta-v3-base-zeroshot-v2.0``) is tried on the hub unless the user switched the hub
off (``HF_HUB_OFFLINE=1``, read as ``huggingface_hub`` reads it). Where the hub cannot be reached, transformers
retries for about half a minute and then says "We couldn't connect to ..."; :func:`check` asks once, at once,
and says in plain words what is wrong and what to do, naming the model. :func:`explain` turns the hub's
errors, wherever they surface (a config, a tokenizer, the weights), into the same words.
"""

from __future__ import annotations

import os

from core.errors import ModelPathError

CONFIG = "config.json"  # every transformers checkpoint has one: the file asked for to see whether the hub answers
# Exceptions of the HTTP libraries huggingface_hub has used (httpx2, httpx, requests, urllib3): a network failure.
_NETWORK_MODULES = ("httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3", "socket", "ssl")


def offline() -> bool:
    """Whether the hub is switched off in this process, as huggingface_hub decided when it was imported."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def endpoint() -> str:
    """The hub's address: https://huggingface.co, or the mirror HF_ENDPOINT names."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def check(name: str) -> None:
    """Refuse a hub id this machine cannot load, in plain words, before transformers tries (and retries).

    A model already in the local Hugging Face cache passes: transformers reads it from there when the hub
    cannot be reached, and the hub is not asked here. Otherwise one request, with huggingface_hub's own
    timeout (``HF_HUB_ETAG_TIMEOUT``), tells whether the hub has the model and lets this machine read it.
    """
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    try:
        if isinstance(try_to_load_from_cache(name, CONFIG), str):
            return
        if offline():
            raise ModelPathError(_offline(name))
        get_hf_file_metadata(hf_hub_url(name, CONFIG), timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except ModelPathError:
        raise
    except Exception as exc:  # noqa: BLE001 - the HTTP library's errors differ between huggingface_hub releases
        raise ModelPathError(explain(name, exc) or _unreachable(name, exc)) from None


def explain(name: str, exc: BaseException) -> str | None:
    """What a hub failure behind ``exc`` means for the model ``name`` and what to do; None when none is behind it.

    transformers wraps the hub's errors in an OSError, so the chain of causes is read.
    """
    from huggingface_hub import errors

    for cause in _chain(exc):
        if isinstance(cause, errors.OfflineModeIsEnabled):
            return _offline(name)
        if isinstance(cause, errors.GatedRepoError):  # before RepositoryNotFoundError, which it extends
            return (f"{name}: this model is gated on the model hub: accept its terms on its page "
                    f"({endpoint()}/{name}) while signed in, then log this machine in (`hf auth login`, or set "
                    "HF_TOKEN) and try again.")
        if isinstance(cause, errors.RepositoryNotFoundError):
            return (f"{name}: the model hub at {endpoint()} has no model of that name, or it is private. Check the "
                    "spelling (organisation/model, as on the model's page); for a private model, log this machine "
                    "in (`hf auth login`, or set HF_TOKEN). A folder on this machine is given by its path.")
        if isinstance(cause, errors.RevisionNotFoundError):
            return f"{name}: the model hub has this model but not the version asked for. Check the model's page."
        if isinstance(cause, errors.LocalEntryNotFoundError):  # a kind of EntryNotFoundError: test it first
            return _offline(name) if offline() else _unreachable(name, exc)
        if isinstance(cause, errors.EntryNotFoundError):
            return (f"{name}: the model hub has this repository but not the files of a transformers model in it "
                    f"({CONFIG} and the weights). Choose a model whose page lists them.")
        if isinstance(cause, errors.HFValidationError):
            return (f"{name}: no such folder here, and not a model hub id either (those are written "
                    "organisation/model, e.g. 'MoritzLaurer/deberta-v3-base-zeroshot-v2.0'). Check the name or path.")
        if isinstance(cause, errors.HfHubHTTPError):
            status = getattr(getattr(cause, "response", None), "status_code", None)
            return (f"{name}: the model hub at {endpoint()} answered with an error"
                    f"{f' (HTTP {status})' if status else ''}; it may be down for a while. Try again later, or "
                    "download the model where the hub answers and give that folder's path instead.")
        if _is_network(cause):
            return _offline(name) if offline() else _unreachable(name, exc)
    return None


def _chain(exc: BaseException | None) -> list[BaseException]:
    """``exc`` and its causes (``raise ... from``), or the exception it was raised while handling where none."""
    seen: list[BaseException] = []
    while exc is not None and all(exc is not s for s in seen):
        seen.append(exc)
        exc = exc.__cause__ if exc.__cause__ is not None or exc.__suppress_context__ else exc.__context__
    return seen


def _is_network(exc: BaseException) -> bool:
    return (type(exc).__module__.split(".")[0] in _NETWORK_MODULES
            or isinstance(exc, (ConnectionError, TimeoutError)))


def _offline(name: str) -> str:
    variable = next((f"{v}={os.environ[v]}" for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if os.environ.get(v)),
                    "HF_HUB_OFFLINE=1")
    return (f"{name}: could not load this model: the model hub is switched off here ({variable}) and the "
            "model is not in the local Hugging Face cache. Download it to a folder and give that folder's path "
            "instead, or unset HF_HUB_OFFLINE so that it is downloaded from the hub.")


def _unreachable(name: str, exc: BaseException) -> str:
    # the network's own words (connection refused, name not known, timed out), not the libraries' wrappers
    network = [c for c in _chain(exc) if _is_network(c)]
    words = (str(network[-1]).strip().splitlines() or [type(network[-1]).__name__])[0] if network else ""
    why = f" ({words})" if words else ""
    return (f"{name}: could not reach the model hub at {endpoint()} to download this model{why}. Check this "
            "machine's network connection and proxy settings (HTTPS_PROXY), or set HF_ENDPOINT to a hub mirror it "
            "can reach; or download the model on a machine that can reach the hub (`hf download "
            f"{name} --local-dir FOLDER`), copy the folder here and give its path instead.")
