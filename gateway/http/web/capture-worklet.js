// AudioWorklet processor: the microphone's float samples -> 20 ms frames of s16le PCM,
// posted to the page (which sends each as one binary WebSocket frame), with a level.
class MiloCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const frameMs = (options.processorOptions && options.processorOptions.frameMs) || 20;
    this.size = Math.round(sampleRate * frameMs / 1000);
    this.buffer = new Int16Array(this.size);
    this.filled = 0;
    this.energy = 0;
  }

  process(inputs, outputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      for (let i = 0; i < channel.length; i++) {
        const s = Math.max(-1, Math.min(1, channel[i]));
        this.energy += s * s;
        this.buffer[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
        if (this.filled === this.size) this.flush();
      }
    }
    for (const out of outputs[0] || []) out.fill(0);  // silent: the node only listens
    return true;
  }

  flush() {
    const frame = this.buffer.slice(0, this.filled);
    const level = Math.sqrt(this.energy / this.filled);
    this.port.postMessage({ pcm: frame.buffer, level }, [frame.buffer]);
    this.filled = 0;
    this.energy = 0;
  }
}

registerProcessor("milo-capture", MiloCapture);
