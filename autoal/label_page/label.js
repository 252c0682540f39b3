// The labeling page. The server's labels.csv is the only record: every answer is POSTed at once and
// the page redraws from the state the server sends back, so a reload shows exactly what is saved.
// Text from batch.json (class names, file names) is only ever set with textContent, never as HTML.
"use strict";

const RESERVED = new Set(["u", "z"]); // unsure, undo
const LETTERS = "abcdefghijklmnopqrstuvwxyz".split("").filter((c) => !RESERVED.has(c));
// Plain words for the built-in strategies; a registered plug-in shows its own name.
const STRATEGY_WORDS = {
  entropy: "the model is unsure across classes (entropy)",
  margin: "the top two classes are close (margin)",
  least_confidence: "the model's best guess is weak",
  bald: "repeated dropout passes disagree (BALD)",
  batchbald: "disagrees, and unlike the rest of the batch (BatchBALD)",
  var_ratio: "dropout passes vote for different classes",
  mean_std: "class probabilities vary between dropout passes",
  kmeans: "it stands for a cluster of similar images",
  coreset: "it is far from everything labeled so far",
  diversity: "it is unlike the other images picked",
  badge: "uncertain and unlike the other picks (BADGE)",
  typiclust: "a typical image of an unlabeled cluster",
  random: "chosen at random, as a control",
};

const state = { batch: null, keys: [], index: 0, pending: 0, fullSize: false, queue: Promise.resolve() };
const $ = (id) => document.getElementById(id);

// Classes named by one character each (digits 0-9, letters A, B, ...) are typed as themselves: "1"
// must never mean class "0". Other names get 1-9, 0, then letters, in the order of the buttons.
function chooseKeys(classes) {
  const own = classes.map((c) => c.toLowerCase());
  const ownKeys = own.every((c) => c.length === 1 && /[a-z0-9]/.test(c) && !RESERVED.has(c))
    && new Set(own).size === own.length;
  return classes.map((_, i) => {
    if (ownKeys) return own[i];
    if (i < 9) return String(i + 1);
    if (i === 9) return "0";
    return LETTERS[i - 10] || null; // past 34 classes: buttons only
  });
}

function keyFor(classIndex) {
  return state.keys[classIndex];
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function percent(x) {
  return `${Math.round(x * 100)}%`;
}

// --- talking to the server ---------------------------------------------------------------------

async function request(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) { // the server is not running (stopped with Ctrl+C, or the computer slept)
    throw new Error("the labeling server does not answer; start it again (python -m autoal.label RUN) "
      + "and reload this page");
  }
  const data = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
  if (!response.ok) throw new Error(data.error || `${response.status}`);
  return data;
}

// One request at a time, in the order the keys were pressed: a fast typist's answers cannot overtake
// each other on the way to labels.csv.
function send(path, body, after, rollback) {
  state.pending += 1;
  showSaved();
  state.queue = state.queue
    .then(() => request(path, body))
    .then((data) => {
      // A later answer may already be on screen: only the last reply in the queue is the whole truth.
      if (state.pending === 1) state.batch = data;
      hideError();
      if (after) after(data);
    })
    .catch((err) => {
      if (rollback) rollback(); // the screen must not show an answer the file does not hold
      showError(`Not saved: ${err.message}. Reload the page to see what is saved.`);
    })
    .finally(() => { state.pending -= 1; render(); });
}

// --- actions -------------------------------------------------------------------------------------

function answer(label) {
  const items = state.batch.items;
  const item = items[state.index];
  const before = item.label;
  item.label = label; // show it at once; the server's reply confirms it
  state.index = nextUnanswered(state.index);
  render();
  send("/api/label", { file: item.file, label }, null, () => {
    const shown = state.batch.items.find((it) => it.file === item.file);
    if (shown && shown.label === label) shown.label = before;
  });
}

function undo() {
  send("/api/undo", {}, (data) => {
    const i = data.items.findIndex((it) => it.file === data.undone);
    if (i >= 0) state.index = i;
  });
}

function go(delta) {
  const n = state.batch.items.length;
  state.index = Math.min(n - 1, Math.max(0, state.index + delta));
  render();
}

// The next image without an answer after ``from`` (wrapping round); ``from`` + 1 when all are answered.
function nextUnanswered(from) {
  const items = state.batch.items;
  for (let step = 1; step <= items.length; step += 1) {
    const i = (from + step) % items.length;
    if (!items[i].label) return i;
  }
  return Math.min(from + 1, items.length - 1);
}

