import math
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ltchm.evaluation.tracking import KIND_TAG, log_comparison_run, log_to_model_runs, rd_metrics

RD = [
    {"codec": "jpeg2000", "setting": 40, "images": 2, "bpp": 0.6, "psnr": 33.0, "ms_ssim": 0.97,
     "ms_ssim_db": 15.2, "lpips": math.nan, "vifp": 0.5},
    {"codec": "jpeg2000", "setting": 160, "images": 2, "bpp": 0.15, "psnr": 27.0,
     "ms_ssim": 0.85, "ms_ssim_db": 8.2, "lpips": math.nan, "vifp": 0.2},
    {"codec": "ltchm", "setting": "runs/l512.ckpt", "images": 2, "bpp": 0.4, "psnr": 34.0,
     "ms_ssim": 0.98, "ms_ssim_db": 17.0, "lpips": 0.1, "vifp": 0.6},
]  # fmt: skip
BD = [
    {"codec": "jpeg2000", "bd_rate_psnr": 0.0, "bd_psnr": 0.0, "bd_rate_ms_ssim_db": 0.0,
     "bd_ms_ssim_db": 0.0},
    {"codec": "ltchm", "bd_rate_psnr": -30.0, "bd_psnr": 1.5, "bd_rate_ms_ssim_db": math.nan,
     "bd_ms_ssim_db": math.nan},
]  # fmt: skip


def test_rd_metrics_steps_follow_bpp() -> None:
    m = {(k, s): v for k, v, s in rd_metrics(RD, BD)}
    assert m[("rd.jpeg2000.bpp", 0)] == 0.15 and m[("rd.jpeg2000.bpp", 1)] == 0.6
    assert ("rd.jpeg2000.lpips", 0) not in m  # nan is left out, not logged
    assert m[("bd_rate_psnr.ltchm", 0)] == -30.0 and ("bd_rate_ms_ssim_db.ltchm", 0) not in m


def test_comparison_run_and_model_runs(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    out = tmp_path / "out"
    out.mkdir()
    (out / "bd.md").write_text("| table |\n")
    (out / "rd_psnr.svg").write_text("<svg/>")
    client = MlflowClient(uri)
    exp = client.create_experiment("ltchm-test", artifact_location=str(tmp_path / "artifacts"))
    trained = client.create_run(exp, run_name="lambda_512").info.run_id
    run_id = log_comparison_run(
        uri, "ltchm-test", out, {"codecs": "jpeg2000,ltchm", "images": 2}, RD, BD
    )
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags[KIND_TAG] == "evaluation-comparison"
    assert run.data.params == {"codecs": "jpeg2000,ltchm", "images": "2"}
    assert run.data.metrics["bd_rate_psnr.ltchm"] == -30.0
    history = client.get_metric_history(run_id, "rd.jpeg2000.psnr")
    assert sorted((h.step, h.value) for h in history) == [(0, 27.0), (1, 33.0)]
    assert {a.path for a in client.list_artifacts(run_id)} == {"bd.md", "rd_psnr.svg"}

    logged = log_to_model_runs(uri, RD, {("ltchm", "runs/l512.ckpt"): trained}, run_id)
    assert logged == [trained]
    model_run = client.get_run(trained)
    assert model_run.data.metrics["eval.psnr"] == 34.0
    assert model_run.data.metrics["eval.bpp"] == pytest.approx(0.4)
    assert model_run.data.tags["ltchm.evaluation.comparison_run"] == run_id
