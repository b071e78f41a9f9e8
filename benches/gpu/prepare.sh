#!/usr/bin/env bash
# Prepares what the GPU job carries (see run.sh): wheels in .whl/, data in .gpudata/.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
grep -qx '/.gpudata/' .git/info/exclude 2>/dev/null || echo '/.gpudata/' >> .git/info/exclude
rm -rf .whl .gpudata && mkdir -p .whl .gpudata/train100 .gpudata/test299
maturin build --release --out .whl
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
for pkg in "keras==3.12.0" "namex==0.1.0" "optree==0.17.0" "tqdm"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${plat[@]}" -d .whl "$pkg"
done
RSNA=${RSNA:-../shared/data/rsna}
ls "$RSNA/train100" | sort | head -n 10000 | while read -r f; do cp "$RSNA/train100/$f" .gpudata/train100/; done
cp "$RSNA"/test299/*.png .gpudata/test299/
cp "$RSNA/labels.csv" .gpudata/
du -sh .whl .gpudata
