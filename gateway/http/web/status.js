// The Status tab: GET /v1/status every 2 s while the tab is shown.
import { authHeaders, errorText } from "./api.js";

const $ = (id) => document.getElementById(id);

function cell(text, className = "") {
  const td = document.createElement("td");
  td.textContent = text ?? "–";
  if (className) td.className = className;
  return td;
}

function mib(bytes) {
  return bytes == null ? "–" : `${(bytes / 1048576).toFixed(0)} MiB`;
}

function latencyText(latency) {
  const parts = Object.entries(latency || {})
    .filter(([method]) => method !== "Describe")
    .map(([method, l]) => `${method} ${l.recent_mean_ms == null ? "idle" : `${Math.round(l.recent_mean_ms)} ms`}`);
  return parts.join(", ") || "no finished calls yet";
}

function row(service) {
  const m = service.metrics || {};
  const tr = document.createElement("tr");
  const gpu = m.gpu_memory_bytes ? Object.values(m.gpu_memory_bytes).map(mib).join(" / ") : "n/a";
  const queue = m.queue_depth == null ? null : `${m.queue_depth}${m.engine_queue ? ` (+${m.engine_queue} engine)` : ""}`;
  tr.append(
    Object.assign(document.createElement("th"), { scope: "row", textContent: service.name }),
    cell(service.status, `health-${service.status}`),
    cell(service.model_id || "–"),
    cell(m.device),
    cell(queue, "num"),
    cell(m.active, "num"),
    cell(service.metrics ? latencyText(m.latency) : service.metrics_error || "no metrics"),
    cell(gpu, "num"),
    cell(mib(m.rss_bytes), "num"),
  );
  return tr;
}

export class StatusBoard {
  constructor() {
    this.timer = null;
  }

  start() {
    if (this.timer) return;
    this.refresh();
    this.timer = setInterval(() => this.refresh(), 2000);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  async refresh() {
    const response = await fetch("/v1/status", { headers: authHeaders() }).catch(() => null);
    const summary = $("status-summary");
    if (!response || !response.ok) {
      summary.textContent = response ? await errorText(response) : "gateway unreachable";
      summary.className = "pill error";
      return;
    }
    const status = await response.json();
    $("status-table").tBodies[0].replaceChildren(...status.services.map(row));
    const down = status.services.filter((s) => s.status !== "SERVING").map((s) => s.name);
    summary.textContent = down.length ? `not ready: ${down.join(", ")}` : `all services serving · open conversations: ${status.sessions}`;
    summary.className = `pill ${down.length ? "error" : "live"}`;
    const stages = Object.entries(status.gateway.latency || {})
      .map(([name, l]) => `<tr><th scope="row">${name}</th><td>${l.recent_mean_ms == null ? "idle" : Math.round(l.recent_mean_ms)}</td></tr>`);
    $("status-stages").innerHTML = stages.join("") || "<tr><th>no turns yet</th></tr>";
  }
}
