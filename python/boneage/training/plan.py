"""From what a user asked for to a complete :class:`~boneage.training.loop.TrainConfig`.

``python -m boneage.train`` leaves many settings open: no ``--data`` (look in the standard
places, else run the synthetic demo), no ``--model`` (the one ``--init-from`` was, else the
paper's), no ``--epochs`` (a resumed run's own, else the demo's or the paper's). Those are
policies of the library, not of the command line, so they live here, where a notebook or a
pipeline that builds a run without argparse gets the same choices.

Nothing here imports Keras: a caller chooses its backend (and sets up multi-worker training)
before :func:`boneage.training.loop.train` needs it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from boneage.runs import RunDir
from boneage.training.demo import DEMO_EPOCHS, DEMO_IMAGE_SIZE, DEMO_SIZES, find_dataset

if TYPE_CHECKING:
    from boneage.training.loop import TrainConfig

PAPER_MODEL = "densenet121"
DEMO_MODEL = "small_cnn"
PAPER_EPOCHS = 60
PAPER_PATIENCE = 3
SHIPPED = "shipped"
"""The name ``--init-from`` takes for the model packaged with boneage."""


@dataclass(frozen=True)
class Request:
    """A run as asked for: ``None`` leaves a setting to the policies of :func:`plan`.

    ``settings`` are the :class:`TrainConfig` fields that need no policy (learning rate,
    batch size, splits, ...), passed through as given. ``preprocessing`` holds only the
    preprocessing settings asked for; they may only repeat the data's.
    """

    data: str | None = None
    out: str | None = None
    model: str | None = None
    epochs: int | None = None
    patience: int | None = None
    init_from: str | None = None
    init_member: int | None = None
    resume: bool = False
    preprocessing: dict[str, Any] = dataclasses.field(default_factory=dict)
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)


def plan(request: Request) -> TrainConfig:
    """The complete configuration for ``request``; raises ``ValueError`` for a bad one."""
    from boneage.training.loop import TrainConfig

    data = Path(request.data) if request.data else find_dataset()
    demo = data is None
    model = (
        request.model
        or init_model_name(request.init_from, request.init_member)
        or (DEMO_MODEL if demo else PAPER_MODEL)
    )
    # The folder names the model only when the user named it (README: runs/<time>-run).
    out = Path(request.out) if request.out else default_out(request.model)
    preprocessing = dict(request.preprocessing)
    if demo:
        preprocessing.setdefault("image_size", DEMO_IMAGE_SIZE)
    epochs = (
        request.epochs
        or saved_epochs(out, request.resume)
        or (DEMO_EPOCHS if demo else PAPER_EPOCHS)
    )
    unknown = sorted(set(request.settings) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ValueError(f"unknown training settings {unknown}")
    return TrainConfig(
        **request.settings,
        model=model,
        data=str(data) if data else str(out / "synthetic-data"),
        out=str(out),
        demo=demo,
        epochs=epochs,
        # The demo's short fixed schedule runs to its end and keeps the best epoch.
        patience=request.patience or (DEMO_EPOCHS if demo else PAPER_PATIENCE),
        init_from=str(init_path(request.init_from)) if request.init_from else None,
        init_member=request.init_member,
        preprocessing=preprocessing,
    )


def default_out(model: str | None) -> Path:
    """``runs/<start time>-<model asked for, else run>``: a new folder per launch, by time."""
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{model or 'run'}"


def demo_banner(cfg: TrainConfig) -> str:
    """What a user who gave no data is told before the demo starts."""
    return (
        "No dataset given (--data), none in $BONEAGE_DATA or ./data: running the demo on "
        f"synthetic hand phantoms ({DEMO_SIZES['train']} train / {DEMO_SIZES['val']} val / "
        f"{DEMO_SIZES['test']} test, {cfg.image_size} px).\nFor RSNA data: "
        "python -m boneage.preprocess <images or zips> --labels <csv> --out data/rsna, "
        "then python -m boneage.train --data data/rsna"
    )


def init_path(init_from: str) -> Path:
    """``--init-from``'s model file; ``shipped`` is the model packaged with boneage."""
    from boneage import modelio
    from boneage.inference import default_model

    return modelio.resolve(default_model() if init_from == SHIPPED else init_from)


def saved_epochs(out: Path, resume: bool) -> int | None:
    """A resumed run keeps its own schedule length unless --epochs says otherwise."""
    run = RunDir(out)
    if not resume or not run.has_config():
        return None
    return int(run.read_config()["epochs"])


def init_model_name(init_from: str | None, member: int | None = None) -> str | None:
    """The architecture of the model (or ensemble member) to fine-tune, so --model need not
    repeat it."""
    from boneage import modelio

    if not init_from:
        return None
    meta = modelio.read_meta(init_path(init_from))
    if meta is not None and member is not None:
        with contextlib.suppress(ValueError):  # out of range: the run refuses it, saying why
            meta = meta.member(member)
    return meta.model_name if meta and meta.model_name else None
