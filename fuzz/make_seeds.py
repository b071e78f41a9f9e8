"""Rebuilds the fuzzing seed corpus in fuzz/seeds/ (small files, a few KB each) from the real
RSNA radiographs in ../shared/data/rsna: downscaled PNG and JPEG variants, a tiny TFRecord
shard (plain and GZIP), a label CSV, a zip and a tar.gz of two small films.

    python fuzz/make_seeds.py [--shared ../shared]
"""

from __future__ import annotations

import argparse
import csv
import io
import tarfile
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from boneage import _native as native

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", type=Path, default=HERE.parents[1] / "shared")
    args = ap.parse_args()
    rsna = args.shared / "data" / "rsna"
    films = sorted((rsna / "fullres").glob("*.png"))[:2]
    if len(films) < 2:
        raise SystemExit(f"no RSNA radiographs under {rsna}/fullres")
    out = HERE / "seeds"
    out.mkdir(exist_ok=True)
    small = []
    for f in films:
        img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        small.append(cv2.resize(img, (48, 64), interpolation=cv2.INTER_AREA))
    a, b = small
    cv2.imwrite(str(out / "film.png"), a)
    cv2.imwrite(str(out / "film.jpg"), a, [cv2.IMWRITE_JPEG_QUALITY, 80])
    cv2.imwrite(
        str(out / "film-progressive.jpg"),
        cv2.merge([a, a, 255 - a]),
        [
            cv2.IMWRITE_JPEG_PROGRESSIVE,
            1,
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
        ],
    )
    cv2.imwrite(str(out / "film-rgb16.png"), cv2.merge([a, b, a]).astype(np.uint16) * 257)
    Image.fromarray(cv2.merge([a, a, b])).quantize(16).save(out / "film-palette.png")
    Image.fromarray(cv2.merge([a, a, a])).convert("CMYK").save(out / "film-cmyk.jpg", quality=70)
    with tempfile.TemporaryDirectory() as tmp:
        for compression, name in ((None, "shard.tfrecord"), ("GZIP", "shard.tfrecord.gz")):
            with native.ShardWriter(tmp, "s", 1, compression) as w:
                w.write(a[:16, :16], "1380", male=1, age=120.0, box=[1, 2, 3, 4])
                w.write(b[:8, :12], "1407", male=0, age=30.5)
            (out / name).write_bytes(
                (Path(tmp) / native.shard_name("s", 0, 1, compression)).read_bytes()
            )
    with (rsna / "labels.csv").open(newline="") as f:
        rows = list(csv.reader(f))[:4]
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([r[:3] for r in rows])
    (out / "labels.csv").write_text(text.getvalue())
    pngs = {
        "d/1380.png": (out / "film.png").read_bytes(),
        "1407.jpg": (out / "film.jpg").read_bytes(),
    }
    with zipfile.ZipFile(out / "films.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in pngs.items():
            zf.writestr(name, data)
    with tarfile.open(out / "films.tar.gz", "w:gz") as tf:
        for name, data in pngs.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    for p in sorted(out.iterdir()):
        print(f"{p.name}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
