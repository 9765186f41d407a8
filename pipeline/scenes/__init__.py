"""The scene codec: whole georeferenced scenes to ``.ltcs`` files and back to GeoTIFF/COG.

* :mod:`pipeline.scenes.grid` the overlapping tile grid, blending weights and mosaic cells.
* :mod:`pipeline.scenes.bands` bands into 3-channel groups, any bit depth into [0, 1].
* :mod:`pipeline.scenes.source` reading a source scene (description, tiles, statistics).
* :mod:`pipeline.scenes.tiles` one tile through the model and back.
* :mod:`pipeline.scenes.encode` planning and encoding scenes.
* :mod:`pipeline.scenes.mosaic` decoding any window: tiles blended into the raster.
* :mod:`pipeline.scenes.output` writing GeoTIFF / COG atomically.
* :mod:`pipeline.scenes.decompress` ``ltchm decompress-scene``.

The batch job over archives, on Ray, is :mod:`jobs.compress_scenes` (``ltchm
compress-scenes``); the file format is :mod:`ltchm.codec.scene_container`.
"""
