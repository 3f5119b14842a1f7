"""Trainer callbacks of `milo train stt`: stop cleanly on a signal, a progress bar with
loss, learning rate and ETA, the validation scores, a CSV log, and a last evaluation and save
at the final step."""

from __future__ import annotations

import csv
import logging
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

from transformers import TrainerCallback

log = logging.getLogger(__name__)

CSV_FIELDS = (
    "step",
    "epoch",
    "loss",
    "learning_rate",
    "grad_norm",
    "eval_loss",
    "eval_wer",
    "eval_cer",
    "elapsed_s",
)


class StopOnSignal(TrainerCallback):
    """SIGINT (Ctrl-C) or SIGTERM: finish the current optimizer step, save a checkpoint
    through the Trainer's own save (same files, rotation and best-model bookkeeping), stop.
    A second signal stops at once, without saving."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Catch SIGINT and SIGTERM for the run (the previous handlers are kept to restore)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            raise KeyboardInterrupt  # second signal: stop now
        self.received = signum
        name = signal.Signals(signum).name
        log.warning(
            "%s: saving a checkpoint at the end of this step, then stopping "
            "(send it again to stop at once without saving)",
            name,
        )

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """After a signal: ask the Trainer to save a checkpoint and stop."""
        if self.received is not None:
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Give the signals back to their previous handlers."""
        self.restore()

    def restore(self) -> None:
        """Give SIGINT and SIGTERM back to the handlers they had before training."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class FinalEvaluation(TrainerCallback):
    """Evaluate and save at the last step, so the run always ends on a scored checkpoint."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """At the last step, ask the Trainer to evaluate and save."""
        if state.global_step >= state.max_steps:
            control.should_evaluate = True
            control.should_save = True


class ProgressBar(TrainerCallback):
    """One tqdm bar over the optimizer steps (ETA from the steps of this session), with the
    last logged loss and learning rate; one line per evaluation."""

    def __init__(self) -> None:
        self.bar: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Open the bar at the resumed step."""
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=state.max_steps,
            initial=state.global_step,
            unit="step",
            desc="training",
            dynamic_ncols=True,
        )

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Move the bar to the current step."""
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(
        self,
        args: Any,
        state: Any,
        control: Any,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        """Show the last training loss and learning rate beside the bar."""
        if self.bar is not None and logs and "loss" in logs:
            self.bar.set_postfix(
                loss=f"{logs['loss']:.4f}",
                lr=f"{logs.get('learning_rate', 0.0):.2e}",
                refresh=False,
            )

    def on_evaluate(
        self,
        args: Any,
        state: Any,
        control: Any,
        metrics: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        """Print one line with the validation WER and CER (percent) and the best WER so far."""
        if not metrics or "eval_wer" not in metrics:
            return
        best = f"; best {state.best_metric:.2f}%" if state.best_metric is not None else ""
        line = (
            f"step {state.global_step}: validation WER {metrics['eval_wer']:.2f}%, "
            f"CER {metrics['eval_cer']:.2f}%{best}"
        )
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class CsvMetrics(TrainerCallback):
    """Append every log (training loss, learning rate, evaluation WER/CER) to a CSV file a
    person can plot. On resume, rows past the resumed step (from the interrupted session)
    are dropped first, so each step appears once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.started = time.monotonic()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Start the CSV (header) or, on resume, drop the rows past the resumed step; only in the
        process that saves."""
        if not args.should_save:
            return
        rows = self._rows()
        kept = [r for r in rows if _int(r.get("step")) <= state.global_step]
        if not self.path.is_file() or len(kept) != len(rows):
            with self.path.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, CSV_FIELDS)
                writer.writeheader()
                writer.writerows(kept)

    def _rows(self) -> list[dict[str, str]]:
        try:
            with self.path.open(newline="", encoding="utf-8") as handle:
                return list(csv.DictReader(handle))
        except FileNotFoundError:
            return []

    def on_log(
        self,
        args: Any,
        state: Any,
        control: Any,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        """Append one row for this log: step, epoch, elapsed seconds and the logged values."""
        if not args.should_save or not logs:
            return
        row = {
            "step": state.global_step,
            "epoch": round(state.epoch or 0.0, 4),
            "elapsed_s": round(time.monotonic() - self.started, 1),
        }
        row.update({k: logs[k] for k in CSV_FIELDS if k in logs})
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            csv.DictWriter(handle, CSV_FIELDS).writerow(row)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
