"""The training loop behind ``python -m boneage.train`` (the CLI only parses arguments).

The paper's recipe: AdamW (lr 5e-3, weight decay 0.01), Huber loss (delta 15 months), a
cosine schedule with a 20 % warm-up, early stopping on validation MAE (patience 3, best
weights restored), best-model checkpoint. Runs under TensorFlow (tf.data) or JAX/PyTorch
(the native shard reader through a Keras PyDataset).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boneage import _native as native
from boneage import modelio
from boneage.evaluation import metrics as m
from boneage.evaluation import report
from boneage.evaluation.predictions import predict_split
from boneage.inference import LoadedModel
from boneage.runs import RunDir
from boneage.settings import SETTINGS_FILE, Preprocessing
from boneage.shards import find_shards, make_dataset
from boneage.shards.arrays import split_mean_age
from boneage.shards.augment import Augment
from boneage.training import distribution
from boneage.training.callbacks import standard_callbacks
from boneage.training.demo import DEMO_SIZES, make_synthetic
from boneage.training.distill import Teacher
from boneage.training.schedules import WarmupCosine


@dataclass
class TrainConfig:
    model: str = "densenet121"
    data: str = "data"
    out: str = "runs/latest"
    demo: bool = False
    batch_size: int = 64
    epochs: int = 60
    lr: float = 5e-3
    weight_decay: float = 0.01
    huber_delta: float = 15.0
    warmup: float = 0.2
    patience: int = 3
    seed: int = 0
    mixed_precision: str = "auto"
    augment: bool = True
    # Standard deviation bound of the pixel noise augmentation (Augment.noise); 0: none.
    noise: float = 0.0
    uncertainty: bool = False
    train_split: str = "train"
    val_split: str = "val"
    # The split the finished run reports on. None: validation. Test figures are asked for
    # explicitly, so that a model is never chosen by looking at them (choose on validation,
    # then evaluate the chosen one once with ``boneage.evaluate --split test``).
    test_split: str | None = None
    steps_per_epoch: int | None = None
    distribute: str = "auto"
    verbose: int = 2
    max_minutes: float | None = None
    # A trained model whose weights start this run (fine-tuning); its preprocessing must be
    # the data's, or its weights would meet images unlike those they learned from.
    init_from: str | None = None
    # Which member of an ensemble ``init_from`` is to start from (0-based); None for a plain
    # model. Lets the shipped average's networks be trained further without their old runs.
    init_member: int | None = None
    # Distillation: a per-case predictions file whose estimates are blended into the training
    # targets with this weight (boneage.training.distill); validation stays on the labels.
    teacher: str | None = None
    teacher_weight: float = 0.5
    # The data's preprocessing, as one value (Preprocessing's fields). Before the run: only
    # the settings asked for (on the command line), which may only repeat the data's
    # preprocessing.json; train() then records the data's settings whole (the resize filter
    # included), as the model file does, so --resume and a reader of config.json see them all.
    preprocessing: dict[str, Any] = dataclasses.field(default_factory=dict)
    demo_sizes: dict[str, int] = dataclasses.field(default_factory=dict)
    command: str = ""

    @property
    def image_size(self) -> int | None:
        """The input side: the data's, once train() has read it; before, the one asked for."""
        size = self.preprocessing.get("image_size")
        return None if size is None else int(size)

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> TrainConfig:
        """A config.json's settings. Runs from before the preprocessing travelled whole kept
        its parts as flat keys (``image_size``, ``clip_limit``, ...): they are folded into
        ``preprocessing`` so that such a run still resumes."""
        d = dict(saved)
        flat = {k: d.pop(k) for k in _FLAT_PREPROCESSING if k in d}
        given = {k: v for k, v in flat.items() if v is not None}
        d["preprocessing"] = {**given, **(d.get("preprocessing") or {})}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}")
        return cls(**d)


_FLAT_PREPROCESSING = ("image_size", "clip_limit", "tile_grid", "localiser", "mode")
"""The preprocessing keys a run's config.json held flat before ``preprocessing`` held them."""


