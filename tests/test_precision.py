"""bf16: chosen from the CPU's instructions, recorded in the run, checked against fp32."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import yaml
from conftest import assert_one_line_error, run_cli, tiny_config

from sentitune.errors import SentituneError
from sentitune.hardware import BF16_MIN_AGREEMENT, cpu_bf16_flags, resolve_precision
from sentitune.inference.classifier import Classifier
from sentitune.run import Run
from sentitune.training import train


@pytest.mark.parametrize(("flags", "chosen"), [
    (("amx_bf16", "avx512_bf16"), "bf16"),
    (("avx512_bf16",), "bf16"),
    ((), "fp32"),
])
def test_auto_picks_bf16_only_on_cpus_with_bf16_instructions(flags, chosen):
    precision = resolve_precision("auto", cuda=False, cpu_flags=flags)
    assert precision.chosen == chosen and precision.device == "cpu"
    assert precision.trainer_flags() == ({} if chosen == "fp32" else {"bf16": True})
    assert (", ".join(flags) or "none") in precision.reason


def test_explicit_settings_win_and_fp16_needs_a_gpu():
    assert resolve_precision("fp32", cuda=False, cpu_flags=("amx_bf16",)).chosen == "fp32"
    assert resolve_precision("bf16", cuda=False, cpu_flags=()).chosen == "bf16"
    with pytest.raises(SentituneError, match="fp16 needs a GPU"):
        resolve_precision("fp16", cuda=False, cpu_flags=("amx_bf16",))


def test_fp16_on_cpu_is_one_line_before_any_data_loads(capsys, tmp_path, tiny_bert):
    code, _, err = run_cli(capsys, "train", "--data", str(tmp_path / "absent.csv"),
                           "--model", str(tiny_bert), "--precision", "fp16",
                           "--output", str(tmp_path / "run"))
    assert_one_line_error(code, err, "fp16 needs a GPU")
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory, tiny_bert, sentiment_csv):
    out = tmp_path_factory.mktemp("bf16") / "run"
    train(tiny_config(tiny_bert, sentiment_csv, epochs=3.0, precision="bf16"), out,
          progress=False)
    return out


def test_the_run_records_what_was_detected_and_chosen(bf16_run):
    saved = yaml.safe_load((bf16_run / "config.yaml").read_text())
    assert saved["training"]["precision"] == "bf16"
    assert saved["precision"]["chosen"] == "bf16" and saved["precision"]["device"] == "cpu"
    assert saved["precision"]["requested"] == "bf16"
    assert "CPU bf16 instructions" in saved["precision"]["reason"]
    # Master weights stay fp32 under autocast: the saved model is a plain fp32 model.
    from safetensors import safe_open

    with safe_open(bf16_run / "model" / "model.safetensors", "pt") as handle:
        assert {str(handle.get_tensor(k).dtype) for k in handle.keys()} == {"torch.float32"}  # noqa: SIM118
    metrics = json.loads((bf16_run / "metrics.json").read_text())
    assert metrics["validation"]["accuracy"] >= 0.75  # bf16 training still learns the task


def test_auto_is_recorded_as_this_machine_resolves_it(tiny_run_dir):
    saved = yaml.safe_load((tiny_run_dir / "config.yaml").read_text())
    assert saved["training"]["precision"] == "auto"
    assert saved["precision"]["chosen"] == ("bf16" if cpu_bf16_flags() else "fp32")


@pytest.mark.skipif(not cpu_bf16_flags(), reason="this CPU has no bf16 instructions")
def test_bf16_agreement_is_measured_at_training_and_matches_the_backend(bf16_run):
    measured = json.loads((bf16_run / "metrics.json").read_text())["bf16_agreement"]
    run = Run.open(bf16_run)
    texts = list(run.rebuilt_splits().validation["text"])
    assert measured["n"] == len(texts)
    fp32 = Classifier.from_pretrained(bf16_run).predict_proba(texts)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a well-agreeing run on a bf16 CPU loads silently
        bf16_clf = Classifier.from_pretrained(bf16_run, backend="torch-bf16")
    bf16 = bf16_clf.predict_proba(texts)
    assert bf16_clf.info()["backend"] == "torch-bf16"
    assert not np.array_equal(fp32, bf16)  # it really ran in bf16
    same = (fp32.argmax(1) == bf16.argmax(1)).mean()
    assert same == pytest.approx(measured["label_agreement"], abs=2 / len(texts))
    assert np.abs(fp32 - bf16).max() < 0.05
    assert abs(measured["ece_bf16"] - measured["ece_fp32"]) < 0.05


def test_low_agreement_warns_when_the_backend_loads(tmp_path, bf16_run):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(bf16_run, copy)
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics["bf16_agreement"] = {"label_agreement": BF16_MIN_AGREEMENT - 0.1, "n": 40,
                                 "max_prob_diff": 0.3}
    (copy / "metrics.json").write_text(json.dumps(metrics))
    with pytest.warns(UserWarning, match=r"only 89\.5% of 40 validation texts"):
        Classifier.from_pretrained(copy, backend="torch-bf16")
    del metrics["bf16_agreement"]
    (copy / "metrics.json").write_text(json.dumps(metrics))
    with pytest.warns(UserWarning, match="no bf16 agreement measurement"):
        Classifier.from_pretrained(copy, backend="torch-bf16")


def test_predict_cli_takes_the_bf16_backend(capsys, bf16_run):
    code, out, _ = run_cli(capsys, "predict", str(bf16_run), "--backend", "torch-bf16",
                           "a wonderful film", "an awful film")
    assert code == 0
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert [row["label"] for row in rows] == [
        row["label"] for row in Classifier.from_pretrained(bf16_run).predict(
            ["a wonderful film", "an awful film"])]
