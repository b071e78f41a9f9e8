"""Training, evaluation and prediction end to end (synthetic data; real data when present)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from boneage import _native as native
from shared_data import RSNA

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    """One short demo-style run shared by the tests below (small model, 64 px)."""
    from boneage.training.loop import TrainConfig, train

    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(
        model="small_cnn", data=str(out / "data"), out=str(out), demo=True,
        preprocessing={"image_size": 64}, batch_size=32, epochs=8, lr=3e-3, patience=8, verbose=0,
        demo_sizes={"train": 1200, "val": 200, "test": 200}, test_split="test",
    )  # fmt: skip
    metrics = train(cfg)
    # Asked for: the held-out phantoms, not the validation split that chose the best epoch.
    assert metrics["split"] == "test" and metrics["n"] == 200
    return out


def test_demo_learns_well_below_the_mean_baseline(demo_run):
    m = json.loads((demo_run / "metrics.json").read_text())
    for key in ("mae", "rmse", "r2", "n", "baseline_mae"):
        assert key in m
    assert m["mae"] <= m["baseline_mae"] / 3, m
    assert m["r2"] > 0.7


def test_run_directory_is_complete(demo_run):
    for name in ("config.json", "best.keras", "last.keras", "history.csv", "metrics.json",
                 "lr_schedule.png", "history.png"):  # fmt: skip
        assert (demo_run / name).exists(), name
    assert any((demo_run / "logs").rglob("*"))
    cfg = json.loads((demo_run / "config.json").read_text())
    assert cfg["lr"] == 3e-3 and cfg["huber_delta"] == 15.0 and cfg["weight_decay"] == 0.01
    # The data's preprocessing travels whole, the resize filter included, as the model's does.
    from boneage import modelio

    assert (
        cfg["preprocessing"] == modelio.read_meta(demo_run / "best.keras").preprocessing.to_dict()
    )
    assert cfg["preprocessing"]["interpolation"] == "area"


def test_saved_model_carries_preprocessing_and_recipe(demo_run):
    from boneage import modelio

    _model, meta = modelio.load(demo_run / "best.keras")
    assert meta.preprocessing.image_size == 64 and meta.preprocessing.clip_limit == 2.0
    assert meta.preprocessing.mode == "squash" and meta.preprocessing.localiser == "none"
    assert meta.extra["trained_on"] == "data"  # the folder's name, not the machine's path
    assert meta.model_name == "small_cnn"
    import keras

    full = keras.saving.load_model(demo_run / "last.keras")  # compiled, no custom_objects
    opt = full.optimizer
    assert isinstance(opt, keras.optimizers.AdamW)
    assert float(opt.weight_decay) == pytest.approx(0.01)
    assert isinstance(full.loss, keras.losses.Huber)
    assert full.loss.get_config()["delta"] == 15.0  # survives saving (Keras's own Huber loses it)


def test_resume_continues_from_the_saved_epoch(demo_run, tmp_path, capsys):
    """The CLI's --resume keeps the run's settings but this launch's schedule length and
    time budget, and the run's command records both launches."""
    import shutil

    from boneage.train import main
    from boneage.training.plan import saved_epochs

    run = tmp_path / "resumed"
    shutil.copytree(demo_run, run)
    state = json.loads((run / "state.json").read_text())
    before = json.loads((run / "config.json").read_text())
    assert saved_epochs(run, resume=True) == before["epochs"]  # no --epochs: the run's own
    assert saved_epochs(run, resume=False) is None
    extra = ["--epochs", str(state["epoch"] + 1), "--max-minutes", "30", "--quiet"]
    assert main(["--out", str(run), "--resume", *extra]) == 0
    assert "synthetic hand phantoms" not in capsys.readouterr().out  # not the demo's banner
    assert json.loads((run / "state.json").read_text())["epoch"] == state["epoch"] + 1
    rows = (run / "history.csv").read_text().strip().splitlines()
    assert rows[-1].split(",")[0] == str(state["epoch"])  # epochs are 0-based in the log
    after = json.loads((run / "config.json").read_text())
    assert after["epochs"] == state["epoch"] + 1 and after["max_minutes"] == 30
    assert after["lr"] == before["lr"] and after["model"] == before["model"]
    assert after["command"].startswith(before["command"] + " && python -m boneage.train")
    assert after["command"].endswith(" ".join(["--resume", *extra]))