def data_preprocessing(cfg: TrainConfig) -> Preprocessing:
    """The preprocessing stored next to the shards; the flags in ``cfg`` may only repeat it.

    Shards written before settings travelled with the data have no ``preprocessing.json``:
    then the flags (or the paper's defaults) are taken at their word, with a warning.
    """
    flags = dict(cfg.preprocessing)
    stored = Preprocessing.read(cfg.data)
    if stored is not None:
        stored.check_flags(**flags)
        check_records_match(cfg, stored)
        return stored
    print(
        f"warning: {cfg.data} has no {SETTINGS_FILE}; assuming the preprocessing given by the "
        "flags (or the defaults). Shards written by boneage.preprocess carry their own.",
        flush=True,
    )
    return Preprocessing.from_dict(flags)


def check_records_match(cfg: TrainConfig, pp: Preprocessing) -> None:
    """Refuses a folder whose shards were not all made with its ``preprocessing.json``.

    Copying shards of another preprocessing run into the folder leaves a settings file that
    describes only some of them; the record size is the cheap tell.
    """

    for split in (cfg.train_split, cfg.val_split):
        for f in find_shards(cfg.data, split):
            for ex in native.read_examples([str(f)]):
                if ex["image"].shape != (pp.image_size, pp.image_size):
                    raise ValueError(
                        f"{f} holds {ex['image'].shape[1]} px images but {cfg.data}/"
                        f"{SETTINGS_FILE} says {pp.image_size}: shards from different "
                        "preprocessing runs are mixed in one folder; preprocess them again "
                        "into one --out"
                    )
                break


def _augment(cfg: TrainConfig) -> Augment | bool:
    """The training augmentation the run's flags ask for (off, the defaults, or the defaults
    with pixel noise)."""
    if not cfg.augment:
        return False
    return Augment(noise=cfg.noise) if cfg.noise else True


def _policy(mode: str) -> str:
    import keras

    if mode == "off":
        return "float32"
    if mode == "bf16":
        return "mixed_bfloat16"
    if mode == "on":
        return "mixed_float16"
    # auto: only where it pays (a GPU); CPUs are slower in float16.
    gpu = any("gpu" in d.lower() or "cuda" in d.lower() for d in distribution.devices())
    return (
        "mixed_float16"
        if gpu and keras.backend.backend() != "jax"
        else ("mixed_bfloat16" if gpu else "float32")
    )


def datasets(cfg: TrainConfig) -> tuple[Any, Any, int, int]:
    """(train, val, number of training cases, steps per epoch) for the current backend.

    In a multi-worker run each worker reads its own disjoint part of every split
    (:func:`boneage.shards.tfdata.shard_files`) and ``--batch-size`` stays the global batch:
    ``tf.distribute`` splits each worker's batches of ``batch_size`` into per-replica ones of
    ``batch_size / replicas``; under JAX each process's PyDataset yields its
    ``batch_size / processes`` rows and Keras assembles the global batch. Steps per epoch are
    one pass over all training cases at the global batch, the same on every worker (they
    must agree, or one would wait in a collective for the others).
    """
    import keras

    # run() sets cfg.image_size from the data's preprocessing before it asks for these.
    assert cfg.image_size is not None
    w = distribution.worker()
    n_train = native.count_records([str(f) for f in find_shards(cfg.data, cfg.train_split)])
    if n_train < cfg.batch_size:
        raise ValueError(
            f"{n_train} training cases is fewer than one batch of {cfg.batch_size}; "
            "lower --batch-size"
        )
    if cfg.batch_size % w.count:
        raise ValueError(f"--batch-size {cfg.batch_size} is not a multiple of {w.count} workers")
    steps = cfg.steps_per_epoch or n_train // cfg.batch_size
    shard = (w.index, w.count) if w.count > 1 else None
    # Each worker shuffles and augments its part with its own stream (worker 0 keeps the
    # seed, so a one-worker run is unchanged).
    seed = cfg.seed + 7919 * w.index
    teacher = _teacher(cfg)
    if keras.backend.backend() == "tensorflow":
        train = make_dataset(cfg.data, cfg.train_split, cfg.batch_size, cfg.image_size,
                             training=True, augment=_augment(cfg), seed=seed,
                             shard=shard, teacher=teacher)  # fmt: skip
        val = make_dataset(cfg.data, cfg.val_split, cfg.batch_size, cfg.image_size,
                           training=False, shard=shard)  # fmt: skip
    else:
        from boneage.shards.pydataset import ShardDataset  # imports keras: after the backend

        local = cfg.batch_size // w.count
        train = ShardDataset(cfg.data, cfg.train_split, local, cfg.image_size, training=True,
                             augment=_augment(cfg), seed=seed, shard=shard,
                             teacher=teacher)  # fmt: skip
        # Multi-process JAX assembles each global batch from equal per-process parts, so
        # validation drops partial batches (validation_steps() stops all at the same one).
        val = ShardDataset(cfg.data, cfg.val_split, local, cfg.image_size, training=False,
                           shard=shard, drop_remainder=shard is not None)  # fmt: skip
        if shard is None:
            steps = cfg.steps_per_epoch or len(train)
        else:
            fewest = min(part_sizes(cfg.data, cfg.train_split, w.count)) // local
            steps = min(cfg.steps_per_epoch or fewest, fewest)
    return train, val, n_train, steps


