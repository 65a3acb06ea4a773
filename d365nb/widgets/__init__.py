"""Notebook widgets: the setup panel and the controller behind it.

```python
from d365nb.widgets import SetupPanel

panel = SetupPanel()   # d365nb.setup() builds and shows one for you
panel                  # shows it; panel.connection once signed in
```
"""

from __future__ import annotations

from ._controller import SetupController
from ._panel import SetupPanel

__all__ = ["SetupController", "SetupPanel"]

for _name in __all__:
    globals()[_name].__module__ = "d365nb.widgets"
del _name
