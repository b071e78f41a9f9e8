"""Archives + label CSVs -> shards + manifest + preprocessing.json: the first stage.

- :mod:`~boneage.ingest.sources`: files, folders, zip and tar archives as one stream of items.
- :mod:`~boneage.ingest.labels`: the RSNA label CSVs (any of their schemas) as one table.
- :mod:`~boneage.ingest.splits`: seeded, stratified train/val/test splits.
- :mod:`~boneage.ingest.hands`: hand localisation (MediaPipe, the native fallback).
- :mod:`~boneage.ingest.preparation`: one decoded image -> the model's input, per the
  :class:`~boneage.settings.Preprocessing`. Inference uses it too, so a clinician's file is
  prepared by the same code as the training shards.
- :mod:`~boneage.ingest.bulk`: the parallel, resumable bulk job behind ``boneage.preprocess``.
- :mod:`~boneage.ingest.beam`: the same job as an Apache Beam pipeline (``--engine beam``,
  optional extra ``boneage[beam]``), for more than one machine; same shards, same manifest.
- :mod:`~boneage.ingest.contact`: contact sheets of crops for a person to check.
- :mod:`~boneage.ingest.reference`: the same preprocessing with OpenCV, step by step (parity
  tests, ``--engine opencv``).
"""
