"""The data pipeline: raw archives -> WebDataset shards -> training batches.

* :mod:`pipeline.archives` lists and streams members of DOTA / UC-Merced / Gaofen archives
  and folders, refusing unsafe member names, and detects the layout.
* :mod:`pipeline.decode` turns any member (8/16-bit, 1..N bands, alpha, nodata) into 8-bit RGB.
* :mod:`pipeline.stretch` the reproducible percentile stretch of high-bit-depth imagery.
* :mod:`pipeline.split` the deterministic train/val/test split by source image.
* :mod:`pipeline.tiling` the tile grid and the nodata/constant skip rule.
* :mod:`pipeline.plan` decides, before anything is written, which image goes to which shard.
* :mod:`pipeline.shards` writes one shard (atomically) and the manifest.
* :mod:`pipeline.loader` streams the shards into PyTorch batches for training and evaluation.
* :mod:`pipeline.sample_archives` lays images out as DOTA / UC-Merced / Gaofen downloads
  (tests and benchmarks).

The job that runs all of it on Ray is :mod:`jobs.preprocess` (``ltchm preprocess``).
"""