function onKey(event) {
  if (!state.batch || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target instanceof HTMLInputElement) return;
  const key = event.key.toLowerCase();
  const classes = state.batch.classes;
  const classIndex = classes.findIndex((_, i) => keyFor(i) === key);
  if (classIndex >= 0) answer(classes[classIndex]);
  else if (key === "u") answer(state.batch.unsure);
  else if (key === "z" || key === "backspace") undo();
  else if (key === "arrowleft") go(-1);
  else if (key === "arrowright") go(1);
  else return;
  event.preventDefault(); // Backspace would otherwise go back a page
}

// --- drawing -------------------------------------------------------------------------------------

function buildStatic() {
  const { classes } = state.batch;
  state.keys = chooseKeys(classes);
  $("title").textContent = `Round ${state.batch.round}: label these images`;
  const buttons = $("class-buttons");
  buttons.replaceChildren();
  // Long names (tissue types, diagnoses) wrap in two columns instead of being cut off.
  buttons.classList.toggle("long-names", Math.max(...classes.map((c) => c.length)) > 10);
  classes.forEach((name, i) => {
    const button = el("button", "class-button");
    button.type = "button";
    button.dataset.label = name;
    const key = keyFor(i);
    if (key && key !== name.toLowerCase()) button.append(el("kbd", "", key.toUpperCase()));
    else button.classList.add("typed-as-named");
    if (key) button.title = `key ${key.toUpperCase()}`;
    button.append(el("span", "class-name", name));
    button.addEventListener("click", () => answer(name));
    buttons.append(button);
  });
  const strip = $("strip");
  strip.replaceChildren();
  state.batch.items.forEach((item, i) => {
    const li = el("li");
    const button = el("button", "thumb");
    button.type = "button";
    button.title = `Image ${i + 1}`;
    const img = el("img");
    img.src = item.url;
    img.alt = `image ${i + 1}`;
    img.loading = "lazy";
    button.append(img, el("span", "thumb-label"));
    button.addEventListener("click", () => { state.index = i; render(); });
    li.append(button);
    strip.append(li);
  });
  $("resume-command").textContent = state.batch.resume_command;
  $("show-guess").checked = localStorage.getItem("autoal-hide-guess") !== "1";
}

function render() {
  const batch = state.batch;
  if (!batch) return;
  const item = batch.items[state.index];
  const unsure = batch.items.filter((it) => it.label === batch.unsure).length;
  $("done").textContent = batch.items.filter((it) => it.label).length;
  $("total").textContent = batch.items.length;
  $("unsure-count").textContent = unsure ? ` (${unsure} unsure)` : "";
  const done = batch.items.filter((it) => it.label).length;
  $("progress-fill").style.width = percent(done / batch.items.length);
  $("progressbar").setAttribute("aria-valuenow", done);
  $("progressbar").setAttribute("aria-valuemax", batch.items.length);
  $("complete").hidden = !(done === batch.items.length && state.pending === 0 && !batch.already_read);
  $("already-read").hidden = !batch.already_read;
  showSaved();

  const image = $("image");
  if (image.getAttribute("src") !== item.url) image.src = item.url;
  image.alt = `image ${state.index + 1} of the batch`;
  $("position").textContent = `Image ${state.index + 1} of ${batch.items.length}`;
  $("source").textContent = item.source ? item.source : "";
  $("current-label").textContent = item.label
    ? (item.label === batch.unsure ? "Your answer: unsure (skipped)" : `Your answer: ${item.label}`)
    : "Not answered yet";
  $("current-label").className = `current-label ${item.label ? (item.label === batch.unsure ? "is-unsure" : "is-done") : ""}`;
  $("prev").disabled = state.index === 0;
  $("next").disabled = state.index === batch.items.length - 1;
  $("undo").disabled = !batch.can_undo && state.pending === 0;

  for (const button of $("class-buttons").children) {
    button.classList.toggle("chosen", button.dataset.label === item.label);
  }
  $("unsure").classList.toggle("chosen", item.label === batch.unsure);
  renderPrediction(item);
  renderContributions(item);
  renderStrip();
}

function renderPrediction(item) {
  const box = $("prediction");
  box.replaceChildren();
  if (!$("show-guess").checked) {
    box.append(el("span", "muted", "hidden"));
    return;
  }
  if (!item.prediction) {
    box.append(el("span", "muted", "none yet: no model has been trained"));
    return;
  }
  box.append(el("span", "guess-label", item.prediction.label),
    el("span", "guess-prob", `${percent(item.prediction.prob)} sure`));
}

