"""Reading on a CPU with native bf16 (AVX512-BF16 / AMX) runs under bf16 autocast: the same answers as fp32 to
about a hundredth, in half the time for a real encoder (bench/bench_long_calls.py). The rest of the suite reads in
fp32 (conftest sets TUNEBOARD_CPU_BF16=off) so it can compare with a plain forward pass exactly."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import TuneboardError
from core.models import infer


def test_the_setting_is_read_and_a_wrong_value_says_what_to_use(monkeypatch):
    monkeypatch.setenv(infer.CPU_BF16, "off")
    assert infer.cpu_bf16() is False
    monkeypatch.setenv(infer.CPU_BF16, "ON")
    assert infer.cpu_bf16() is True
    monkeypatch.setenv(infer.CPU_BF16, "auto")
    assert infer.cpu_bf16() is infer._native_cpu_bf16()
    monkeypatch.setenv(infer.CPU_BF16, "fast")
    with pytest.raises(TuneboardError, match="TUNEBOARD_CPU_BF16='fast' is not a setting: use auto, on or off"):
        infer.cpu_bf16()


@pytest.mark.skipif(not infer._native_cpu_bf16(), reason="this CPU has no native bf16 (AVX512-BF16 / AMX)")
def test_bf16_reading_gives_the_fp32_answers_to_a_hundredth(demo_models, monkeypatch):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from core.demo import make_examples

    path = demo_models["demo-deberta-v2-tiny"]
    model = AutoModelForSequenceClassification.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    rows = make_examples(64, seed=5)
    premises, hypotheses = [r["premise"] for r in rows], [r["hypothesis"] for r in rows]
    monkeypatch.setenv(infer.CPU_BF16, "off")
    fp32 = infer.predict_proba(model, tokenizer, premises, hypotheses, device="cpu")
    monkeypatch.setenv(infer.CPU_BF16, "on")
    bf16 = infer.predict_proba(model, tokenizer, premises, hypotheses, device="cpu")
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    assert np.allclose(bf16.sum(axis=1), 1.0, atol=1e-5)
    difference = np.abs(bf16 - fp32).max()
    assert 0 < difference < 0.02  # bf16 did run (not bit-equal), and agrees to about a hundredth
