"""What one request may cost the server: body size, JSON depth, clicks, pixels. One home for every limit.

A served annotator is shared by everyone who can reach it, so no single request may take an
unbounded share of its memory or CPU. Each limit below is documented in docs/annotate.md.
"""

from __future__ import annotations

from interformer_edge.runtime.memory import available_bytes

JSON_LIMIT_BYTES = 1 << 20  # the page's and Label Studio's requests are small; images come as files or base64
# Clicks of one object: per tool request (CVAT, Label Studio send all of them every time) and per page
# session. Each costs one decoder run; people use a handful (the benchmark's protocol stops at 20).
MAX_CLICKS_PER_OBJECT = 64
# Working memory of one tool request per pixel of its image: the decoded RGB and its array copy (6 B),
# the mask and the logit difference at the photo's size (5 B), CVAT's H x W reply as a Python list
# and as JSON text (~10 B), with room to spare.
REQUEST_BYTES_PER_PIXEL = 32
# A photo no camera exceeds by much (a 64 MP phone photo is 9248 x 6936); below Pillow's bomb limit.
MAX_PIXELS_CEILING = 64_000_000
# Tool requests assumed in flight at once when the pixel limit is derived from free memory.
REQUESTS_IN_FLIGHT = 4


def default_max_pixels() -> int:
    """The largest image (width x height) a tool may send: what :data:`REQUESTS_IN_FLIGHT` requests can
    hold in the memory free now at :data:`REQUEST_BYTES_PER_PIXEL`, at most :data:`MAX_PIXELS_CEILING`."""
    return int(min(MAX_PIXELS_CEILING, available_bytes() // (REQUESTS_IN_FLIGHT * REQUEST_BYTES_PER_PIXEL)))
