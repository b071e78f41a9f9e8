"""Make a run's best model the package's default (the library behind ``boneage shipping``).

For maintainers; the last step of training, so it lives beside it. Two choices are made on
the run's *validation* split (never on test data):

- whether to re-estimate the batch-norm statistics on unaugmented training images ("precise
  BN"): training keeps running averages of *augmented* batches taken while the weights were
  still moving, while the model is used on plain images with fixed weights;
- how many test-time augmentation copies to average.

The chosen TTA count is recorded in the model file next to the preprocessing; the optimizer
state is dropped (a shipped model only predicts, and the file must stay small enough for the
wheel); the model is written to ``boneage/shipped/``, replacing the previous model there.
Weights that would break the 30 MB limit as float32 are stored as float16 (Keras casts them
back when it loads the file); the rounded model is scored again before it ships.

Given several runs (``shipped`` names the model in the package now), each is prepared as above
and their average, an ensemble (:mod:`boneage.models.ensemble`), is scored too; the best of
the members and the ensemble on validation ships. Independently trained networks err partly
independently, so their average usually beats each; the comparison keeps an ensemble that
does not from doubling the cost of every prediction for nothing.

The provenance it keeps names the data folder and the training command as they were typed,
not absolute paths of the machine that trained it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from boneage.inference import SHIPPED, LoadedModel, interval
from boneage.inference.model import SHIPPED_PATTERN
from boneage.runs import RunDir

MAX_BYTES = 30 * 2**20
"""The repository may carry one large file, the shipped model, of at most 30 MB."""


def tta_predictions(
    loaded: LoadedModel, data: str, split: str, candidates: Sequence[int]
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """True ages and the predictions for each TTA count on ``split``.

    The TTA copies are seeded by each image, whatever the model, so an ensemble's TTA
    prediction is exactly the mean of its members': subsets of runs are scored from these.
    """
    from boneage.evaluation.predictions import predict_split

    preds, truth = {}, np.zeros(0)
    for n in candidates:
        pred = predict_split(loaded.with_tta(n), data, split)
        preds[int(n)], truth = pred.y_pred, pred.y_true
    return truth, preds


def _maes(truth: np.ndarray, preds: dict[int, np.ndarray]) -> dict[int, float]:
    return {n: float(np.mean(np.abs(p - truth))) for n, p in preds.items()}


def choose_tta(
    loaded: LoadedModel, data: str, split: str, candidates: Sequence[int]
) -> dict[int, float]:
    """Validation MAE for each TTA count (the caller picks the smallest)."""
    return _maes(*tta_predictions(loaded, data, split, candidates))


def recalibrate_bn(model: Any, data: str, split: str, batch_size: int = 128) -> int:
    """Sets every BatchNormalization layer's statistics to their average over the plain
    (unaugmented) images of ``split``; returns the number of batches used.

    Each batch is run in training mode with the layer's momentum set to ``k / (k + 1)`` for
    the k-th batch, which makes the stored statistics the exact mean of the batch statistics
    rather than an exponential average. No weight is trained.
    """
    import keras

    from boneage.inference import to_model_inputs
    from boneage.shards import read_split

    images, male, _age, _ids = read_split(data, split)
    order = np.random.default_rng(0).permutation(len(images))
    layers = [lay for lay in model.layers if isinstance(lay, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in layers]
    size = int(model.inputs[0].shape[1])
    k = 0
    try:
        for start in range(0, len(order) - batch_size + 1, batch_size):
            pick = order[start : start + batch_size]
            for layer in layers:
                layer.momentum = k / (k + 1.0)
            model(to_model_inputs(images[pick], male[pick], size), training=True)
            k += 1
    finally:
        for layer, m in zip(layers, saved, strict=True):
            layer.momentum = m
    return k


def _run_data(run: str) -> str:
    """The shard folder a run trained on (its ``config.json``)."""
    data = RunDir.of(run).data()
    if data is None:
        raise ValueError(f"{run}: no {RunDir.CONFIG} next to it to name its data; give --data")
    return data


def _resolve_run(run: str) -> str:
    """``shipped`` names the model now in the package (so it can join an ensemble)."""
    from boneage.inference import default_model

    return str(default_model()) if run == "shipped" else run


def _unpack_ensembles(runs: Sequence[str], scratch: Path) -> list[str]:
    """The runs, with each ensemble file replaced by its members (files in ``scratch``, each
    with its own provenance from the ensemble's metadata).

    Why: a new run given together with the shipped ensemble should join it as one more equal
    member; averaged against the ensemble as a whole it would weigh as much as all the old
    members together. Unpacked, every subset of old and new members is scored alike.
    """
    from boneage import modelio
    from boneage.models.ensemble import MEMBER_PREFIX, members

    out: list[str] = []
    for run in runs:
        meta = modelio.read_meta(modelio.resolve(run))
        if meta is None or not meta.extra.get("members"):
            out.append(run)
            continue
        model, _ = modelio.load(run)
        nets = members(model)
        if len(nets) != len(meta.extra["members"]):
            raise ValueError(
                f"{run}: {len(nets)} member networks but {len(meta.extra['members'])} "
                "members described in its metadata"
            )
        for i, net in enumerate(nets):
            path = scratch / f"{Path(run).stem}-{MEMBER_PREFIX}{i}.keras"
            out.append(str(modelio.save(net, path, meta.member(i))))
    return out


@dataclass
class Prepared:
    """One run's model ready to ship, with its validation predictions at each TTA count."""

    model: Any
    meta: Any
    choices: dict[str, Any]
    truth: np.ndarray
    preds: dict[int, np.ndarray]


def prepare(
    run: str, data: str, split: str, candidates: Sequence[int], train_split: str = "train"
) -> Prepared:
    """One run's model ready to ship: precise BN kept or not, TTA chosen, on ``split``.

    Its metadata gets ``tta`` and ``choices_on_validation``; the choices also hold
    ``best_mae``, the validation MAE at the chosen TTA.
    """
    loaded = LoadedModel.open(run)
    model, meta = loaded.model, loaded.meta
    truth, plain_preds = tta_predictions(loaded, data, split, candidates)
    recalibrated = LoadedModel.open(run)
    batches = recalibrate_bn(recalibrated.model, data, train_split)
    _, precise_preds = tta_predictions(recalibrated, data, split, candidates)
    plain, precise = _maes(truth, plain_preds), _maes(truth, precise_preds)
    use_precise = min(precise.values()) < min(plain.values())
    maes, preds = (precise, precise_preds) if use_precise else (plain, plain_preds)
    if use_precise:
        model = recalibrated.model
    best = _best_tta(maes)
    choices = {
        "split": split,
        "val_mae_by_tta_training_bn": plain,
        "val_mae_by_tta_precise_bn": precise,
        "precise_bn": {"used": use_precise, "batches": batches, "from_split": train_split},
    }
    meta.extra["tta"] = best
    meta.extra["choices_on_validation"] = choices
    return Prepared(model, meta, {**choices, "best_mae": maes[best]}, truth, preds)


def _half_storage(models: Sequence[Any]) -> bool | None:
    """How the weights of ``models`` fit the size limit: False when they fit as float32
    (4 bytes a weight, stored uncompressed), True when only float16 (2 bytes) fits, None
    when neither does. Half precision rounds each weight by at most 1 part in 2,048, which
    moves a prediction by hundredths of a month; the file is re-scored before it ships."""
    params = sum(int(m.count_params()) for m in models)
    if 4 * params <= MAX_BYTES:
        return False
    return True if 2 * params <= MAX_BYTES else None


def _best_tta(maes: dict[int, float]) -> int:
    """The fewest copies among those tied (to 0.01 month) for the lowest MAE."""
    return min(maes, key=lambda n: (round(maes[n], 2), n))


def _ensemble_meta(metas: Sequence[Any], runs: Sequence[str]) -> Any:
    """Metadata of an ensemble: the members' shared preprocessing, each member's provenance.

    Members must agree on every preprocessing setting: an ensemble is used with one
    preparation of the image, so a member trained on another would be fed wrong inputs.
    """
    from boneage import modelio

    first = metas[0].preprocessing
    for meta, run in zip(metas, runs, strict=True):
        if meta.preprocessing != first:
            raise ValueError(
                f"{run} was trained on {meta.preprocessing.to_dict()}, {runs[0]} on "
                f"{first.to_dict()}: ensemble members must share their preprocessing"
            )
        if meta.uncertainty:
            raise ValueError(f"{run} predicts an uncertainty; ensembles average ages only")
    names = sorted({m.model_name for m in metas})
    arch = names[0] if len(names) == 1 else "+".join(names)
    data = sorted({str(m.extra.get("trained_on", "")) for m in metas})
    return modelio.ModelMeta(
        preprocessing=first,
        model_name=f"ensemble{len(metas)}-{arch}",
        extra={
            "trained_on": data[0] if len(data) == 1 else "+".join(data),
            "command": "\n".join(str(m.extra.get("command", "")) for m in metas),
            "members": [{"model_name": m.model_name, **m.extra} for m in metas],
        },
    )


def _subset_key(combo: tuple[int, ...]) -> str:
    """How the shipping record names a subset of the runs: their positions, "0+2"."""
    return "+".join(map(str, combo))


def ship(
    run: str | Sequence[str],
    data: str | None,
    split: str,
    candidates: Sequence[int],
    train_split: str = "train",
    calibrate: bool = True,
) -> dict[str, Any]:
    """Ships one run's model, or the best on ``split`` of several runs and their averages.

    With several runs each is prepared on its own (:func:`prepare`), then every subset of two
    or more is scored as an ensemble (:func:`boneage.models.ensemble.ensemble`) at every TTA
    count, from the members' cached predictions; whichever single run or subset has the
    lowest validation MAE ships, and every figure is recorded. ``data`` defaults to the
    first run's; all are scored on that one split, so the runs must have held out the same
    validation cases. An ensemble among the runs (``shipped`` may be one) takes part as its
    members, each on its own (:func:`_unpack_ensembles`). With ``calibrate``, the chosen
    model gets the straight-line correction of its age fitted on ``split`` when
    cross-validation on ``split`` says it helps (:func:`boneage.models.calibration.study`);
    the study is recorded either way.
    """
    import tempfile

    runs = [_resolve_run(r) for r in ([run] if isinstance(run, str) else run)]
    if not runs:
        raise ValueError("give at least one run")
    data = data or _run_data(runs[0])
    with tempfile.TemporaryDirectory(prefix="boneage-members-") as scratch:
        runs = _unpack_ensembles(runs, Path(scratch))
        prepared = [prepare(r, data, split, candidates, train_split) for r in runs]
    if len(prepared) == 1 and _half_storage([prepared[0].model]) is False and not calibrate:
        only = prepared[0]  # fits as it is: nothing to choose
        tta = only.meta.tta
        only.meta.extra["interval"] = interval.fit(only.truth, only.preds[tta]).to_dict()
        only.meta.extra["validation"] = _by_band(only.truth, only.preds[tta], split)
        _fit_gate(only.model, only.meta, data, split)
        return _write(only.model, only.meta)
    if len(prepared) > 6:
        raise ValueError(f"{len(prepared)} runs: at most 6 (every subset is scored)")
    _ensemble_meta([p.meta for p in prepared], runs)  # refuse unfit members before scoring
    truth = prepared[0].truth
    scored: dict[tuple[int, ...], dict[int, float]] = {}
    too_big, halved = [], []
    for k in range(1, len(prepared) + 1):
        for combo in itertools.combinations(range(len(prepared)), k):
            half = _half_storage([prepared[i].model for i in combo])
            if half is None:
                too_big.append(_subset_key(combo))  # could not ship: not scored
                continue
            if half:
                halved.append(_subset_key(combo))
            preds = {n: np.mean([prepared[i].preds[n] for i in combo], axis=0) for n in candidates}
            scored[combo] = _maes(truth, preds)
    if not scored:
        raise ValueError(
            f"no run or average of runs fits {MAX_BYTES / 2**20:.0f} MiB, even with float16 "
            "weights: a smaller network is needed to ship"
        )
    chosen = min(scored, key=lambda c: (round(min(scored[c].values()), 2), len(c)))
    record = {
        "split": split,
        "members": [
            {"run": Path(r).name, **p.choices} for r, p in zip(runs, prepared, strict=True)
        ],
        "val_mae_by_subset_and_tta": {_subset_key(c): m for c, m in scored.items()},
        "chosen": [Path(runs[i]).name for i in chosen],
        "over_size_limit": too_big,
        "float16_to_fit": halved,
    }
    half = bool(_half_storage([prepared[i].model for i in chosen]))  # as when it was scored
    tta = _best_tta(scored[chosen])
    promised = scored[chosen][tta]
    if len(chosen) == 1:  # no average beat this run on its own: ship it as it is
        model, meta = prepared[chosen[0]].model, prepared[chosen[0]].meta
        meta.extra["choices_on_validation"]["ensembles"] = record
    else:
        from boneage.models.ensemble import ensemble  # Keras: only once an ensemble ships

        members_used = [prepared[i] for i in chosen]
        meta = _ensemble_meta([p.meta for p in members_used], [runs[i] for i in chosen])
        model = ensemble([p.model for p in members_used])
        meta.extra["tta"] = tta
        meta.extra["choices_on_validation"] = record
    if calibrate:
        from boneage.models import calibration

        chosen_preds = np.mean([prepared[i].preds[tta] for i in chosen], axis=0)
        line = calibration.study(chosen_preds, truth)
        meta.extra["choices_on_validation"]["calibration"] = line
        if line["used"]:
            model = calibration.calibrated(model, line["slope"], line["intercept"])
            promised = line["mae_in_sample"]
    # The 90 % interval, fitted on the same validation predictions the model ships with (the
    # line, when used, included: its two parameters barely touch the errors' quantiles).
    final = np.mean([prepared[i].preds[tta] for i in chosen], axis=0)
    line_used = meta.extra["choices_on_validation"].get("calibration", {})
    if line_used.get("used"):
        final = line_used["slope"] * final + line_used["intercept"]
    meta.extra["interval"] = interval.fit(truth, final).to_dict()
    meta.extra["validation"] = _by_band(truth, final, split)
    if not half and model is prepared[chosen[0]].model:
        _fit_gate(model, meta, data, split)
        return _write(model, meta)  # its cached predictions are this very model's
    if half:
        from boneage import modelio

        modelio.round_to_half(model)  # what the float16 file will hold
    # The file's weights, scored once more: they must give what the cached predictions
    # (full-precision members, corrected by the line when it is used) promised.
    direct = choose_tta(LoadedModel(model, meta), data, split, [tta])[tta]
    if abs(direct - promised) > 0.05:
        raise RuntimeError(
            f"the model to ship scores {direct:.3f} on {split}, its members' predictions "
            f"promised {promised:.3f}: not shipped"
        )
    meta.extra["choices_on_validation"]["val_mae_of_shipped_file"] = direct
    _fit_gate(model, meta, data, split)
    return _write(model, meta, half)


def _by_band(truth: np.ndarray, estimate: np.ndarray, split: str) -> dict[str, Any]:
    """The shipped model's error on ``split``, overall and by band of the true age: the
    limits a reader is shown beside every estimate (the page's limits statement), carried in
    the file so that they always describe the model that answers."""
    from boneage.evaluation.metrics import by_group, regression_metrics

    def brief(m: dict[str, Any]) -> dict[str, Any]:
        return {k: m[k] for k in ("n", "mae", "bias") if k in m} | (
            {"months": m["months"]} if "months" in m else {}
        )

    overall = regression_metrics(truth, estimate)
    bands = by_group(truth, estimate)["by_age_band"]
    return {
        "split": split,
        **brief(overall),
        "by_age_band": {label: brief(m) for label, m in bands.items()},
    }


def _fit_gate(model: Any, meta: Any, data: str | Path, split: str) -> None:
    """Stores the input gate fitted for the model to ship (its weights as they will be
    written) on ``split`` in ``meta.extra["gate"]``, so that the file brings its own."""
    from boneage.inference.gate import fit_for_model
    from boneage.shards.arrays import read_split

    images, male, _, _ = read_split(data, split)
    try:
        fitted = fit_for_model(LoadedModel(model, meta), images, male)
    except ValueError as e:  # a network without spatial feature maps: statistics only
        meta.extra.pop("gate", None)
        meta.extra["gate_not_fitted"] = str(e)
        return
    meta.extra["gate"] = fitted.to_dict()


def _write(model: Any, meta: Any, half: bool = False) -> dict[str, Any]:
    """Replaces the package's shipped model with ``model`` (no optimizer state; weights
    stored as float16 when ``half``)."""
    from boneage import modelio

    SHIPPED.mkdir(parents=True, exist_ok=True)
    target = SHIPPED / f"boneage-{meta.extra.get('trained_on', 'model')}-{meta.model_name}.keras"
    tmp = modelio.save(model, target.with_name(target.name + ".new.keras"), meta, half=half)
    size = tmp.stat().st_size
    if size > MAX_BYTES:
        tmp.unlink()
        raise ValueError(f"{target.name} is {size / 2**20:.1f} MiB, over the 30 MiB limit")
    for old in SHIPPED.glob(SHIPPED_PATTERN):
        if old != tmp:
            old.unlink()
    tmp.replace(target)
    return {"model": str(target), "bytes": size, "tta": meta.tta,
            "weights": "float16" if half else "float32",
            **meta.extra["choices_on_validation"]}  # fmt: skip