def test_resume_restores_the_optimizer_state(demo_run):
    """A resumed run's Adam moments are those saved in last.keras, not zeros; an optimizer
    of another layout is left as it is rather than filled with the wrong arrays."""
    import io
    import zipfile

    import h5py
    import keras
    import numpy as np

    from boneage import modelio
    from boneage.training.loop import TrainConfig, compile_model

    with zipfile.ZipFile(demo_run / "last.keras") as zf:
        with h5py.File(io.BytesIO(zf.read(modelio.WEIGHTS_NAME)), "r") as f:
            group = f["optimizer/vars"]
            saved = [group[str(i)][()] for i in range(len(group))]
    cfg = TrainConfig.from_dict(json.loads((demo_run / "config.json").read_text()))
    model, _ = modelio.load(demo_run / "last.keras")
    compile_model(model, cfg, total_steps=100)
    assert modelio.restore_optimizer(model, demo_run / "last.keras")
    restored = [np.asarray(v) for v in model.optimizer.variables]
    assert len(restored) == len(saved)
    moments = [a for a in saved if a.ndim > 0]
    assert moments and any(np.abs(a).max() > 0 for a in moments)  # trained, not fresh zeros
    for got, want in zip(restored, saved, strict=True):
        np.testing.assert_array_equal(got, want)

    other, _ = modelio.load(demo_run / "last.keras")
    other.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")  # no moments at all
    assert not modelio.restore_optimizer(other, demo_run / "last.keras")
    assert all(np.abs(np.asarray(v)).max() == 0 for v in other.optimizer.variables
               if np.asarray(v).ndim > 0)  # fmt: skip


def test_init_from_fine_tunes_and_refuses_a_mismatch(demo_run, tmp_path):
    """--init-from starts from the model's weights; a model of other data is refused."""
    from boneage import modelio
    from boneage.settings import Preprocessing
    from boneage.training.loop import TrainConfig, train

    cfg = json.loads((demo_run / "config.json").read_text())
    cfg.update(out=str(tmp_path / "tuned"), epochs=1, demo=False, lr=1e-9, warmup=0.0,
               init_from=str(demo_run / "best.keras"))  # fmt: skip
    tuned = train(TrainConfig.from_dict(cfg))
    # A learning rate of ~0 keeps the weights: the tuned model is as good as the one it came
    # from, which a fresh model after one epoch is not.
    start = json.loads((demo_run / "metrics.json").read_text())
    assert tuned["mae"] == pytest.approx(start["mae"], abs=1.5)
    _m, meta = modelio.load(tmp_path / "tuned" / "best.keras")
    # The start is named by its run and file, with the command that trained it.
    start_meta = modelio.read_meta(demo_run / "best.keras")
    assert start_meta is not None
    assert meta.extra["init_from"] == {"model": f"{demo_run.name}/best.keras",
                                       "command": start_meta.extra["command"],
                                       "init_from": None}  # fmt: skip

    # The same model claiming another CLAHE clip limit no longer fits the data.
    model, meta = modelio.load(demo_run / "best.keras")
    start_clip = meta.preprocessing.clip_limit
    changed = {**meta.preprocessing.to_dict(), "clip_limit": 3.0}
    meta.preprocessing = Preprocessing.from_dict(changed)
    other = modelio.save(model, tmp_path / "other.keras", meta)
    cfg.update(out=str(tmp_path / "refused"), init_from=str(other))
    with pytest.raises(ValueError, match="preprocess the data as the model expects"):
        train(TrainConfig.from_dict(cfg))
    # The resize filter alone may differ: fine-tuning on the new data adapts the model, and
    # the tuned model records the data's filter, not the old one.
    lin = {**meta.preprocessing.to_dict(), "clip_limit": start_clip, "interpolation": "linear"}
    meta.preprocessing = Preprocessing.from_dict(lin)
    relabelled = modelio.save(model, tmp_path / "linear.keras", meta)
    cfg.update(out=str(tmp_path / "refiltered"), init_from=str(relabelled), test_split="holdout")
    # A split asked for that the data lack: reported on validation, and the result says so.
    assert train(TrainConfig.from_dict(cfg))["split"] == "val"
    _m, tuned_meta = modelio.load(tmp_path / "refiltered" / "best.keras")
    assert tuned_meta.preprocessing.interpolation == "area"
    cfg.update(init_from=str(demo_run / "best.keras"))
    cfg.update(model="resnet_compact", init_from=str(demo_run / "best.keras"))
    with pytest.raises(ValueError, match="pass --model small_cnn"):
        train(TrainConfig.from_dict(cfg))


