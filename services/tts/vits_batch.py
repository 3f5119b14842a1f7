"""One padded VITS forward pass for several segments, each exactly as it would come out
alone: transformers' `VitsModel.forward` (inference branch) rewritten over its own
submodules, with two changes that make a batch equal to its items run one at a time.

1. Noise per item. VitsModel draws its noise (stochastic durations, then the prior
   latents) from torch's global generator for the whole batch, so an item's noise would
   depend on its neighbours. Here each item has its own `torch.Generator` seeded with its
   seed, and draws, in the same order and shapes as a lone forward, noise for its own
   length only (zeros over the padding). On CPU this is the very noise a lone
   `torch.manual_seed(seed); model(...)` draws.
2. Padding that never leaks. The text encoder, duration predictor and flows already mask
   every convolution's input; the HiFi-GAN decoder does not (it would run the padded
   frames' activations into the end of a shorter item). `_decode` masks the input of
   every decoder convolution at its own rate, which is what zero padding does for a lone
   item.

What remains is floating-point summation order in batched kernels (differences ~1e-6);
`ceil` on a duration sitting on an integer could, in principle, flip one frame.
Each item has its own text, speaker, speaking rate and seed. Source followed:
transformers/models/vits/modeling_vits.py (VitsModel.forward,
VitsStochasticDurationPredictor.forward reverse branch, VitsHifiGan.forward,
HifiGanResidualBlock.forward), stable since transformers 4.33.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SynthesisItem:
    """One segment to synthesize: token ids, speaker index (None: single-speaker model),
    speaking rate (1.0 normal) and noise seed."""

    input_ids: Sequence[int]
    speaker: int | None
    speed: float
    seed: int


def forward_batch(
    torch: Any,
    model: Any,
    items: Sequence[SynthesisItem],
    noise_scale: float,
    noise_scale_duration: float,
) -> list[np.ndarray]:
    """Float32 waveforms at the model's rate, one per item, in order. Blocking; call under
    `torch.inference_mode()`."""
    device, dtype = model.device, model.text_encoder.embed_tokens.weight.dtype
    lengths = [len(item.input_ids) for item in items]
    ids = torch.zeros((len(items), max(lengths)), dtype=torch.long)
    for row, item in enumerate(items):
        ids[row, : lengths[row]] = torch.tensor(list(item.input_ids), dtype=torch.long)
    attention_mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
    attention_mask = attention_mask.long().to(device)
    input_mask = attention_mask.unsqueeze(-1).to(dtype)  # (batch, length, 1)
    generators = [torch.Generator().manual_seed(item.seed) for item in items]
    speakers = _speakers(torch, model, items)

    enc = model.text_encoder(
        input_ids=ids.to(device),
        padding_mask=input_mask,
        attention_mask=attention_mask,
        return_dict=True,
    )
    hidden = enc.last_hidden_state.transpose(1, 2)
    mask = input_mask.transpose(1, 2)  # (batch, 1, length)
    if model.config.use_stochastic_duration_prediction:
        noise = _noise(torch, generators, 2, lengths, dtype, device) * noise_scale_duration
        log_duration = _durations(torch, model.duration_predictor, hidden, mask, speakers, noise)
    else:
        log_duration = model.duration_predictor(hidden, mask, speakers)
    length_scale = torch.tensor(
        [1.0 / item.speed for item in items], device=device, dtype=dtype
    ).view(-1, 1, 1)
    duration = torch.ceil(torch.exp(log_duration) * mask * length_scale)
    frames = torch.clamp_min(torch.sum(duration, [1, 2]), 1).long()
    out_mask, attn = _alignment(torch, duration, mask, frames)
    prior_means = torch.matmul(attn, enc.prior_means).transpose(1, 2)
    prior_log_variances = torch.matmul(attn, enc.prior_log_variances).transpose(1, 2)
    noise = _noise(
        torch, generators, prior_means.shape[1], frames.tolist(), dtype, device, time_major=True
    )
    prior = prior_means + noise * torch.exp(prior_log_variances) * noise_scale
    latents = model.flow(prior, out_mask, speakers, reverse=True)
    waveform = _decode(torch, model.decoder, latents * out_mask, out_mask, speakers)
    hop = int(np.prod(model.config.upsample_rates))
    return [
        np.ascontiguousarray(waveform[row, : int(n) * hop].float().cpu().numpy(), dtype=np.float32)
        for row, n in enumerate(frames.tolist())
    ]


def _speakers(torch: Any, model: Any, items: Sequence[SynthesisItem]) -> Any:
    if model.config.num_speakers <= 1 or any(item.speaker is None for item in items):
        return None
    index = torch.tensor([item.speaker for item in items], device=model.device)
    return model.embed_speaker(index).unsqueeze(-1)


def _noise(
    torch: Any,
    generators: list[Any],
    channels: int,
    lengths: list[int],
    dtype: Any,
    device: Any,
    time_major: bool = False,
) -> Any:
    """Standard normal noise (batch, channels, max length): each item's own draw for its
    own length, as a lone forward would make it, zeros beyond. `time_major`: filled in
    place over a (length, channels) tensor seen transposed, as `randn_like` fills the
    transposed prior means of a lone forward (its values depend on the memory layout)."""
    out = torch.zeros((len(lengths), channels, max(lengths)))
    for row, (gen, n) in enumerate(zip(generators, lengths, strict=True)):
        if time_major:
            out[row, :, :n] = torch.empty((n, channels)).T.normal_(generator=gen)
        else:
            out[row, :, :n] = torch.randn((channels, n), generator=gen)
    return out.to(device=device, dtype=dtype)


def _durations(
    torch: Any, predictor: Any, hidden: Any, mask: Any, speakers: Any, noise: Any
) -> Any:
    """VitsStochasticDurationPredictor.forward(reverse=True) with the noise given."""
    inputs = predictor.conv_pre(hidden)
    if speakers is not None:
        inputs = inputs + predictor.cond(speakers)
    inputs = predictor.conv_dds(inputs, mask)
    inputs = predictor.conv_proj(inputs) * mask
    flows = list(reversed(predictor.flows))
    flows = [*flows[:-2], flows[-1]]  # as transformers: the unused flow is skipped
    latents = noise
    for flow in flows:
        latents = torch.flip(latents, [1])
        latents, _ = flow(latents, mask, global_conditioning=inputs, reverse=True)
    log_duration, _ = torch.split(latents, [1, 1], dim=1)
    return log_duration


def _alignment(torch: Any, duration: Any, mask: Any, frames: Any) -> tuple[Any, Any]:
    """The output frame mask (batch, 1, frames) and the hard alignment (batch, frames,
    length) that repeats each input position `duration` times."""
    positions = torch.arange(int(frames.max()), dtype=frames.dtype, device=frames.device)
    out_mask = (positions.unsqueeze(0) < frames.unsqueeze(1)).unsqueeze(1).to(mask.dtype)
    attn_mask = torch.unsqueeze(mask, 2) * torch.unsqueeze(out_mask, -1)
    batch, _, out_len, in_len = attn_mask.shape
    cum = torch.cumsum(duration, -1).view(batch * in_len, 1)
    steps = torch.arange(out_len, dtype=duration.dtype, device=duration.device)
    valid = (steps.unsqueeze(0) < cum).to(attn_mask.dtype).view(batch, in_len, out_len)
    padded = valid - torch.nn.functional.pad(valid, [0, 0, 1, 0, 0, 0])[:, :-1]
    attn = padded.unsqueeze(1).transpose(2, 3) * attn_mask
    return out_mask, attn.squeeze(1)


def _decode(torch: Any, decoder: Any, spectrogram: Any, frame_mask: Any, speakers: Any) -> Any:
    """VitsHifiGan.forward with every convolution's input masked at its rate."""
    leaky = torch.nn.functional.leaky_relu
    slope = decoder.config.leaky_relu_slope
    hidden = decoder.conv_pre(spectrogram)
    if speakers is not None:
        hidden = hidden + decoder.cond(speakers)
    mask = frame_mask
    hidden = hidden * mask
    for i, rate in enumerate(decoder.config.upsample_rates):
        hidden = decoder.upsampler[i](leaky(hidden, slope))
        mask = torch.repeat_interleave(mask, int(rate), dim=2)
        hidden = hidden * mask
        blocks = decoder.resblocks[i * decoder.num_kernels : (i + 1) * decoder.num_kernels]
        total = _residual(torch, blocks[0], hidden, mask)
        for block in blocks[1:]:
            total = total + _residual(torch, block, hidden, mask)
        hidden = total / decoder.num_kernels
    hidden = decoder.conv_post(leaky(hidden) * mask)
    return torch.tanh(hidden).squeeze(1)


def _residual(torch: Any, block: Any, hidden: Any, mask: Any) -> Any:
    """HifiGanResidualBlock.forward, masked."""
    leaky = torch.nn.functional.leaky_relu
    for conv1, conv2 in zip(block.convs1, block.convs2, strict=True):
        out = conv1(leaky(hidden, block.leaky_relu_slope) * mask)
        out = conv2(leaky(out, block.leaky_relu_slope) * mask)
        hidden = (out + hidden) * mask
    return hidden
