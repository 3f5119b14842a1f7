"""Pre-flight estimate of the GPU memory a Whisper fine-tuning run needs, so that a batch too
large for the card is refused with advice before training starts rather than failing with
an out-of-memory error after the first steps.

Peak memory = model state + activations + logits + fixed costs, in bytes:

- model state (Rajbhandari et al. 2020, "ZeRO", sec. 3.1: mixed-precision Adam keeps 16
  bytes per parameter): fp32 weights 4P, fp32 gradients 4P, AdamW's two fp32 moments 8P
  (Adafactor keeps factored moments: ~0P). With bf16/fp16 autocast, the 16-bit copies of
  the weights that autocast caches during the forward pass and that backward still holds
  (saved for the matmul gradients) add 2P (PyTorch, torch.autocast `cache_enabled`). With
  gradient checkpointing nothing saved holds them: they are freed when the forward pass
  ends, before the gradients (4P) exist, so the peak (in backward) does not include them.
- activations kept for backward, per transformer layer (Korthikanti et al. 2022, "Reducing
  Activation Recomputation in Large Transformer Models", sec. 4.1, eq. 1): s·b·h·(34 +
  5·a·s/h) bytes for 16-bit activations, s the sequence length, b the batch, h the width,
  a the heads. The 5·a·s/h term is the attention matrices; fused attention (PyTorch SDPA's
  flash/memory-efficient kernels, transformers' default) never stores them, so it is
  dropped when `fused_attention`. fp32 activations (no autocast) take twice as much.
  Encoder layers: s = 1500 (30 s of audio after the stride-2 convolution). Decoder layers:
  s = the longest label in a batch, plus the cross-attention block (11·s·b·h, same
  accounting as the self-attention block) and its keys and values over the encoder output
  (2 tensors of s_enc·b·h, 16-bit). The convolution stem stores about 6 bytes per
  b·h·3000 (its two 16-bit outputs and the GELU input).
- gradient checkpointing (Chen et al. 2016, "Training Deep Nets with Sublinear Memory
  Cost"; transformers recomputes each layer in backward): only each layer's input is kept
  (fp32 residual stream: 4·s·b·h), plus one layer's full activations while it is recomputed.
- logits: b·s·V elements (V = vocabulary, 51,865) kept as 16-bit output, upcast to fp32 for
  the loss, fp32 log-softmax kept by cross-entropy, and the fp32 gradient: 14 bytes each
  (fp32 run: 16).
- fixed: 1 GiB for the CUDA context and cuBLAS/cuDNN workspaces on a GPU, plus 10 % of the
  activations and logits (allocated and freed at every step) for the caching allocator's
  fragmentation; the weights and optimizer state are allocated once and do not fragment.

The figures are estimates; tests/bench/bench_train.py measures the real peak beside it
(`--gpu` on a card) to check them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

GIB = 1024**3
ENCODER_POSITIONS = 1500
MEL_FRAMES = 3000
FIXED_GPU_BYTES = 1 * GIB
FRAGMENTATION = 0.10
Precision = Literal["bf16", "fp16", "fp32"]
Optimizer = Literal["adamw_torch", "adafactor"]


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about the model."""

    parameters: int
    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_heads: int
    decoder_heads: int
    vocab_size: int

    @classmethod
    def of(cls, config: object, parameters: int) -> ModelShape:
        """From a transformers WhisperConfig and the model's parameter count."""

        def get(name: str) -> int:
            return int(getattr(config, name))

        return cls(
            parameters,
            get("d_model"),
            get("encoder_layers"),
            get("decoder_layers"),
            get("encoder_attention_heads"),
            get("decoder_attention_heads"),
            get("vocab_size"),
        )


@dataclass(frozen=True)
class RunPlan:
    """The settings that change memory."""

    batch_size: int
    label_tokens: int
    precision: Precision = "bf16"
    gradient_checkpointing: bool = False
    optimizer: Optimizer = "adamw_torch"
    fused_attention: bool = True
    gpu: bool = True


@dataclass(frozen=True)
class Estimate:
    """Bytes per term and in total."""

    terms: dict[str, int]

    @property
    def total(self) -> int:
        """Bytes in all."""
        return sum(self.terms.values())

    def table(self) -> str:
        """The terms and the total in GiB, one per line."""
        rows = [f"  {name:<22}{size / GIB:7.2f} GiB" for name, size in self.terms.items()]
        return "\n".join([*rows, f"  {'total':<22}{self.total / GIB:7.2f} GiB"])


