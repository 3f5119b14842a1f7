// Milo's page: four tabs over the gateway's HTTP bridge. No framework, no build step.
import { Conversation } from "./conversation.js";
import { initSpeech, initTranscription } from "./tools.js";
import { StatusBoard } from "./status.js";
import { apiKey, saveKey } from "./api.js";

function initKey() {
  const input = document.getElementById("api-key");
  input.value = apiKey();
  input.addEventListener("change", () => saveKey(input.value));
}

function initTabs(onShow) {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const select = (tab) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
    }
    onShow(tab.id.replace("tab-", ""));
  };
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (e) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
      if (!step) return;
      const next = tabs[(i + step + tabs.length) % tabs.length];
      next.focus();
      select(next);
    });
  });
  const wanted = tabs.find((t) => `#${t.id.replace("tab-", "")}` === location.hash);
  if (wanted) select(wanted);
}

initKey();
const conversation = new Conversation(document.getElementById("panel-conversation"));
conversation.bind();
initTranscription();
initSpeech();
const status = new StatusBoard();
initTabs((name) => (name === "status" ? status.start() : status.stop()));
window.milo = { conversation };
