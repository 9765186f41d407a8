"""Rate-distortion evaluation: codecs, metrics, BD deltas, plots, tables, MLflow records.

``ltchm evaluate`` (:mod:`jobs.evaluate`) runs it end to end. The pieces:

* :mod:`~ltchm.evaluation.codecs`: the codec interface, errors, the classical registry;
* :mod:`~ltchm.evaluation.classical`: JPEG2000, WebP, AVIF, HEVC intra (BPG stand-in), JPEG;
* :mod:`~ltchm.evaluation.learned`: the adapter for ``ltchm.codec.ImageCodec``;
* :mod:`~ltchm.evaluation.metrics`: PSNR, MS-SSIM (dB), LPIPS, VIFp per image;
* :mod:`~ltchm.evaluation.data`: images from a folder or WebDataset shards;
* :mod:`~ltchm.evaluation.runner`: the parallel measuring loop;
* :mod:`~ltchm.evaluation.bd`, :mod:`~ltchm.evaluation.plots`,
  :mod:`~ltchm.evaluation.complexity`, :mod:`~ltchm.evaluation.report`,
  :mod:`~ltchm.evaluation.tracking`: the tables, figures, files and MLflow runs.

Submodules are imported on use, so ``import ltchm.evaluation`` costs nothing.
"""
