// The sentitune page: talks to the JSON API of the server that serves it.
// Everything the server returns is inserted with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const keyRequired = document.body.dataset.apiKeyRequired === "true";

function percent(p) {
  return `${(p * 100).toFixed(1)}%`;
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h["X-API-Key"] = key;
  return h;
}

// FastAPI answers {"detail": "message"} or {"detail": [{loc, msg}, ...]} for bad input.
function describeError(status, payload) {
  const detail = payload && payload.detail;
  if (Array.isArray(detail)) {
    return detail.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ");
  }
  return detail ? String(detail) : `request failed (HTTP ${status})`;
}

async function call(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: headers(),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const payload = await response.json().catch(() => null);
  if (!response.ok) throw new Error(describeError(response.status, payload));
  return payload;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

// Multi-label predictions carry `labels` (possibly none); the others `label` and `score`.
function chosenLabels(prediction) {
  return prediction.labels !== undefined ? prediction.labels : [prediction.label];
}

function labelText(prediction) {
  const chosen = chosenLabels(prediction);
  return chosen.length ? chosen.join(", ") : "(no label)";
}

// The probability shown beside the answer. A multi-label `score` is a margin to the
// decision thresholds, not a probability: show the highest chosen label's probability.
function scoreOf(prediction) {
  if (prediction.labels === undefined) return prediction.score;
  const chosen = prediction.labels.map((l) => prediction.probabilities[l]);
  return chosen.length ? Math.max(...chosen) : null;
}

function renderBars(prediction) {
  const chosen = new Set(chosenLabels(prediction));
  const multiLabel = prediction.labels !== undefined;
  $("legend-chosen").textContent = multiLabel
    ? "labels at or over their decision threshold" : "the predicted label";
  $("legend-other").textContent = multiLabel ? "labels under their threshold" : "other labels";
  const bars = $("probabilities");
  bars.replaceChildren();
  const sorted = Object.entries(prediction.probabilities).sort((a, b) => b[1] - a[1]);
  for (const [label, p] of sorted) {
    const name = document.createElement("span");
    name.textContent = label;
    const bar = document.createElement("div");
    bar.className = chosen.has(label) ? "bar chosen" : "bar";
    bar.setAttribute("role", "meter");
    bar.setAttribute("aria-label", label);
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "1");
    bar.setAttribute("aria-valuenow", String(p));
    const fill = document.createElement("div");
    fill.style.width = percent(p); // CSSOM, which the page's CSP allows
    bar.append(fill);
    const value = document.createElement("span");
    value.textContent = percent(p);
    bars.append(name, bar, value);
  }
}

function renderSingle(prediction) {
  const score = scoreOf(prediction);
  $("result-label").textContent = labelText(prediction);
  $("result-score").textContent = score === null ? "" : percent(score);
  $("result-score").dataset.score = score === null ? "" : String(score);
  $("review-badge").hidden = !prediction.needs_review;
  $("truncated-note").hidden = !prediction.truncated;
  renderBars(prediction);
  $("result").hidden = false;
}

// Word attributions under the bars (words.js shades them).
function renderExplanation(explanation) {
  shadeWords($("explanation-words"), explanation);
  $("explanation-legend").textContent =
    `Why "${explanation.label}" (${explanation.method}): green words support it, red ` +
    "words speak against it.";
  $("explanation").hidden = false;
}

async function explainText(text) {
  $("explanation").hidden = true;
  try {
    renderExplanation(await call("POST", "/explain", { text }));
  } catch (error) {
    $("explanation-legend").textContent = `No explanation: ${error.message}`;
    $("explanation-words").replaceChildren();
    $("explanation").hidden = false;
  }
}

function renderBatch(predictions) {
  const body = $("batch-table").tBodies[0];
  body.replaceChildren();
  predictions.forEach((prediction, i) => {
    const score = scoreOf(prediction);
    const row = body.insertRow();
    const cells = [
      String(i + 1),
      prediction.text,
      labelText(prediction),
      score === null ? "" : percent(score),
      prediction.needs_review ? "needs review" : "",
    ];
    for (const text of cells) row.insertCell().textContent = text;
    row.cells[1].className = "text";
  });
  $("batch-table").hidden = false;
}

// Disables the button while a request is in flight, and shows any error.
async function submitting(button, action) {
  button.disabled = true;
  showError("");
  try {
    await action();
  } catch (error) {
    showError(error.message);
  } finally {
    button.disabled = false;
  }
}

async function loadInfo() {
  try {
    const info = await call("GET", "/info");
    $("model-info").textContent =
      `${info.model || "model"} · ${info.task} · labels: ${info.labels.join(", ")}`;
  } catch (error) {
    $("model-info").textContent = keyRequired
      ? "Enter the API key to use this server."
      : `Model information unavailable: ${error.message}`;
  }
}

$("single-form").addEventListener("submit", (event) => {
  event.preventDefault();
  submitting($("classify"), async () => {
    const text = $("text").value;
    renderSingle(await call("POST", "/predict", { text }));
    explainText(text); // after the answer, which should not wait for it
  });
});

$("batch-form").addEventListener("submit", (event) => {
  event.preventDefault();
  // Blank lines are skipped: the server refuses empty texts.
  const texts = $("batch-texts").value.split("\n").filter((line) => line.trim());
  submitting($("classify-batch"), async () => {
    renderBatch((await call("POST", "/predict/batch", { texts })).predictions);
  });
});

$("auth").hidden = !keyRequired;
$("api-key").addEventListener("change", loadInfo);
if (keyRequired) {
  $("model-info").textContent = "Enter the API key to use this server.";
} else {
  loadInfo();
}
