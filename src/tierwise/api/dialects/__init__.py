"""Platform dialects: each module serves one platform's paths and JSON under
``/compat/<platform>``, translating requests into service calls and results into that
platform's shapes. No tier rule lives here (see docs/dialects.md).

Each module exposes ``PREFIX``, ``router`` (an ``APIRouter`` mounted at ``PREFIX``) and
``render_error(request, status, code, message, details) -> JSONResponse``, which the
app registers so that every error under the prefix answers in the platform's shape.
"""

from __future__ import annotations

from types import ModuleType

from tierwise.api.dialects import capillary, omneo, scrip, yuko

DIALECTS: tuple[ModuleType, ...] = (yuko, capillary, omneo, scrip)