def _teacher(cfg: TrainConfig) -> Teacher | None:
    """The run's teacher, checked to know the training cases (None: no distillation)."""
    if cfg.teacher is None:
        return None
    teacher = Teacher.read(cfg.teacher, cfg.teacher_weight)
    files = [str(f) for f in find_shards(cfg.data, cfg.train_split)]
    teacher.check_covers([str(ex.get("id", "")) for ex in native.read_examples(files)],
                         cfg.train_split)  # fmt: skip
    return teacher


def _teacher_record(cfg: TrainConfig) -> dict[str, Any] | None:
    """The teacher as a model's provenance records it: the file by folder and name (never a
    path of the training machine) and the weight."""
    if cfg.teacher is None:
        return None
    path = Path(cfg.teacher)
    return {"predictions": f"{path.parent.name}/{path.name}", "weight": cfg.teacher_weight}


def part_sizes(data: str, split: str, count: int) -> list[int]:
    """Records each of ``count`` workers reads of ``split`` (every worker computes all)."""
    from boneage.shards.tfdata import shard_files

    files = find_shards(data, split)
    sizes = []
    for index in range(count):
        mine, by_record = shard_files(files, (index, count))
        n = native.count_records(mine)
        sizes.append(len(range(index, n, count)) if by_record else n)
    return sizes


def validation_steps(cfg: TrainConfig) -> int | None:
    """Multi-process JAX: the validation batches every process has (None: each to its end).

    ``tf.distribute`` copes with workers whose parts end at different batches; JAX's global
    batches need every process at every step, so all stop after the fewest full ones.
    """
    import keras

    w = distribution.worker()
    if w.count < 2 or keras.backend.backend() != "jax":
        return None
    steps = min(part_sizes(cfg.data, cfg.val_split, w.count)) // (cfg.batch_size // w.count)
    if steps < 1:
        raise ValueError(f"too few {cfg.val_split} cases for one batch per worker")
    return steps


def compile_model(model: Any, cfg: TrainConfig, total_steps: int) -> None:
    import keras

    from boneage.models.losses import GaussianNLL, Huber, mean_absolute_error_of_mean

    schedule = WarmupCosine(peak_lr=cfg.lr, total_steps=total_steps, warmup_fraction=cfg.warmup)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=cfg.weight_decay)
    if cfg.uncertainty:
        loss: Any = GaussianNLL()
        metrics: list[Any] = [mean_absolute_error_of_mean]
    else:
        loss = Huber(delta=cfg.huber_delta)
        metrics = [
            keras.metrics.MeanAbsoluteError(name="mae"),
            keras.metrics.RootMeanSquaredError(name="rmse"),
            keras.metrics.R2Score(name="r2"),
        ]
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)


