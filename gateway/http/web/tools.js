// The Transcription tab (upload or record, then POST /v1/transcribe) and the Speech tab
// (POST /v1/speak as raw PCM, played while it streams in, then offered as a WAV file).
import { authHeaders, errorText } from "./api.js";
import { PcmPlayer } from "./player.js";

const $ = (id) => document.getElementById(id);

function pill(id, text, kind = "") {
  const el = $(id);
  el.textContent = text;
  el.className = `pill ${kind}`;
}

async function transcribe(blob, name) {
  const form = new FormData();
  form.append("file", blob, name);
  const language = $("stt-language").value;
  if (language) form.append("language", language);
  pill("stt-state", "transcribing…", "live");
  const response = await fetch("/v1/transcribe", { method: "POST", body: form, headers: authHeaders() });
  if (!response.ok) return pill("stt-state", await errorText(response), "error");
  const result = await response.json();
  $("stt-text").textContent = result.text || "(nothing heard)";
  $("stt-words").replaceChildren(...result.segments.flatMap((s) => s.words).map((w) => {
    const span = document.createElement("span");
    span.textContent = w.word.trim();
    span.title = `${w.start_ms}–${w.end_ms} ms, p=${w.probability.toFixed(2)}`;
    return span;
  }));
  pill("stt-state", `${(result.duration_ms / 1000).toFixed(1)} s of audio in ${Math.round(result.processing_ms)} ms`);
}

export function initTranscription() {
  let recorder = null;
  $("stt-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const file = $("stt-file").files[0];
    if (!file) return pill("stt-state", "choose a file or record", "error");
    transcribe(file, file.name).catch((err) => pill("stt-state", String(err), "error"));
  });
  $("stt-record").addEventListener("click", async () => {
    if (recorder) return recorder.stop();
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      const parts = [];
      recorder = new MediaRecorder(stream);
      recorder.ondataavailable = (e) => parts.push(e.data);
      recorder.onstop = () => {
        stream.getTracks().forEach((t) => t.stop());
        $("stt-record").textContent = "Record";
        const blob = new Blob(parts, { type: recorder.mimeType });
        recorder = null;
        transcribe(blob, "recording.webm").catch((err) => pill("stt-state", String(err), "error"));
      };
      recorder.start();
      $("stt-record").textContent = "Stop recording";
      pill("stt-state", "recording…", "live");
    } catch (err) {
      pill("stt-state", `microphone: ${err.message}`, "error");
    }
  });
}

function wavFile(pcmParts, rate) {
  const size = pcmParts.reduce((n, p) => n + p.byteLength, 0);
  const header = new DataView(new ArrayBuffer(44));
  const text = (at, s) => [...s].forEach((c, i) => header.setUint8(at + i, c.charCodeAt(0)));
  text(0, "RIFF"); header.setUint32(4, 36 + size, true); text(8, "WAVEfmt ");
  header.setUint32(16, 16, true); header.setUint16(20, 1, true); header.setUint16(22, 1, true);
  header.setUint32(24, rate, true); header.setUint32(28, rate * 2, true);
  header.setUint16(32, 2, true); header.setUint16(34, 16, true);
  text(36, "data"); header.setUint32(40, size, true);
  return new Blob([header, ...pcmParts], { type: "audio/wav" });
}

export function initSpeech() {
  let ctx = null;
  let player = null;
  let reader = null;
  $("tts-stop").addEventListener("click", () => {
    if (reader) reader.cancel();
    if (player) player.stop();
  });
  $("tts-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    ctx = ctx || new AudioContext();
    await ctx.resume();
    if (player) player.stop();
    player = new PcmPlayer(ctx);
    const body = { text: $("tts-text").value, speed: Number($("tts-speed").value), format: "pcm" };
    pill("tts-state", "synthesizing…", "live");
    const started = performance.now();
    const response = await fetch("/v1/speak", {
      method: "POST", body: JSON.stringify(body), headers: authHeaders({ "Content-Type": "application/json" }),
    });
    if (!response.ok) return pill("tts-state", await errorText(response), "error");
    const rate = Number(response.headers.get("X-Sample-Rate")) || 16000;
    player.setFormat(rate, 1);
    reader = response.body.getReader();
    const parts = [];
    let first = true;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (first) pill("tts-state", `first audio after ${Math.round(performance.now() - started)} ms`, "live");
      first = false;
      parts.push(value);
      player.push(value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength));
    }
    reader = null;
    const link = $("tts-download");
    link.href = URL.createObjectURL(wavFile(parts, rate));
    link.hidden = false;
    const seconds = parts.reduce((n, p) => n + p.byteLength, 0) / 2 / rate;
    pill("tts-state", `${seconds.toFixed(1)} s of speech`);
  });
}
