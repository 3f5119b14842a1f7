// The Conversation tab: microphone -> AudioWorklet -> WebSocket (binary PCM frames); JSON
// events and binary reply audio back, played as it arrives. Barge-in: the button, or the
// user speaking over the reply (the gateway cuts the reply on speech start; the page
// silences what it had queued at once).
// A gateway that shuts down sends `reconnect`: the page stops sending to it (what the user
// says or types meanwhile is held), asks it to finalize what it has heard, lets the turns in
// flight end, then opens a new socket to the same address, which reaches another replica,
// and goes on there, as MiloClient does. The conversation history starts afresh.
import { apiKey } from "./api.js";
import { PcmPlayer } from "./player.js";

const LATENCY_LABELS = {
  stt_final_ms: "STT final", translate_in_ms: "Translate in", llm_first_token_ms: "LLM first token",
  first_sentence_ms: "First sentence", translate_out_first_ms: "Translate out",
  tts_first_audio_ms: "TTS first audio", end_of_speech_to_first_audio_ms: "Speech end → audio",
  turn_total_ms: "Turn total",
};

const $ = (id) => document.getElementById(id);
const HOLD_MAX = 500;  // input held while moving to another gateway: 10 s of 20 ms frames
const RETRIES = 6;  // new socket refused while moving (e.g. 4503 from a draining replica)

export class Conversation {
  constructor(panel) {
    this.panel = panel;
    this.ws = null;
    this.ctx = null;
    this.player = null;
    this.mic = null;
    this.pendingAudio = null;
    this.configured = false;
    this.turn = 0;
    this.openTurns = new Set();  // turn ids begun on this socket and not ended
    this.hearing = false;  // speech started, final transcript not yet
    this.moving = false;  // following a `reconnect` until the new socket's session starts
    this.leaving = null;  // the socket that said `reconnect`
    this.held = [];
    this.retries = 0;
  }

