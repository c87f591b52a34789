"""``interformer-annotate``: click-to-segment in the browser, served from the device, plus CVAT and
Label Studio endpoints. Uses the torch-free runtime only (never torch, ``models``, ``export`` or
``quantize``); the web parts need the ``serve`` extra (Starlette + uvicorn).

Modules: :mod:`.cli` (the command), :mod:`.server` (routes), :mod:`.service` (what the routes do),
:mod:`.feature_cache` (LRU of encoded images + background pre-encoding), :mod:`.sessions` (click
sessions), :mod:`.saving` (PNG + COCO output), :mod:`.tools` (CVAT / Label Studio shapes),
:mod:`.rle` (COCO and Label Studio mask encodings), :mod:`.images` (the served folder).
"""
