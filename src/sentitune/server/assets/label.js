// The labelling page: one text at a time, a button and a number key per label (check
// boxes and Enter for multi-label stores), s to skip, u to undo. Everything it needs is
// served by this server; nothing runs inline (the page's CSP forbids it).
"use strict";

const $ = (id) => document.getElementById(id);
const keyRequired = document.body.dataset.apiKeyRequired === "true";
const state = { task: null, item: null, busy: false };

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h["X-API-Key"] = key;
  return h;
}

function annotator() {
  return $("annotator").value.trim();
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function call(method, path, body) {
  const response = await fetch(path, {
    method, headers: headers(), body: body === undefined ? undefined : JSON.stringify(body),
  });
  const payload = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = payload.detail;
    throw new Error(typeof detail === "string" ? detail
      : Array.isArray(detail) ? detail.map((d) => d.msg).join("; ")
      : `the server answered ${response.status}`);
  }
  return payload;
}

function percent(p) {
  return `${(100 * p).toFixed(1)}%`;
}

function renderChoices() {
  const box = $("choices");
  box.replaceChildren();
  const multi = state.task.task === "multilabel";
  state.task.labels.forEach((name, i) => {
    const key = i < 9 ? String(i + 1) : "";
    if (multi) {
      const label = document.createElement("label");
      const check = document.createElement("input");
      check.type = "checkbox";
      check.id = `choice-${i}`;
      check.dataset.label = name;
      label.append(check, ` ${name}`);
      if (key) label.append(Object.assign(document.createElement("kbd"), { textContent: key }));
      box.append(label);
    } else {
      const button = document.createElement("button");
      button.type = "button";
      button.id = `choice-${i}`;
      button.dataset.label = name;
      button.textContent = name;
      if (key) button.append(Object.assign(document.createElement("kbd"), { textContent: key }));
      button.addEventListener("click", () => submit([name]));
      box.append(button);
    }
  });
  $("save").hidden = !multi;
}

function renderItem(payload) {
  state.item = payload.item;
  const p = payload.progress;
  $("progress").textContent = `${p.answered} of ${p.texts} texts answered by ${annotator()}`;
  $("work").hidden = !state.item;
  $("done").hidden = Boolean(state.item);
  if (!state.item) return;
  const item = state.item;
  $("label-text").textContent = item.text;
  $("label-text").dataset.itemId = item.id;
  if (item.model_answer === null || item.model_answer === undefined) {
    $("model-answer").textContent = "No model answer for this text.";
  } else {
    const answer = Array.isArray(item.model_answer)
      ? (item.model_answer.join(", ") || "no label") : item.model_answer;
    const probability = item.model_probabilities && !Array.isArray(item.model_answer)
      ? ` with probability ${percent(item.model_probabilities[item.model_answer])}` : "";
    $("model-answer").textContent =
      `The model (${item.model_run || "unknown run"}) says ${answer}${probability}.`;
  }
  explainItem(item); // the answer first; the shading follows when it comes
  document.querySelectorAll("#choices input").forEach((box) => {
    box.checked = Array.isArray(item.model_answer) && item.model_answer.includes(box.dataset.label);
  });
}

// The words that drove this server's model, shaded in the text itself (POST /explain, as
// the prediction page does). An explanation that arrives after the person moved on is
// dropped.
async function explainItem(item) {
  $("explanation").hidden = true;
  let legend;
  try {
    const explanation = await call("POST", "/explain", { text: item.text });
    if (state.item !== item) return;
    shadeWords($("label-text"), explanation);
    legend = `Shaded: the words that make this server's model say "${explanation.label}" ` +
      `(${explanation.method}; green for it, red against).`;
  } catch (error) {
    if (state.item !== item) return;
    legend = `No explanation: ${error.message}`;
  }
  $("explanation").textContent = legend;
  $("explanation").hidden = false;
}

async function loadNext(item) {
  const query = new URLSearchParams({ annotator: annotator() });
  if (item !== undefined && item !== null) query.set("item", item);
  renderItem(await call("GET", `/label/api/next?${query}`));
}

async function act(work) {
  if (state.busy) return;
  state.busy = true;
  try {
    showError("");
    await work();
  } catch (error) {
    showError(error.message);
  } finally {
    state.busy = false;
  }
}

function submit(labels) {
  return act(async () => {
    if (!state.item) return;
    await call("POST", "/label/api/submit",
      { item_id: state.item.id, annotator: annotator(), labels });
    $("status").textContent = `Saved: ${labels.join(", ") || "no label"}.`;
    await loadNext();
  });
}

function saveChecked() {
  const chosen = [...document.querySelectorAll("#choices input:checked")]
    .map((box) => box.dataset.label);
  return submit(chosen);
}

function skip() {
  return act(async () => {
    if (!state.item) return;
    await call("POST", "/label/api/skip", { item_id: state.item.id, annotator: annotator() });
    $("status").textContent = "Skipped.";
    await loadNext();
  });
}

function undo() {
  return act(async () => {
    const { item_id: itemId } = await call("POST", "/label/api/undo", { annotator: annotator() });
    $("status").textContent = itemId === null ? "Nothing to undo." : "Undone: label it again.";
    await loadNext(itemId);
  });
}

function start() {
  return act(async () => {
    if (!annotator()) throw new Error("Enter your name first: it is recorded with every label.");
    if (keyRequired && !$("api-key").value.trim()) throw new Error("Enter the API key first.");
    localStorage.setItem("sentitune-annotator", annotator());
    state.task = await call("GET", "/label/api/task");
    $("task-info").textContent =
      `${state.task.task} labels: ${state.task.labels.join(", ")} (run ${state.task.run})`;
    renderChoices();
    await loadNext();
  });
}

document.addEventListener("keydown", (event) => {
  if (!state.task || event.target.tagName === "INPUT" && event.target.type !== "checkbox") return;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const index = Number(event.key) - 1;
  if (Number.isInteger(index) && index >= 0 && index < Math.min(9, state.task.labels.length)) {
    event.preventDefault();
    if (state.task.task === "multilabel") {
      const box = $(`choice-${index}`);
      box.checked = !box.checked;
    } else {
      submit([state.task.labels[index]]);
    }
  } else if (event.key === "Enter" && state.task.task === "multilabel") {
    event.preventDefault();
    saveChecked();
  } else if (event.key === "s") {
    skip();
  } else if (event.key === "u") {
    undo();
  }
});

$("auth").hidden = !keyRequired;
$("annotator").value = localStorage.getItem("sentitune-annotator") || "";
$("start").addEventListener("click", start);
$("save").addEventListener("click", saveChecked);
$("skip").addEventListener("click", skip);
$("undo").addEventListener("click", undo);
$("undo-done").addEventListener("click", undo);