  bind() {
    $("conv-start").addEventListener("click", () => this.start().catch((e) => this.fail(e)));
    $("conv-stop").addEventListener("click", () => this.stop());
    $("conv-barge").addEventListener("click", () => this.bargeIn());
    $("conv-text-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const text = $("conv-text").value.trim();
      if (text && (this.ws || this.moving)) this.input(JSON.stringify({ text: { text } }));
      $("conv-text").value = "";
    });
  }

  count(name, by = 1) {
    const key = `data-${name}`;
    this.panel.setAttribute(key, String(Number(this.panel.getAttribute(key) || 0) + by));
  }

  setState(text, kind = "") {
    this.panel.dataset.state = text;
    const pill = $("conv-state");
    pill.textContent = text;
    pill.className = `pill ${kind}`;
  }

  async start() {
    this.ctx = new AudioContext();
    await this.ctx.resume();
    this.player = new PcmPlayer(this.ctx);
    this.setState("opening microphone");
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    await this.ctx.audioWorklet.addModule("/static/capture-worklet.js");
    const node = new AudioWorkletNode(this.ctx, "milo-capture", { processorOptions: { frameMs: 20 } });
    const mute = this.ctx.createGain();
    mute.gain.value = 0;
    this.ctx.createMediaStreamSource(stream).connect(node).connect(mute).connect(this.ctx.destination);
    this.mic = { stream, node };
    node.port.onmessage = ({ data }) => {
      $("conv-level").style.width = `${Math.min(100, data.level * 400)}%`;
      if (this.ws || this.moving) this.input(data.pcm);
    };
    this.open();
  }

  open() {
    const url = new URL("/v1/converse", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    if (apiKey()) url.searchParams.set("api_key", apiKey());
    if (!this.moving) this.setState("opening");
    const ws = new WebSocket(url);
    this.ws = ws;
    this.openTurns.clear();
    this.hearing = false;
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      const config = {
        input_format: { encoding: "AUDIO_ENCODING_PCM_S16LE", sample_rate_hz: this.ctx.sampleRate, channels: 1 },
        output_encoding: "AUDIO_ENCODING_PCM_S16LE",
      };
      const language = $("conv-language").value;
      if (language) config.user_language = language;
      this.send({ config });
      this.configured = !this.moving;  // moving: input goes on once the session starts
    };
    ws.onmessage = (m) => {
      if (ws !== this.ws) return;  // a socket left behind: its last words are not ours
      if (typeof m.data === "string") this.onEvent(JSON.parse(m.data));
      else this.onAudio(m.data);
    };
    ws.onclose = (e) => this.closed(e);
    for (const id of ["conv-stop", "conv-barge", "conv-text", "conv-send"]) $(id).disabled = false;
    $("conv-start").disabled = true;
  }

  send(message) {
    this.ws.send(JSON.stringify(message));
  }

  // Microphone frames (ArrayBuffer) and typed turns (JSON text): sent, or held while moving.
  input(frame) {
    if (this.configured && this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(frame);
    else if (this.moving && this.held.length < HOLD_MAX) this.held.push(frame);
  }

  bargeIn() {
    this.player && this.player.stop();
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.send({ control: { action: "ACTION_BARGE_IN" } });
  }

  stop() {
    this.moving = false;
    this.held = [];
    if (this.ws) this.ws.close(1000, "bye");
    this.release();
    this.setState("idle");
  }

  release() {
    if (this.mic) this.mic.stream.getTracks().forEach((t) => t.stop());
    this.mic = null;
    this.player && this.player.stop();
    for (const id of ["conv-stop", "conv-barge", "conv-text", "conv-send"]) $(id).disabled = true;
    $("conv-start").disabled = false;
  }

  closed(event) {
    if (event.target !== this.ws) return;  // a socket already left behind
    this.ws = this.leaving = null;
    this.configured = false;
    if (this.moving && this.retries < RETRIES && this.mic) {  // refused, or cut: try again
      const delay = this.retries ? Math.min(250 * 2 ** this.retries, 4000) : 0;
      this.retries += 1;
      setTimeout(() => this.moving && this.mic && !this.ws && this.open(), delay);
      return;
    }
    this.moving = false;
    this.held = [];
    if (event.code >= 4000) this.setState(`closed: ${event.reason || event.code}`, "error");
    else if (this.panel.dataset.state !== "idle") this.setState("disconnected");
    this.release();
  }

  fail(error) {
    this.setState(`error: ${error.message || error}`, "error");
    this.release();
  }

  log(event) {
    const li = document.createElement("li");
    const body = { ...event[event.event] };
    li.textContent = `#${event.turn_id} ${event.event} ${JSON.stringify(body).slice(0, 160)}`;
    const list = $("conv-log");
    list.appendChild(li);
    while (list.children.length > 300) list.firstChild.remove();
  }

  newTurn(turnId) {
    if (!turnId || turnId === this.turn) return;
    this.turn = turnId;
    $("conv-reply").replaceChildren();
    $("conv-translation").textContent = "";
  }

  onEvent(event) {
    if (event.event !== "audio") this.log(event);
    if (event.turn_id && event.event !== "turn_ended") this.openTurns.add(event.turn_id);
    const handler = this[`on_${event.event}`];
    if (handler) handler.call(this, event[event.event], event);
    if (this.moving) this.leaveWhenIdle();
  }

  on_session_started(started) {
    this.setState("listening", "live");
    this.panel.dataset.session = started.session_id;
    if (this.moving) {  // arrived on another gateway: what was held goes first
      this.moving = false;
      this.retries = 0;
      this.configured = true;
      const held = this.held;
      this.held = [];
      held.forEach((frame) => this.input(frame));
    }
  }

  on_reconnect(r) {
    this.count("reconnects");
    this.moving = true;
    this.leaving = this.ws;
    this.configured = false;  // nothing more goes to this gateway
    this.setState(`moving to another gateway (${r.reason || "reconnect"})`, "live");
    // A half-heard utterance is finalized here, so that its turn can end.
    if (this.hearing) this.send({ control: { action: "ACTION_END_OF_UTTERANCE" } });
  }

  // Moving, and this gateway has no turn left in flight: leave it for a new socket.
  leaveWhenIdle() {
    const old = this.ws;
    if (old !== this.leaving || this.openTurns.size || this.hearing || old.readyState !== WebSocket.OPEN) return;
    this.ws = this.leaving = null;
    old.close(1000, "reconnect");
    this.open();
  }

  on_speech_started(_, event) {
    this.hearing = true;
    if (this.player && this.player.playing) this.player.stop();  // talking over the reply
    this.newTurn(event.turn_id);
    this.setState("hearing you", "live");
  }

  on_transcript(t, event) {
    this.newTurn(event.turn_id);
    this.count("transcripts");
    const p = $("conv-transcript");
    p.replaceChildren(t.is_final ? t.text : Object.assign(document.createElement("span"), { className: "partial", textContent: t.text }));
    if (t.is_final) {
      this.hearing = false;
      this.count("finals");
      this.setState("thinking", "live");
    }
  }

  on_translation(t) {
    $("conv-translation").textContent = `${t.text} (${t.target_language})`;
  }

  on_reply_sentence(s) {
    const li = document.createElement("li");
    li.dataset.index = s.sentence_index;
    li.append(s.text);
    if (s.pivot_text !== s.text) li.append(Object.assign(document.createElement("span"), { className: "pivot", textContent: s.pivot_text }));
    $("conv-reply").appendChild(li);
    this.setState("replying", "live");
  }

  on_audio(audio) {
    if (audio.format && audio.format.sample_rate_hz) this.player.setFormat(audio.format.sample_rate_hz, audio.format.channels);
    this.pendingAudio = audio;
  }

  onAudio(data) {
    if (!this.pendingAudio || !this.player) return;
    this.pendingAudio = null;
    this.count("audio-chunks");
    this.count("audio-bytes", data.byteLength);
    this.player.push(data);
  }

  on_latency(latency) {
    const rows = Object.entries(LATENCY_LABELS)
      .filter(([key]) => latency[key] !== undefined)
      .map(([key, label]) => `<tr><th scope="row">${label}</th><td>${Math.round(latency[key])}</td></tr>`);
    $("conv-latency").innerHTML = rows.join("");
  }

  on_barged_in() {
    this.player && this.player.stop();
    this.count("barge-ins");
    for (const li of $("conv-reply").children) li.classList.add("cut");
  }

  on_turn_ended(ended, event) {
    this.openTurns.delete(event.turn_id);
    this.count("turns-ended");
    this.panel.dataset.lastReason = ended.reason;
    this.setState("listening", "live");
  }

  on_error(error) {
    this.setState(`${error.code}: ${error.message}`, "error");
  }
}