def test_init_from_at_another_size_with_a_teacher(demo_run, tmp_path):
    """A 64 px model starts an 80 px run (its weights do not depend on the input size), with
    a teacher's predictions (written by evaluate) blended into the training targets."""
    from boneage import modelio
    from boneage.evaluate import main as evaluate_main
    from boneage.training.demo import make_synthetic
    from boneage.training.loop import TrainConfig, train

    cfg = json.loads((demo_run / "config.json").read_text())
    assert evaluate_main([str(demo_run), "--split", "train", "--bootstrap", "10",
                          "--out", str(tmp_path / "teacher")]) == 0  # fmt: skip
    predictions = tmp_path / "teacher" / "predictions.csv"
    assert len(predictions.read_text().splitlines()) == cfg["demo_sizes"]["train"] + 1
    bigger = tmp_path / "data80"
    make_synthetic(bigger, cfg["demo_sizes"], 80, cfg["seed"])
    cfg.update(out=str(tmp_path / "grown"), data=str(bigger), demo=False, preprocessing={},
               epochs=1, lr=1e-9, warmup=0.0, init_from=str(demo_run / "best.keras"),
               teacher=str(predictions), teacher_weight=0.5, test_split="test")  # fmt: skip
    grown = train(TrainConfig.from_dict(cfg))
    _m, meta = modelio.load(tmp_path / "grown" / "best.keras")
    assert meta.preprocessing.image_size == 80
    assert meta.extra["teacher"] == {"predictions": "teacher/predictions.csv", "weight": 0.5}
    # The weights came along: far better than the mean (a fresh network after one epoch at a
    # learning rate of 1e-9 is no better than its starting bias).
    assert grown["mae"] < grown["baseline_mae"] / 2


def test_init_from_refuses_an_ensemble(demo_run, tmp_path):
    """Fine-tuning an ensemble as one network would pull its members together: refused."""
    from boneage import modelio
    from boneage.models.ensemble import ensemble
    from boneage.training.loop import TrainConfig, train

    a, meta = modelio.load(demo_run / "best.keras")
    b, _ = modelio.load(demo_run / "best.keras")
    path = modelio.save(ensemble([a, b]), tmp_path / "ensemble.keras", meta)
    cfg = json.loads((demo_run / "config.json").read_text())
    cfg.update(out=str(tmp_path / "tuned"), epochs=1, demo=False, init_from=str(path))
    with pytest.raises(ValueError, match="is an ensemble of 2 models"):
        train(TrainConfig.from_dict(cfg))


