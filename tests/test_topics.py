"""Batched inference and NLI topic tagging on the real demo models (no training: their heads are as built)."""

from __future__ import annotations

import numpy as np
import pytest

MIXED = [
    "hi",
    "I can't log in to my account, my password stopped working and the website locked me out. " * 12,
    "move my old employer plan into this one",
    "",
    "why was I charged this fee? I was billed twice this quarter and the maintenance fee seems too high.",
    "ok",
    "I want to change my beneficiary after my divorce, and update my mailing address too.",
]


@pytest.fixture(scope="module", params=["demo-bert-tiny", "demo-deberta-v2-tiny"])
def loaded(request, demo_models):
    """A demo model and its tokenizer, loaded as a user's checkpoint would be."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = demo_models[request.param]
    return AutoModelForSequenceClassification.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def _forward(model, tokenizer, texts, pairs=None):
    """The HF model's own forward over all rows at once (one padded batch, in the order given)."""
    import torch

    batch = tokenizer(texts, pairs, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.inference_mode():
        return model(**batch).logits.softmax(dim=-1).numpy()


# -- infer.predict_proba ----------------------------------------------------------------------------------------
def test_predict_proba_matches_the_models_own_forward_and_keeps_row_order(loaded):
    from core.scoring.infer import predict_proba

    model, tokenizer = loaded
    pairs = [f"This call is about {t}." for t in ("fees", "rollover", "loan request", "fees", "tax forms",
                                                    "withdrawal", "address change")]
    seen = []
    got = predict_proba(model, tokenizer, MIXED, pairs, batch_size=3, device="cpu",
                        on_progress=lambda done, total: seen.append((done, total)))
    want = _forward(model, tokenizer, MIXED, pairs)
    assert got.shape == (len(MIXED), model.config.num_labels)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert seen == [(3, 7), (6, 7), (7, 7)]
    # the rows differ, so a mix-up of the order would show: each row equals its own forward alone
    for i in (0, 1, 4):
        np.testing.assert_allclose(got[i], _forward(model, tokenizer, [MIXED[i]], [pairs[i]])[0], atol=1e-5)
    assert len({tuple(np.round(row, 7)) for row in got}) > 1


def test_predict_proba_single_texts_batch_one_and_empty(loaded):
    from core.scoring.infer import predict_proba

    model, tokenizer = loaded
    np.testing.assert_allclose(predict_proba(model, tokenizer, MIXED, batch_size=1),
                               _forward(model, tokenizer, MIXED), atol=1e-5)
    assert predict_proba(model, tokenizer, []).shape == (0, model.config.num_labels)
    with pytest.raises(ValueError, match="7 texts but 2 pairs"):
        predict_proba(model, tokenizer, MIXED, ["a", "b"])


def test_length_limit_caps_at_what_the_model_takes(loaded):
    from core.scoring.infer import length_limit

    model, tokenizer = loaded
    assert length_limit(model, tokenizer, 256) == 128  # the demo models take 128 tokens
    assert length_limit(model, tokenizer, 64) == 64
