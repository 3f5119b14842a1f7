"""The one models folder every service reads, and the model ids its manifest records.

```
<models>/stt/  <models>/translate/  <models>/llm/model.gguf  <models>/tts/
<models>/manifest.json   {"stt": {"id": ..., "source": ..., ...}, ...}
```

The folder is `$MILO_MODELS_DIR`, else `./models`; the offline demo set is built in
`$MILO_DEMO_MODELS`, else `./models/demo` (`milo up` runs it by default). The tooling that
writes the folder is `services.models` (see `services/models/layout.py`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

log = logging.getLogger(__name__)

ENV_MODELS_DIR: Final = "MILO_MODELS_DIR"
ENV_DEMO_DIR: Final = "MILO_DEMO_MODELS"
DEFAULT_MODELS_DIR: Final = Path("models")
DEMO_SUBDIR: Final = "demo"
MANIFEST_FILE: Final = "manifest.json"


def _env(environ: Mapping[str, str] | None, name: str) -> str:
    return (os.environ if environ is None else environ).get(name, "").strip()


def models_root(environ: Mapping[str, str] | None = None) -> Path:
    """Where the prepared models live: `$MILO_MODELS_DIR` if set, else `./models`."""
    return Path(_env(environ, ENV_MODELS_DIR) or DEFAULT_MODELS_DIR)


def demo_models_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the offline demo set is built: `$MILO_DEMO_MODELS`, else `./models/demo`."""
    return Path(_env(environ, ENV_DEMO_DIR) or DEFAULT_MODELS_DIR / DEMO_SUBDIR)


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest under `root`, or {} when there is none or it cannot be parsed."""
    path = root / MANIFEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable manifest %s: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def manifest_model_id(folder: Path, component: str) -> str | None:
    """The id the manifest records for `component`, when `folder` is that component's entry
    in a models folder (`<models>/<component>`, the manifest beside it); else None.

    Each engine falls back on what its model says about itself (folder name, GGUF name)."""
    if folder.absolute().name != component:
        return None
    entry = read_manifest(folder.parent).get(component)
    model_id = entry.get("id") if isinstance(entry, dict) else None
    return model_id if isinstance(model_id, str) and model_id else None