def test_init_member_fine_tunes_one_network_of_an_ensemble(demo_run, tmp_path):
    """--init-member N starts from member N alone (the shipped average's networks can be
    trained further without their old runs) and records which member and its own command."""
    import numpy as np

    from boneage import modelio
    from boneage.models.ensemble import ensemble
    from boneage.training.loop import TrainConfig, train

    a, meta = modelio.load(demo_run / "best.keras")
    b, _ = modelio.load(demo_run / "best.keras")
    b.get_layer("bone_age").bias.assign(b.get_layer("bone_age").bias + 50.0)  # tell them apart
    meta.extra["members"] = [{"model_name": meta.model_name, "command": f"train {c}"}
                             for c in ("a", "b")]  # fmt: skip
    path = modelio.save(ensemble([a, b]), tmp_path / "ensemble.keras", meta)
    cfg = json.loads((demo_run / "config.json").read_text())
    cfg.update(out=str(tmp_path / "tuned"), epochs=1, demo=False, lr=1e-9, warmup=0.0,
               init_from=str(path), init_member=1)  # fmt: skip
    train(TrainConfig.from_dict(cfg))
    tuned, tuned_meta = modelio.load(tmp_path / "tuned" / "best.keras")
    assert tuned_meta.extra["init_from"] == {"model": f"{tmp_path.name}/ensemble.keras",
                                             "member": 1, "command": "train b",
                                             "init_from": None}  # fmt: skip
    # A learning rate of ~0 keeps member 1's weights: its +50-month head, not member 0's.
    shift = np.asarray(tuned.get_layer("bone_age").bias) - np.asarray(a.get_layer("bone_age").bias)
    np.testing.assert_allclose(shift, 50.0, atol=0.5)

    for member, message in ((2, "has members 0 to 1"), (-1, "has members 0 to 1")):
        cfg.update(out=str(tmp_path / f"bad{member}"), init_member=member)
        with pytest.raises(ValueError, match=message):
            train(TrainConfig.from_dict(cfg))
    cfg.update(out=str(tmp_path / "single"), init_from=str(demo_run / "best.keras"), init_member=0)
    with pytest.raises(ValueError, match="not an ensemble"):
        train(TrainConfig.from_dict(cfg))


def test_evaluate_cli_and_predict_agree(demo_run, tmp_path, capsys):
    from boneage.evaluate import main as evaluate_main
    from boneage.inference import Predictor
    from boneage.shards import read_split

    assert evaluate_main([str(demo_run), "--split", "test", "--json", "--bootstrap", "200",
                          "--out", str(tmp_path / "ev")]) == 0  # fmt: skip
    figures = json.loads(capsys.readouterr().out)
    assert figures["n"] == 200 and figures["mae"] > 0
    assert (tmp_path / "ev" / "report.md").exists()

    # The Predictor's preparation of a phantom's source PNG equals the record training and
    # evaluation read for it (the settings travel with the data), and its estimate is the
    # model's output on that record.
    from boneage.training import synthetic
    from boneage.training.demo import SPLITS

    images, male, _age, ids = read_split(demo_run / "data", "test")
    pred = Predictor(demo_run)
    assert pred.meta.preprocessing.mode == "squash"
    # The same count as the demo drew: a case's draw depends on how many are drawn.
    phantoms = synthetic.generate(len(ids), seed=0 * 10 + SPLITS["test"], size=64)
    import itertools

    import cv2

    for k, (case, source) in enumerate(itertools.islice(phantoms, 3)):
        assert ids[k] == f"test-{case.id}"
        png = tmp_path / f"case{k}.png"
        cv2.imwrite(str(png), source)
        prepared, localiser, _box = pred.prepare(png)
        assert localiser == "none"
        np.testing.assert_array_equal(prepared, images[k])
        from boneage.inference import predict_arrays

        direct, _ = predict_arrays(pred.model, images[k : k + 1], male[k : k + 1])
        via_file = pred.estimate(png, int(male[k]))
        assert via_file.months == pytest.approx(float(direct[0]), abs=1e-3)


def test_predict_cli_errors(demo_run, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    run = [sys.executable, "-m", "boneage.predict"]
    r = subprocess.run(
        [*run, str(bad), "--sex", "M", "--model", str(demo_run)], capture_output=True, text=True
    )
    assert r.returncode != 0 and "bad.png" in r.stderr
    r = subprocess.run(
        [*run, str(bad), "--sex", "X", "--model", str(demo_run)], capture_output=True, text=True
    )
    assert r.returncode == 2 and "sex" in r.stderr
    r = subprocess.run([*run, str(bad), "--sex", "F", "--model", str(tmp_path / "none.keras")],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and "not found" in r.stderr


def test_evaluate_metrics_equal_numpy():
    from boneage.evaluation import metrics

    y = np.array([10.0, 50.0, 100.0, 200.0])
    p = np.array([12.0, 45.0, 110.0, 190.0])
    m = metrics.regression_metrics(y, p)
    assert m["mae"] == pytest.approx(np.mean(np.abs(y - p)))
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((y - p) ** 2)))
    assert m["r2"] == pytest.approx(1 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2))


