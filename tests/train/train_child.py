"""Child process of the kill -9 test: trains with a save every 4 steps, writes a marker once
checkpoint-4 is saved, then blocks until it is killed.

    python train_child.py MODEL DATASET OUTPUT MARKER
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from conftest import base_config

from services.train.run import run


class HangAfterSave(TrainerCallback):
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == 4:
            self.marker.write_text("saved")
            threading.Event().wait()  # until SIGKILL


if __name__ == "__main__":
    model, dataset, output, marker = (Path(a) for a in sys.argv[1:5])
    run(
        base_config(
            model, dataset, output, eval_steps=4, save_steps=4, callbacks=(HangAfterSave(marker),)
        )
    )
