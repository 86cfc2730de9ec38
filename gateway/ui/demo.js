// The demo page's behaviour (GET /ui/demo.js): each photo picked or dropped goes to
// POST /predict (a few at a time) and its card shows the top-5 as bars, the model
// version that answered, and the time per stage; a failure shows the gateway's own
// problem `detail`. Plain browser JavaScript, no framework, no build step. Text from the
// gateway enters the page through textContent only, never as HTML.
"use strict";

const PREDICT_URL = "/predict?top_k=5";
const KEY_STORAGE = "ml-inference-pipeline.api-key";
// Enough to overlap uploads with inference, few enough not to hit MAX_IN_FLIGHT.
const PARALLEL = 3;
const STAGES = ["upload", "decode", "queue", "model", "ranking"];

const keyInput = document.getElementById("api-key");
const picker = document.getElementById("photos");
const dropZone = document.getElementById("drop-zone");
const results = document.getElementById("results");
const summary = document.getElementById("summary");

const waiting = [];
let running = 0;

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// The key lives in sessionStorage only: gone with the tab, never in a cookie.
function storedKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

function storeKey(value) {
  try {
    if (value) sessionStorage.setItem(KEY_STORAGE, value);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // Storage refused (a privacy mode): the key still works for this page's life.
  }
}

function enqueue(job) {
  waiting.push(job);
  pump();
}

function pump() {
  while (running < PARALLEL && waiting.length > 0) {
    const job = waiting.shift();
    running += 1;
    job().finally(() => {
      running -= 1;
      pump();
    });
  }
}

function addCard(file) {
  const card = element("li", "card");
  card.dataset.state = "waiting";
  const url = URL.createObjectURL(file);
  const preview = element("img", "preview");
  preview.alt = `Preview of ${file.name}`;
  preview.addEventListener("load", () => URL.revokeObjectURL(url), { once: true });
  preview.addEventListener("error", () => {
    URL.revokeObjectURL(url);
    preview.replaceWith(element("div", "preview no-preview", "No preview"));
  }, { once: true });
  preview.src = url;
  const body = element("div", "card-body");
  const status = element("p", "status", "Waiting…");
  const answer = element("div", "answer");
  body.append(element("h2", "file-name", file.name || "(unnamed)"), status, answer);
  card.append(preview, body);
  results.append(card);
  return { card, status, answer };
}

async function classify(file, view) {
  view.card.dataset.state = "sending";
  view.status.textContent = "Sending…";
  view.answer.replaceChildren();
  updateSummary();
  const form = new FormData();
  form.append("file", file, file.name);
  const headers = {};
  const key = keyInput.value.trim();
  if (key) headers["X-API-Key"] = key;
  let response;
  try {
    response = await fetch(PREDICT_URL, { method: "POST", body: form, headers });
  } catch (error) {
    showFailure(file, view, "Network error",
      `The gateway could not be reached (${error.message}). Is it running?`);
    return;
  }
  let answer = null;
  try {
    answer = await response.json();
  } catch {
    answer = null;  // not JSON: a proxy's error page, say
  }
  if (response.ok && answer && answer.success) showAnswer(view, answer);
  else showProblem(file, view, response, answer);
  updateSummary();
}

function showAnswer(view, answer) {
  view.card.dataset.state = "done";
  view.status.textContent = "Classified";
  const model = answer.model || {};
  const parts = [];
  if (model.weights === "untrained" || answer.warning) {
    const banner = element("div", "untrained");
    banner.setAttribute("role", "alert");
    banner.append(
      element("strong", "", "Untrained weights: these labels mean nothing."),
      element("p", "warning", answer.warning || `The model's weights are ${model.weights}.`),
    );
    parts.push(banner);
  }
  const facts = element("dl", "model");
  for (const [name, value] of [["Model", model.name], ["Version", model.version],
    ["Backend", model.backend], ["Weights", model.weights]]) {
    const detail = element("dd", `fact-${name.toLowerCase()}`, String(value ?? "?"));
    facts.append(element("dt", "", name), detail);
  }
  parts.push(facts, predictionBars(answer.predictions || []), stageTimes(answer));
  view.answer.replaceChildren(...parts);
}