def train(cfg: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Trains, checkpoints, evaluates the best model; returns its metrics (see ``finish``)."""
    import keras

    from boneage.models import build_model

    out = Path(cfg.out)
    run = RunDir(out)
    # Multi-worker: only the chief (worker 0) writes the run directory; the others read it
    # (config.json and last.keras on --resume), so it must be on a filesystem they share.
    chief = distribution.worker().chief
    if chief:
        out.mkdir(parents=True, exist_ok=True)
    if resume:
        if not run.can_resume():
            raise FileNotFoundError(f"{out}: nothing to resume (no {RunDir.LAST} / {RunDir.STATE})")
        saved = run.read_config()
        # How to spread the work and how long to go on are this launch's choices: a run may
        # resume on another number of workers (or on one), with a new time budget or a
        # new (for example shorter) schedule. The command records both launches, in order.
        saved.update(
            epochs=cfg.epochs,
            verbose=cfg.verbose,
            distribute=cfg.distribute,
            max_minutes=cfg.max_minutes,
            command=f"{saved['command']} && {cfg.command}",
        )
        cfg = TrainConfig.from_dict(saved)
    keras.utils.set_random_seed(cfg.seed)
    policy = _policy(cfg.mixed_precision)
    keras.mixed_precision.set_global_policy(policy)

    # A non-chief worker's own files (demo data, JAX's shadow checkpoints), deleted at the end.
    scratch = None if chief else tempfile.TemporaryDirectory(prefix="boneage-worker-")
    if cfg.demo:
        cfg.demo_sizes = cfg.demo_sizes or dict(DEMO_SIZES)
        data = Path(cfg.data)
        if scratch is not None:
            # The demo data lives inside the run directory, which is the chief's to write:
            # another worker draws the same phantoms (same seed) into a scratch folder.
            data = Path(scratch.name) / "synthetic-data"
        make_synthetic(data, cfg.demo_sizes, cfg.image_size or 64, cfg.seed)
        cfg = dataclasses.replace(cfg, data=str(data)) if scratch else cfg
    pp = data_preprocessing(cfg)
    # config.json records the settings actually used, whole, so --resume repeats them.
    cfg.preprocessing = pp.to_dict()
    train_ds, val_ds, n_train, steps = datasets(cfg)
    total_steps = steps * cfg.epochs
    if chief:
        run.write_config(dataclasses.asdict(cfg))

    meta = modelio.ModelMeta(
        preprocessing=pp,
        model_name=cfg.model,
        uncertainty=cfg.uncertainty,
        # The data's folder name, not its path: a shipped model must not carry the paths
        # of the machine it was trained on.
        extra={
            "trained_on": Path(cfg.data).name,
            "demo": cfg.demo,
            "command": cfg.command,
            "init_from": lineage(cfg.init_from, cfg.init_member) if cfg.init_from else None,
            "teacher": _teacher_record(cfg),
        },
    )
    initial_epoch = 0
    with distribution.scope(cfg.distribute) as dist:
        if resume:
            model, _ = modelio.load(run.last)
            initial_epoch = run.read_state()[0]
        elif cfg.init_from:
            model = warm_start(cfg, pp)
        else:
            # Starting the output at the mean age spares the first epochs a 127-month climb.
            model = build_model(cfg.model, pp.image_size, uncertainty=cfg.uncertainty,
                                mean_bias=split_mean_age(cfg.data, cfg.train_split))  # fmt: skip
        compile_model(model, cfg, total_steps)
        if resume:
            # Adam's moments as they were, then the step where the schedule left it (in this
            # launch's steps: another number of workers may split an epoch differently).
            if not modelio.restore_optimizer(model, run.last):
                print(f"{run.last}: no matching optimizer state; it starts afresh")
            model.optimizer.iterations.assign(initial_epoch * steps)
    monitor = "val_mean_absolute_error_of_mean" if cfg.uncertainty else "val_mae"
    # Under JAX, saving a model spread over processes runs collectives (every process must
    # take part), so the other workers save each checkpoint the chief saves, into scratch.
    shadow = scratch is not None and keras.backend.backend() == "jax"
    ckpt_dir = Path(scratch.name) if shadow and scratch is not None else out
    if shadow and resume:  # the chief's best score, so both save at the same epochs
        RunDir(ckpt_dir).write_state(*run.read_state())
    callbacks = standard_callbacks(ckpt_dir, meta, monitor, resume, cfg.patience,
                                   cfg.max_minutes, chief=chief or shadow)  # fmt: skip
    try:
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=cfg.epochs,
            steps_per_epoch=steps,
            validation_steps=validation_steps(cfg),
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            verbose=cfg.verbose,
        )
    finally:
        distribution.end_multi_worker()
        if chief:
            _plots(out, cfg, total_steps)
    if shadow and scratch is not None:
        modelio.save(model, RunDir(Path(scratch.name)).last, meta)  # as finish() does
    if scratch is not None:
        scratch.cleanup()
    if not chief:
        # The chief saves and evaluates; this worker's weights equal its own.
        return {"worker": distribution.worker().index, "distribution": dist["strategy"]}
    return finish(out, cfg, model, meta, dist, policy, n_train)


def lineage(init_from: str, member: int | None = None) -> dict[str, Any]:
    """Where a fine-tuned model's weights came from: the start's run and file name (and which
    member of it, for an ensemble), and the command (and, in turn, the start) recorded in it.

    A fine-tuning command alone does not say how to make the model again: its start is
    typically another run's ``best.keras``, trained by a command that only that file knows.
    Names, not paths, as everywhere in a model's provenance.
    """
    path = Path(init_from)
    meta = modelio.read_meta(path)
    if meta is not None and member is not None:
        meta = meta.member(member)
    extra = meta.extra if meta else {}
    start: dict[str, Any] = {"model": f"{path.parent.name}/{path.name}"}
    if member is not None:
        start["member"] = member
    return {**start, "command": extra.get("command"), "init_from": extra.get("init_from")}


def warm_start(cfg: TrainConfig, pp: Preprocessing) -> Any:
    """Loads ``cfg.init_from`` to fine-tune it, refusing one that does not fit this run.

    A model's architecture, output head and preprocessing travel inside it; each must be what
    this run builds and what the data holds, else the run would silently train something else.
    """
    from boneage.models.ensemble import members

    assert cfg.init_from is not None  # run() calls this only when it is set
    model, meta = modelio.load(cfg.init_from)
    nets = members(model)
    if nets and cfg.init_member is None:
        # Fine-tuning the average as one network would train the members towards each
        # other, losing the independence an ensemble is for.
        raise ValueError(
            f"--init-from {cfg.init_from} is an ensemble of {len(nets)} models "
            f"({meta.model_name}); fine-tune one of its members (--init-member 0 to "
            f"{len(nets) - 1}), or train afresh"
        )
    if cfg.init_member is not None:
        if not nets:
            raise ValueError(
                f"--init-member {cfg.init_member}: {cfg.init_from} is a single model, not an "
                "ensemble; leave --init-member out"
            )
        if not 0 <= cfg.init_member < len(nets):
            raise ValueError(
                f"--init-member {cfg.init_member}: {cfg.init_from} has members 0 to {len(nets) - 1}"
            )
        # The bare network: an ensemble's age line (if any) belongs to the average.
        model, meta = nets[cfg.init_member], meta.member(cfg.init_member)
        model.name = cfg.model  # not "member_N": it is a network of its own again
    if meta.model_name and meta.model_name != cfg.model:
        raise ValueError(
            f"--init-from {cfg.init_from} is a {meta.model_name} model, this run trains "
            f"{cfg.model}: pass --model {meta.model_name}"
        )
    if meta.uncertainty != cfg.uncertainty:
        raise ValueError(
            f"--init-from {cfg.init_from} was trained "
            f"{'with' if meta.uncertainty else 'without'} --uncertainty; repeat that choice"
        )
    if not _resize_or_filter_only(meta.preprocessing, pp):
        raise ValueError(
            f"--init-from {cfg.init_from} was trained on {meta.preprocessing.to_dict()}, "
            f"but {cfg.data} holds {pp.to_dict()}: preprocess the data as the model expects"
        )
    if meta.preprocessing.interpolation != pp.interpolation:
        print(
            f"note: --init-from {cfg.init_from} saw {meta.preprocessing.interpolation}-resized "
            f"inputs, {cfg.data} holds {pp.interpolation}-resized ones; fine-tuning adapts it "
            "and the new model records the data's",
            flush=True,
        )
    if meta.preprocessing.image_size != pp.image_size:
        model = _at_size(model, cfg, meta.preprocessing.image_size, pp.image_size)
    return model


def _at_size(model: Any, cfg: TrainConfig, old: int, new: int) -> Any:
    """``model``'s weights in a fresh build of its architecture at input side ``new``.

    Why: the networks here are convolutions followed by global pooling, so their weights do
    not depend on the input size; a network trained on small inputs is a far better start at
    a larger size than random weights (progressive resizing). The shapes are checked, so an
    architecture whose weights do depend on the size is refused, not silently mangled.
    """
    from boneage.models import build_model

    grown = build_model(cfg.model, new, uncertainty=cfg.uncertainty)
    weights = model.get_weights()
    shapes = [tuple(w.shape) for w in weights]
    if shapes != [tuple(w.shape) for w in grown.get_weights()]:
        raise ValueError(
            f"--init-from {cfg.init_from}: its {cfg.model} weights depend on the input size, "
            f"so the {old} px model cannot start a {new} px run; preprocess the data at {old} px"
        )
    grown.set_weights(weights)
    print(f"note: --init-from {cfg.init_from} learned at {old} px; its weights start this "
          f"{new} px run", flush=True)  # fmt: skip
    return grown


def _resize_or_filter_only(a: Preprocessing, b: Preprocessing) -> bool:
    """True when two settings differ at most in the input size and the resize filter: the
    same films through the same CLAHE, at another size or a little smoother or sharper, which
    fine-tuning on the new data adapts to (another mode or CLAHE stays refused)."""
    return dataclasses.replace(a, interpolation=b.interpolation, image_size=b.image_size) == b


def _plots(out: Path, cfg: TrainConfig, total_steps: int) -> None:

    history = RunDir(out).history
    if history.exists() and history.stat().st_size > 0:
        try:
            report.plot_history(history, out)
        except (ValueError, KeyError):
            pass  # too little history to plot (e.g. interrupted in the first epoch)
    sched = WarmupCosine(
        peak_lr=cfg.lr, total_steps=max(total_steps, 1), warmup_fraction=cfg.warmup
    )
    report.plot_schedule(sched, max(total_steps, 1), out / "lr_schedule.png")


def finish(
    out: Path,
    cfg: TrainConfig,
    model: Any,
    meta: Any,
    dist: dict[str, Any],
    policy: str,
    n_train: int,
) -> dict[str, Any]:
    """Saves the final models and evaluates the best one.

    On validation unless the config names a test split; a named split that the data lack
    falls back to validation, and ``split`` in the result says which was used.
    """

    run = RunDir(out)
    modelio.save(model, run.last, meta)
    if not run.best.exists():
        modelio.save(model, run.best, meta)
    best = LoadedModel.open(run.best, tta=0)
    split = cfg.test_split or cfg.val_split
    try:
        find_shards(cfg.data, split)
    except (FileNotFoundError, ValueError):
        split = cfg.val_split  # no such split: report on validation, and say so
    pred = predict_split(best, cfg.data, split, batch_size=cfg.batch_size)
    mean_age = split_mean_age(cfg.data, cfg.train_split)
    result: dict[str, Any] = m.regression_metrics(pred.y_true, pred.y_pred)
    result.update(
        split=split,
        baseline_mae=m.baseline_mae(mean_age, pred.y_true),
        train_cases=n_train,
        precision_policy=policy,
        distribution=dist["strategy"],
        replicas=dist["replicas"],
        workers=dist.get("workers", 1),
    )
    result = {
        k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
        for k, v in result.items()
    }
    result["n"] = int(result["n"])
    run.metrics.write_text(json.dumps(result, indent=2))
    return result
