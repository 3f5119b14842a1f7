// Gapless playback of PCM as it arrives: each chunk becomes an AudioBuffer scheduled to
// start exactly where the previous one ends (Web Audio clock), with a small lead when the
// queue has run dry. stop() silences everything at once (barge-in).
export class PcmPlayer {
  constructor(context, leadSeconds = 0.06) {
    this.ctx = context;
    this.lead = leadSeconds;
    this.next = 0;
    this.sources = new Set();
    this.rate = 16000;
    this.channels = 1;
    this.carry = null;  // an odd byte left over between network chunks
    this.chunks = 0;
    this.bytes = 0;
  }

  setFormat(rate, channels = 1) {
    if (rate) this.rate = rate;
    this.channels = channels || 1;
  }

  get playing() {
    return this.sources.size > 0;
  }

  push(data) {
    let bytes = new Uint8Array(data);
    if (this.carry) {
      const joined = new Uint8Array(this.carry.length + bytes.length);
      joined.set(this.carry);
      joined.set(bytes, this.carry.length);
      bytes = joined;
      this.carry = null;
    }
    const frameBytes = 2 * this.channels;
    const whole = bytes.length - (bytes.length % frameBytes);
    if (whole < bytes.length) this.carry = bytes.slice(whole);
    if (!whole) return;
    this.chunks += 1;
    this.bytes += whole;
    this.schedule(new Int16Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + whole)));
  }

  schedule(samples) {
    const frames = samples.length / this.channels;
    const buffer = this.ctx.createBuffer(this.channels, frames, this.rate);
    for (let c = 0; c < this.channels; c++) {
      const out = buffer.getChannelData(c);
      for (let i = 0; i < frames; i++) out[i] = samples[i * this.channels + c] / 0x8000;
    }
    const source = this.ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(this.ctx.destination);
    const at = Math.max(this.next, this.ctx.currentTime + this.lead);
    source.start(at);
    this.next = at + buffer.duration;
    this.sources.add(source);
    source.onended = () => this.sources.delete(source);
  }

  stop() {
    for (const source of this.sources) {
      try { source.stop(); } catch (_) { /* already stopped */ }
    }
    this.sources.clear();
    this.next = 0;
    this.carry = null;
  }
}
