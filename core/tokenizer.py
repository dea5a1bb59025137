"""Loading a checkpoint's tokenizer from whatever files it ships, with errors that say what is missing.

Checkpoints ship their tokenizer in one of a few layouts: a ``tokenizer.json``
(the fast tokenizer, ready to use), a SentencePiece model (``spm.model`` as
DeBERTa-v3 ships it, or another ``*.model``), a WordPiece ``vocab.txt``
(BERT) or a BPE ``vocab.json`` + ``merges.txt`` (RoBERTa, GPT-2).
transformers builds a fast tokenizer from any of them, but for a
SentencePiece model it needs the ``sentencepiece`` and ``protobuf``
packages, and without them it says "``tiktoken`` is required", which sends
the user after the wrong package. So the folder is looked at first and the
real reason is given, naming the folder.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from core import hub
from core.errors import ModelPathError

# Keep in step with requirements.txt (a test checks).
SENTENCEPIECE = "sentencepiece==0.2.3"
PROTOBUF = "protobuf==7.36.2"
EXPECTED = "tokenizer.json, or spm.model (SentencePiece) / vocab.txt (WordPiece) / vocab.json + merges.txt (BPE)"
# Files transformers can build a tokenizer from (tiktoken and Mistral's tekken included, so they are not refused).
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tekken.json")


def sentencepiece_files(folder: Path) -> list[str]:
    """The SentencePiece models in ``folder`` (``spm.model``, ``spiece.model``, ...), tiktoken's excluded."""
    return sorted(p.name for p in folder.glob("*.model") if p.name != "tiktoken.model")


def _has_tokenizer_files(folder: Path) -> bool:
    return (any((folder / name).is_file() for name in _TOKENIZER_FILES) or any(folder.glob("*.model"))
            or any(folder.glob("*.tiktoken")))


def sentencepiece_problem() -> str | None:
    """Why transformers could not read an spm.model here, as what to do; None when it can.

    It reads one through sentencepiece's protobuf module, whose generated code refuses an older protobuf
    runtime (sentencepiece 0.2.3 needs protobuf >= 7.36.1), so that module is imported, not just the package.
    """
    missing = []
    for module, pin in (("sentencepiece", SENTENCEPIECE), ("google.protobuf", PROTOBUF)):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(pin)
    if missing:
        names = " and ".join(pin.split("==")[0] for pin in missing)
        are = "packages are" if len(missing) > 1 else "package is"
        return f"the {names} {are} not installed: pip install {' '.join(missing)}"
    try:
        importlib.import_module("sentencepiece.sentencepiece_model_pb2")
    except Exception as exc:  # noqa: BLE001 - protobuf's VersionError, or an ImportError from an old protobuf
        from google.protobuf import __version__ as protobuf_version

        return (f"the installed sentencepiece cannot read it with protobuf {protobuf_version} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}): pip install {SENTENCEPIECE} {PROTOBUF}")
    return None


def _sentencepiece_message(name: str, spm_file: str | None, problem: str) -> str:
    whose = f"this folder's tokenizer is a SentencePiece model ({spm_file})" if spm_file else \
        "this model's tokenizer is a SentencePiece model"
    return f"{name}: {whose} and {problem} (then restart the dashboard and its worker)."


def check_tokenizer_folder(name: str, folder: Path) -> None:
    """Refuse a local model folder whose tokenizer cannot be built here, saying what is missing and what to do."""
    if not _has_tokenizer_files(folder):
        raise ModelPathError(f"{name}: no tokenizer files in this folder: expected {EXPECTED}. Copy the tokenizer "
                             "files of the checkpoint this model came from into it (save_pretrained of its "
                             "tokenizer writes them).")
    spm_files = sentencepiece_files(folder)
    if spm_files and not (folder / "tokenizer.json").is_file():
        problem = sentencepiece_problem()
        if problem:
            raise ModelPathError(_sentencepiece_message(name, spm_files[0], problem))
        _check_sentencepiece_model(name, folder / spm_files[0])


def _check_sentencepiece_model(name: str, path: Path) -> None:
    """Read the model as transformers will: if that fails it silently tries tiktoken instead, whose error
    (or, with tiktoken installed, its garbled result) would hide that the file itself is damaged."""
    from google.protobuf.message import DecodeError
    from sentencepiece import sentencepiece_model_pb2

    model = sentencepiece_model_pb2.ModelProto()
    try:
        model.ParseFromString(path.read_bytes())
    except (DecodeError, OSError) as exc:
        raise ModelPathError(_damaged(name, path.name, f" ({type(exc).__name__}: {exc})")) from None
    if not model.pieces:
        raise ModelPathError(_damaged(name, path.name, " (it holds no vocabulary)"))


def _damaged(name: str, spm_file: str, why: str = "") -> str:
    return (f"{name}: the tokenizer could not be loaded: {spm_file} is not a SentencePiece model that "
            f"sentencepiece can read{why}; it is damaged or incomplete. Copy it again from the checkpoint "
            "this model came from.")


def load_tokenizer(name: str, source: str):
    """The tokenizer of ``source`` (a local folder or a hub id); ``name`` is what the user typed, for messages."""
    from transformers import AutoTokenizer

    folder = Path(source)
    local = folder.is_dir()
    if local:
        check_tokenizer_folder(name, folder)
    else:  # a hub id: asked once, at once, rather than after transformers' half minute of retries
        hub.check(source)
    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError, ImportError) as exc:
        raise ModelPathError(_explain(name, folder if local else None, exc)) from None


def _explain(name: str, folder: Path | None, exc: Exception) -> str:
    """transformers' reason, unless it is its tiktoken fallback for a SentencePiece model, which misleads."""
    text = str(exc)
    # a hub id the hub did not give (transformers says so with an OSError)
    hub_reason = hub.explain(name, exc) if folder is None and isinstance(exc, OSError) else None
    if hub_reason:
        return hub_reason
    spm_files = sentencepiece_files(folder) if folder is not None else []
    if "tiktoken" not in text or (folder is not None and not spm_files):
        return f"{name}: the tokenizer could not be loaded: {text}"
    problem = sentencepiece_problem()
    if problem:  # a hub checkpoint (a local folder was checked before loading)
        return _sentencepiece_message(name, None, problem)
    return _damaged(name, spm_files[0] if spm_files else "its SentencePiece model")
