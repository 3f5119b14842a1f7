"""What every model service (stt, translate, llm, tts) is made of, and how the runtime
hosts it. Each service folder has the same files with the same roles:

| file                 | role                                                            |
|----------------------|-----------------------------------------------------------------|
| `__main__.py`        | `milo serve <name>`: the entry point, nothing else              |
| `config.py`          | its settings (`ModelServiceSettings`, env `MILO_<NAME>_*`)      |
| `service.py`         | the composition root: `make_service(settings)` builds the     |
|                      | engine, the core and the servicer into one `ModelService`      |
| `servicer.py`        | the gRPC servicer: protobuf -> `convert` -> core -> protobuf;   |
|                      | it holds the core and never imports `service.py`                |
| `convert.py`         | protobuf <-> domain types, request checks, `describe(core)`     |
| `core.py`            | the domain core: no protobuf, no model code; owns the engine    |
| `engine.py`          | the engine Protocol (an `Engine`: `load`/`close`) and the types |
|                      | it exchanges; tier-2 tests inject a fake                        |
| `<kind>_engine.py`   | the real engine (faster-whisper, CTranslate2, llama.cpp, VITS)  |
| `metrics.py`         | its Prometheus metrics                                          |

Life cycle: constructing an engine is cheap (no file is read); `core.load()` (in a worker
thread, before SERVING) calls `engine.load()`, which loads the model, then warms it up;
`core.close()` releases it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import grpc


class Engine(Protocol):
    """The lifecycle every model engine shares; each service's engine Protocol extends it."""

    model_id: str  # valid once loaded (before: the configured or manifest id, if known)
    device: str  # "cpu", "cuda", ...: valid once loaded

    def load(self) -> None:
        """Load the model (blocking). Raises FileNotFoundError for a missing model and
        RuntimeError when the engine's library is not installed."""
        ...

    def close(self) -> None:
        """Release the model; safe to call when it was never loaded."""
        ...


class Core(Protocol):
    """A service's domain core, as its `ModelService` drives it."""

    @property
    def engine(self) -> Engine:
        """The engine the core runs on."""
        ...

    def load(self) -> None:
        """Load the engine and warm it up (blocking, before SERVING)."""
        ...

    def close(self) -> None:
        """Release the engine and every worker (blocking)."""
        ...


class ModelService:
    """`services.runtime.server.Service` for one model service: its core and servicer.

    `add_servicer` is the generated `add_<Name>Servicer_to_server` with the servicer bound;
    `aclose`, when given, closes what lives on the event loop (the LLM's cloud client);
    `preflight`, when given, checks the model's files before the load and raises with words
    a person can act on (`milo doctor`'s quick checks; tier-2 fakes have none)."""

    def __init__(
        self,
        name: str,
        service_names: Sequence[str],
        core: Core,
        add_servicer: Callable[[grpc.aio.Server], None],
        aclose: Callable[[], Awaitable[None]] | None = None,
        preflight: Callable[[], None] | None = None,
    ) -> None:
        self.name, self.service_names, self.core = name, tuple(service_names), core
        self._add_servicer, self._aclose, self._preflight = add_servicer, aclose, preflight

    @property
    def model_id(self) -> str:
        """The engine's model id (final once loaded)."""
        return self.core.engine.model_id

    @property
    def device(self) -> str:
        """Where the engine runs ("cpu", "cuda", ...; final once loaded)."""
        return self.core.engine.device

    def register(self, server: grpc.aio.Server) -> None:
        """Add the servicer to `server` (before it starts)."""
        self._add_servicer(server)

    def load(self) -> None:
        """Check the model's files, then load and warm it up (blocking; the runtime runs it
        in a thread)."""
        if self._preflight is not None:
            self._preflight()
        self.core.load()

    def close(self) -> None:
        """Release the model and the core's workers (blocking)."""
        self.core.close()

    async def aclose(self) -> None:
        """Close what the core keeps on the event loop; the host awaits it before `close`."""
        if self._aclose is not None:
            await self._aclose()
