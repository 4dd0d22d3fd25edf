"""Values for JSON files: NaN (undefined, e.g. the AP of a class without positives) is
written as ``null``, which every JSON reader accepts (``NaN`` is not JSON)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def json_safe(value: Any) -> Any:
    """``value`` with every NaN float (numpy's too) turned into ``None``, through mappings
    (keys become strings) and lists/tuples; other values are returned as they are."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
