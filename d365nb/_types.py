"""Type aliases shared by several layers (no code, no imports of d365nb)."""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from typing import Literal, TypeAlias

__all__ = ["OnError", "PushMode", "SelectTypes", "VerifyTypes"]

#: What `push(mode=...)` takes.
PushMode: TypeAlias = Literal["create", "update", "upsert", "delete"]
#: What `push(on_error=...)` takes.
OnError: TypeAlias = Literal["collect", "raise"]
#: What `connect(verify=...)` takes: certifi, a CA file, a context, or off (with a warning).
VerifyTypes: TypeAlias = bool | str | os.PathLike[str] | ssl.SSLContext
#: What `read(select=...)` takes: column names.
SelectTypes: TypeAlias = Sequence[str] | None
