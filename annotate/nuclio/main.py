"""nuclio handler of the CVAT interactor function (``function.yaml`` beside it: ``handler: main:handler``).

The request and answer are CVAT's interactor contract, the same as ``POST /cvat/interactor`` of
``interformer-annotate`` (see :class:`interformer_edge.annotate.interactor.CvatInteractor`).
Environment: ``INTERFORMER_EXPORT`` (export folder), ``INTERFORMER_THREADS``, ``INTERFORMER_VARIANT``
(``fp32`` or ``int8``), ``INTERFORMER_MAX_SIDE`` (0: the runtime's default bound).
"""

from __future__ import annotations

import json
import os
from typing import Any

from interformer_edge.annotate.errors import RequestError
from interformer_edge.annotate.interactor import CvatInteractor
from interformer_edge.runtime.errors import InterFormerRuntimeError


def init_context(context: Any) -> None:
    context.logger.info("loading the InterFormer export")
    context.user_data.model = CvatInteractor.from_export(
        os.environ.get("INTERFORMER_EXPORT", "/opt/nuclio/export"),
        threads=int(os.environ.get("INTERFORMER_THREADS", "0")) or None,
        # INTERFORMER_PRECISION: the old name, read for one release
        variant=os.environ.get("INTERFORMER_VARIANT") or os.environ.get("INTERFORMER_PRECISION", "fp32"),
        max_side=int(os.environ.get("INTERFORMER_MAX_SIDE", "0")) or None,
    )
    context.logger.info("InterFormer interactor ready")


def handler(context: Any, event: Any) -> Any:
    status = 200
    try:
        body = event.body
        if isinstance(body, (bytes, str)):
            try:
                body = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise RequestError(f"the body is not valid JSON ({err})") from None
        result = context.user_data.model.handle(body)
    except RequestError as err:
        status, result = err.status, {"error": str(err)}
    except InterFormerRuntimeError as err:
        status, result = 422, {"error": str(err).splitlines()[0]}
    return context.Response(body=json.dumps(result), headers={}, content_type="application/json", status_code=status)