function predictionBars(predictions) {
  const list = element("ol", "predictions");
  list.setAttribute("aria-label", "Most likely classes, best first");
  for (const prediction of predictions) {
    const percent = Number(prediction.confidence_percent);
    const item = element("li", "prediction");
    item.dataset.classId = String(prediction.class_id);
    const bar = element("span", "bar");
    bar.setAttribute("aria-hidden", "true");
    const fill = element("span", "fill");
    // A CSSOM property, not a style attribute: allowed by style-src 'self'.
    fill.style.width = `${Math.min(100, Math.max(0, percent))}%`;
    bar.append(fill);
    item.append(
      element("span", "label", prediction.label),
      element("span", "class-id", `class ${prediction.class_id}`),
      element("span", "percent", `${percent.toFixed(2)}%`),
      bar,
    );
    list.append(item);
  }
  return list;
}

// stages_ms when the gateway sends it; older gateways only time decode and inference.
function stageTimes(answer) {
  const times = element("dl", "stages");
  const add = (name, value) => {
    if (typeof value !== "number") return;
    times.append(element("dt", "", name), element("dd", `stage-${name}`, `${value.toFixed(1)} ms`));
  };
  const stages = answer.stages_ms;
  if (stages && typeof stages === "object") {
    for (const name of STAGES) add(name, stages[name]);
  } else {
    add("preprocess", answer.preprocess_time_ms);
    add("inference", answer.inference_time_ms);
  }
  add("total", answer.total_time_ms);
  return times;
}

function showProblem(file, view, response, problem) {
  const title = (problem && problem.title) || response.statusText || "Error";
  const detail = problem && typeof problem.detail === "string"
    ? problem.detail
    : "The gateway gave no details.";
  showFailure(file, view, `${response.status} ${title}`, detail);
  if (response.status === 401) {
    const hint = element("p", "key-hint",
      "This gateway needs an API key: enter it in the API key field above, then try again.");
    view.answer.prepend(hint);
  }
}

function showFailure(file, view, heading, detail) {
  view.card.dataset.state = "failed";
  view.status.textContent = "Failed";
  const box = element("div", "problem");
  box.setAttribute("role", "alert");
  box.append(element("strong", "problem-title", heading), element("p", "problem-detail", detail));
  const retry = element("button", "retry", "Try again");
  retry.type = "button";
  retry.addEventListener("click", () => enqueue(() => classify(file, view)));
  view.answer.replaceChildren(box, retry);
  updateSummary();
}

function updateSummary() {
  const cards = [...results.children];
  const count = (state) => cards.filter((card) => card.dataset.state === state).length;
  const pending = count("waiting") + count("sending");
  summary.textContent = `${cards.length} photo(s): ${count("done")} classified, ` +
    `${count("failed")} failed, ${pending} in progress.`;
}

function addFiles(files) {
  for (const file of files) {
    const view = addCard(file);
    enqueue(() => classify(file, view));
  }
  updateSummary();
}

keyInput.value = storedKey();
keyInput.addEventListener("input", () => storeKey(keyInput.value.trim()));
document.getElementById("forget-key").addEventListener("click", () => {
  keyInput.value = "";
  storeKey("");
  keyInput.focus();
});
picker.addEventListener("change", () => {
  addFiles([...picker.files]);
  picker.value = "";  // picking the same photo again sends it again
});
dropZone.addEventListener("dragover", (event) => {
  event.preventDefault();
  dropZone.classList.add("dragging");
});
dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dragging"));
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropZone.classList.remove("dragging");
  addFiles([...event.dataTransfer.files]);
});
// A photo dropped beside the box must not make the browser navigate away to it.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());