def _layer_activations(s: int, b: int, h: int, heads: int, unit: float, fused: bool) -> float:
    scores = 0.0 if fused else 5 * heads * s / h
    return s * b * h * (34 + scores) * unit


def estimate(shape: ModelShape, plan: RunPlan) -> Estimate:
    """Peak training memory of `shape` under `plan` (see the module docstring)."""
    p, h, b = shape.parameters, shape.d_model, plan.batch_size
    s_enc, s_dec = ENCODER_POSITIONS, max(plan.label_tokens, 1)
    half = plan.precision != "fp32"
    unit = 1.0 if half else 2.0  # Korthikanti's coefficients are for 16-bit activations
    terms = {
        "weights": 4 * p,
        "gradients": 4 * p,
        "optimizer": 8 * p if plan.optimizer == "adamw_torch" else 0,
        "16-bit weight copies": 2 * p if half and not plan.gradient_checkpointing else 0,
    }
    enc = _layer_activations(s_enc, b, h, shape.encoder_heads, unit, plan.fused_attention)
    dec = (
        _layer_activations(s_dec, b, h, shape.decoder_heads, unit, plan.fused_attention)
        + 11 * s_dec * b * h * unit
        + 2 * s_enc * b * h * 2 * unit
    )
    if plan.gradient_checkpointing:
        kept = 4 * b * h * (s_enc * shape.encoder_layers + s_dec * shape.decoder_layers)
        activations = kept + max(enc, dec)
    else:
        activations = enc * shape.encoder_layers + dec * shape.decoder_layers
    terms["activations"] = int(activations + 6 * b * h * MEL_FRAMES * unit)
    terms["logits"] = b * s_dec * shape.vocab_size * (14 if half else 16)
    terms["fragmentation"] = int(FRAGMENTATION * (terms["activations"] + terms["logits"]))
    terms["CUDA context"] = FIXED_GPU_BYTES if plan.gpu else 0
    return Estimate(terms)


@dataclass(frozen=True)
class Verdict:
    """The plan to run (gradient checkpointing possibly turned on) and what to tell."""

    plan: RunPlan
    estimate: Estimate
    fits: bool
    advice: list[str]


def check(
    shape: ModelShape, plan: RunPlan, budget: int, grad_accum: int, auto_checkpointing: bool
) -> Verdict:
    """Does `plan` fit in `budget` bytes? If not, what would (gradient checkpointing first,
    turned on by itself when `auto_checkpointing`; then a smaller batch with more
    accumulation, keeping the effective batch; then Adafactor)."""
    first = estimate(shape, plan)
    if first.total <= budget:
        return Verdict(plan, first, True, [])
    checkpointed = replace(plan, gradient_checkpointing=True)
    with_gc = estimate(shape, checkpointed)
    if auto_checkpointing and not plan.gradient_checkpointing and with_gc.total <= budget:
        note = (
            f"gradient checkpointing turned on: {first.total / GIB:.1f} GiB without it, "
            f"{with_gc.total / GIB:.1f} GiB with it (about 30 % slower)"
        )
        return Verdict(checkpointed, with_gc, True, [note])
    return Verdict(plan, first, False, _advice(shape, plan, budget, grad_accum))


def _advice(shape: ModelShape, plan: RunPlan, budget: int, grad_accum: int) -> list[str]:
    advice = []
    gc = replace(plan, gradient_checkpointing=True)
    if not plan.gradient_checkpointing and estimate(shape, gc).total <= budget:
        advice.append(f"--gradient-checkpointing on ({estimate(shape, gc).total / GIB:.1f} GiB)")
    effective = plan.batch_size * grad_accum
    batch = plan.batch_size // 2
    while batch >= 1:
        smaller = replace(gc, batch_size=batch)
        if estimate(shape, smaller).total <= budget:
            advice.append(
                f"--batch-size {batch} --grad-accum {max(1, effective // batch)} --gradient-"
                f"checkpointing on (same effective batch {effective}; "
                f"{estimate(shape, smaller).total / GIB:.1f} GiB)"
            )
            break
        batch //= 2
    lean = replace(gc, optimizer="adafactor")
    if estimate(shape, lean).total <= budget:
        advice.append(
            f"--optim adafactor --gradient-checkpointing on "
            f"({estimate(shape, lean).total / GIB:.1f} GiB)"
        )
    if not advice:
        advice.append("a smaller Whisper, or a card with more memory")
    return advice
