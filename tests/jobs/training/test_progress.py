"""The driver's progress line of a rate point, from the latest metrics of its run."""

from __future__ import annotations

import io

from jobs.training.progress import ProgressWatcher, RatePoint, progress_line


def test_progress_line() -> None:
    point = RatePoint(512.0, "r1", 6000)
    assert progress_line(point, {}) == "λ 512: starting (workers, data, DeepSpeed)"
    line = progress_line(
        point,
        {"step": 1200, "loss": 0.8312, "bpp": 0.3104, "val_psnr": 23.114, "seconds_per_step": 0.6},
    )
    assert line == (
        "λ 512: step 1200/6000 | loss 0.8312 | bpp 0.310 | val PSNR 23.11 dB | 0.60 s/step"
        " | ETA 48 min"
    )
    done = progress_line(point, {"step": 6000, "loss": 0.5, "seconds_per_step": 0.6})
    assert done.endswith("0.60 s/step")  # no ETA at the end
    compiling = RatePoint(512.0, "r1", 6000, compiling=True)
    assert progress_line(compiling, {}) == (
        "λ 512: starting (workers, data, DeepSpeed, compilation: minutes)"
    )
    assert progress_line(compiling, {"step": 1}) == "λ 512: step 1/6000"


def test_lines_in_a_log_only_when_they_change(tmp_path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("x", artifact_location=(tmp_path / "a").as_uri())
    rid = client.create_run(exp).info.run_id
    out = io.StringIO()  # not a terminal: one line per change
    watcher = ProgressWatcher(uri, [RatePoint(128.0, rid, 10)], interval=3600, stream=out)
    watcher.poll()
    watcher.poll()
    client.log_metric(rid, "step", 4, step=4)
    client.log_metric(rid, "loss", 1.5, step=4)
    with watcher:  # the final poll on exit
        pass
    assert out.getvalue().splitlines() == [
        "λ 128: starting (workers, data, DeepSpeed)",
        "λ 128: step 4/10 | loss 1.5",
    ]