def test_two_logical_devices_train_data_parallel(tmp_path):
    """MirroredStrategy over two logical CPU devices: the multi-GPU path, tested on a CPU."""
    code = (
        "from boneage.training.distribution import split_cpu_for_tests, scope\n"
        "split_cpu_for_tests()\n"
        "from boneage.training.loop import TrainConfig, train\n"
        f"cfg = TrainConfig(model='small_cnn', data=r'{tmp_path / 'd'}', out=r'{tmp_path}',\n"
        "    demo=True,\n"
        "    preprocessing={'image_size': 32}, batch_size=16, epochs=1, verbose=0,\n"
        "    demo_sizes={'train': 64, 'val': 32, 'test': 32})\n"
        "m = train(cfg)\n"
        "print('REPLICAS', m['replicas'], m['distribution'])\n"
    )
    env = {**__import__("os").environ, "BONEAGE_CPU_DEVICES": "2"}
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "REPLICAS 2.0 tf.distribute.MirroredStrategy" in r.stdout or "REPLICAS 2 " in r.stdout


@pytest.mark.skipif(not (RSNA / "train100").is_dir(), reason="real RSNA data not found")
def test_short_run_on_real_images_beats_the_mean(tmp_path):
    from boneage.ingest.bulk import Options, run
    from boneage.settings import Preprocessing
    from boneage.training.loop import TrainConfig, train

    src = tmp_path / "imgs"
    src.mkdir()
    for f in sorted((RSNA / "train100").glob("*.png"))[:700]:
        (src / f.name).write_bytes(f.read_bytes())
    data = tmp_path / "shards"
    s = run(Options(inputs=[str(src)], labels=[str(RSNA / "labels.csv")], out=str(data),
                    preprocessing=Preprocessing(image_size=64, localiser="none"),
                    split_by={"train": 0.8, "val": 0.2},
                    progress=False, sheet=0))  # fmt: skip
    assert s.per_split["train"] > 500
    cfg = TrainConfig(model="small_cnn", data=str(data), out=str(tmp_path / "run"),
                      preprocessing={"image_size": 64},
                      batch_size=32, epochs=6, lr=3e-3, patience=6, verbose=0)  # fmt: skip
    m = train(cfg)
    # By default a run reports on validation: test figures printed after every run, unasked,
    # invite choosing models by them.
    assert m["split"] == "val"
    assert m["mae"] < m["baseline_mae"], m
    assert native.count_records([str(p) for p in data.glob("val-*")]) == m["n"]


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["--noise", "-0.1"], "--noise must be in"),
        (["--no-augment", "--noise", "0.02"], "--noise is part of the augmentation"),
    ],
)
def test_noise_flag_refuses_what_it_cannot_do(argv, why, capsys):
    """A negative noise, or noise with augmentation off (where it would be silently
    dropped), is a usage error before anything loads."""
    from boneage.train import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert why in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--epochs", "0"], "--epochs"),
        (["--epochs", "-1"], "--epochs"),
        (["--batch-size", "0"], "--batch-size"),
        (["--batch-size", "many"], "--batch-size"),
        (["--steps-per-epoch", "0"], "--steps-per-epoch"),
        (["--image-size", "-64"], "--image-size"),
    ],
)
def test_counts_below_one_are_usage_errors(argv, option, capsys):
    """Issue 31, item 11: ``--epochs 0`` trained the demo's 8 epochs, ``--epochs -1`` failed
    deep in the schedule ("total_steps ... got -10") and ``--batch-size 0`` in a
    ZeroDivisionError; each is now exit 2 naming the option, before anything loads."""
    from boneage.train import build_parser, main

    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: must be a positive integer, got {argv[1]!r}" in err
    assert option in build_parser().format_help()  # the validator keeps the option documented


def test_the_run_folder_names_the_model_only_when_asked(tmp_path, monkeypatch):
    """README promises ``runs/<time>-run/`` for a plain ``python -m boneage.train`` (CI reads
    it there); a model the user named goes into the name."""
    from boneage.training.plan import Request, plan

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BONEAGE_DATA", raising=False)
    assert Path(plan(Request()).out).name.endswith("-run")
    assert Path(plan(Request(model="densenet121")).out).name.endswith("-densenet121")
