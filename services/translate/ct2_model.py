"""What a CTranslate2 model folder says about its limits, read from `model.bin` itself.

NLLB (M2M100) stores its sinusoidal position encodings as variables
`encoder/position_encodings/encodings` and `decoder/position_encodings/encodings`, of shape
[positions, d_model]: a position past them fails the whole batch inside CTranslate2 ("No
position encodings are defined for positions >= 512"). The number of positions is the
model's length limit: 1024 for NLLB-200 600M, 512 for the demo model.

The file layout (CTranslate2's `models/model.cc`): uint32 binary version, the spec name
(uint16 length + bytes) and uint32 revision, uint32 variable count, then per variable its
name, uint8 rank, uint32 dims, uint8 dtype (version >= 4, else the item size) and uint32
byte count, followed by the data, which is skipped here (a seek, not a read).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

_ENCODINGS = ("encoder/position_encodings/encodings", "decoder/position_encodings/encodings")


class ModelFormatError(ValueError):
    """model.bin is not in a layout this reader knows."""


def max_positions(folder: Path) -> int | None:
    """Positions the model's encoder and decoder both support, or None when the model
    stores no position table (relative positions, or an unknown layout)."""
    try:
        shapes = variable_shapes(folder / "model.bin", _ENCODINGS)
    except (OSError, ModelFormatError, struct.error):
        return None
    found = [shape[0] for shape in shapes.values() if shape]
    return min(found) if found else None


def variable_shapes(path: Path, names: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """The shapes of the named variables in a CTranslate2 model.bin (stops once all are
    found, so only the headers before them are read)."""
    wanted, shapes = set(names), {}
    with path.open("rb") as f:
        version = _unpack(f, "<I")
        if not 1 <= version <= 64:
            raise ModelFormatError(f"unexpected model.bin version {version}")
        if version >= 2:
            _string(f)
            _unpack(f, "<I")  # spec revision
        for _ in range(_unpack(f, "<I")):
            name = _string(f)
            rank = _unpack(f, "<B")
            dims = struct.unpack(f"<{rank}I", _read(f, 4 * rank)) if rank else ()
            _unpack(f, "<B")  # dtype, or the item size before version 4
            f.seek(_unpack(f, "<I"), 1)
            if name in wanted:
                shapes[name] = tuple(dims)
                if len(shapes) == len(wanted):
                    break
    return shapes


def _read(f: BinaryIO, size: int) -> bytes:
    data = f.read(size)
    if len(data) != size:
        raise ModelFormatError("model.bin ends too early")
    return data


def _unpack(f: BinaryIO, fmt: str) -> int:
    (value,) = struct.unpack(fmt, _read(f, struct.calcsize(fmt)))
    return int(value)


def _string(f: BinaryIO) -> str:
    raw = _read(f, _unpack(f, "<H"))
    return raw.rstrip(b"\0").decode("utf-8", "replace")
