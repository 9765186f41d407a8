"""The scene codec: whole georeferenced scenes to ``.ltcs`` files and back to GeoTIFF/COG.

* :mod:`pipeline.scenes.grid` the overlapping tile grid, blending weights and mosaic cells.
* :mod:`pipeline.scenes.bands` bands into 3-channel groups, any bit depth into [0, 1].
* :mod:`pipeline.scenes.source` reading a source scene (description, tiles, statistics).
* :mod:`pipeline.scenes.tiles` one tile through the model and back.
* :mod:`pipeline.scenes.encode` planning and encoding scenes.
* :mod:`pipeline.scenes.mosaic` decoding any window: tiles blended into the raster.
* :mod:`pipeline.scenes.output` writing GeoTIFF / COG atomically.
* :mod:`pipeline.scenes.container` the ``.ltcs`` file format.
* :mod:`pipeline.scenes.verify` decoded against source, band by band, in the native range.
* :mod:`pipeline.scenes.decompress` ``ltchm decompress-scene``.
* :mod:`pipeline.scenes.inputs`, :mod:`~pipeline.scenes.worker`,
  :mod:`~pipeline.scenes.scheduler`, :mod:`~pipeline.scenes.resume`,
  :mod:`~pipeline.scenes.report`: a batch of scenes (``ltchm compress-scenes``) — what to
  compress, the tasks, the driver loop and its in-process pool, resume records, the report.

Only the Ray wiring of the batch (its pool of actors and the ``python -m
jobs.compress_scenes`` entry point that ``ray job submit`` runs) lives in
:mod:`jobs.compress_scenes`: stages depend one way (jobs -> pipeline -> ltchm), so code
that needs a Ray cluster stays out of this package and everything here runs without one.
"""