function renderContributions(item) {
  const list = $("contributions");
  list.replaceChildren();
  const entries = Object.entries(item.contributions).sort((a, b) => b[1] - a[1]);
  if (!entries.length) {
    list.append(el("li", "muted", item.prediction
      ? "not recorded: this run's strategy gives no per-image reasons"
      : "picked to start the labeled set (there is no model yet)"));
    return;
  }
  const top = Math.max(...entries.map(([, share]) => share), 1e-9);
  for (const [name, share] of entries) {
    const li = el("li", "contribution");
    li.title = STRATEGY_WORDS[name] || name;
    const head = el("div", "contribution-head");
    const bar = el("div", "share-bar");
    const fill = el("div", "share-fill");
    fill.style.width = `${(100 * share) / top}%`; // the strongest reason fills the row
    bar.append(fill);
    head.append(el("span", "strategy", name.replace(/_/g, " ")), bar, el("span", "share", percent(share)));
    li.append(head);
    if (STRATEGY_WORDS[name]) li.append(el("div", "strategy-words", STRATEGY_WORDS[name]));
    list.append(li);
  }
}

function renderStrip() {
  const batch = state.batch;
  Array.from($("strip").children).forEach((li, i) => {
    const item = batch.items[i];
    const button = li.firstChild;
    button.classList.toggle("current", i === state.index);
    button.classList.toggle("is-done", !!item.label && item.label !== batch.unsure);
    button.classList.toggle("is-unsure", item.label === batch.unsure);
    button.lastChild.textContent = item.label ? (item.label === batch.unsure ? "?" : item.label) : "";
    if (i === state.index) button.scrollIntoView({ block: "nearest", inline: "nearest" });
  });
}

// Whole-number zoom for small images (28 px -> 16x keeps every pixel square and sharp); large ones
// are fitted to the box, and a click shows them at full size (the box scrolls) and back.
function fitImage() {
  const image = $("image");
  const box = $("image-box");
  if (!image.naturalWidth) return;
  const fit = Math.min(box.clientWidth / image.naturalWidth, box.clientHeight / image.naturalHeight);
  const canZoom = fit < 1;
  const scale = canZoom && state.fullSize ? 1 : fit >= 1 ? Math.floor(fit) : fit;
  image.style.width = `${Math.max(1, Math.round(image.naturalWidth * scale))}px`;
  image.style.height = `${Math.max(1, Math.round(image.naturalHeight * scale))}px`;
  image.classList.toggle("pixelated", scale >= 1);
  image.classList.toggle("zoomable", canZoom);
  box.classList.toggle("full-size", canZoom && state.fullSize);
  const zoom = scale > 1 ? `shown ${scale}× larger` : scale === 1 ? "shown at full size"
    : `shown at ${Math.round(scale * 100)}%, click for full size`;
  $("pixels").textContent = `${image.naturalWidth} × ${image.naturalHeight} pixels, ${zoom}`;
}

function showSaved() {
  const saved = $("saved");
  if (!state.batch) return;
  if (state.pending > 0) { saved.textContent = "Saving…"; saved.className = "saved busy"; }
  else if (!$("error").hidden) { saved.textContent = "Not saved"; saved.className = "saved bad"; }
  else { saved.textContent = "✓ Every answer saved"; saved.className = "saved ok"; }
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function hideError() {
  $("error").hidden = true;
}

async function start() {
  try {
    state.batch = await request("/api/state");
  } catch (err) {
    showError(`Could not load the batch: ${err.message}`);
    return;
  }
  buildStatic();
  state.index = state.batch.items.findIndex((it) => !it.label);
  if (state.index < 0) state.index = 0;
  $("image").addEventListener("load", () => { state.fullSize = false; fitImage(); });
  $("image").addEventListener("click", () => { state.fullSize = !state.fullSize; fitImage(); });
  window.addEventListener("resize", fitImage);
  document.addEventListener("keydown", onKey);
  $("prev").addEventListener("click", () => go(-1));
  $("next").addEventListener("click", () => go(1));
  $("unsure").addEventListener("click", () => answer(state.batch.unsure));
  $("undo").addEventListener("click", undo);
  $("show-guess").addEventListener("change", () => {
    localStorage.setItem("autoal-hide-guess", $("show-guess").checked ? "0" : "1");
    render();
  });
  render();
}

document.addEventListener("DOMContentLoaded", start);
