// The "try the model" page: POST /predict with the form, draw the top-k labels, the modality gate and experts.
// Plain JS, no dependencies, nothing loaded from the internet.
"use strict";

const $ = (id) => document.getElementById(id);
const percent = (x) => `${(100 * x).toFixed(1)}%`;

function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

function bar(fraction) {
  const outer = element("div", { class: "bar", "aria-hidden": "true" });
  const inner = element("span");
  inner.style.width = `${Math.max(0, Math.min(1, fraction)) * 100}%`;
  outer.append(inner);
  return outer;
}

function renderLabels(labels) {
  const list = $("labels");
  list.replaceChildren();
  for (const { label, probability } of labels) {
    const row = element("li", { class: "bar-row", "data-label": label, "data-probability": String(probability) });
    row.append(element("span", { class: "bar-label" }, label), bar(probability),
               element("span", { class: "bar-value" }, percent(probability)));
    list.append(row);
  }
}

function renderGate(gateMean) {
  const box = $("gate");
  box.replaceChildren();
  if (gateMean === null || gateMean === undefined) {
    box.append(element("p", { class: "muted" }, "This model has no modality gate."));
    return;
  }
  box.dataset.gateMean = String(gateMean);
  const split = element("div", { class: "split", role: "img",
    "aria-label": `image ${percent(gateMean)}, text ${percent(1 - gateMean)}` });
  const image = element("span", { class: "image" });
  const text = element("span", { class: "text" });
  image.style.width = `${gateMean * 100}%`;
  text.style.width = `${(1 - gateMean) * 100}%`;
  split.append(image, text);
  const legend = element("div", { class: "legend" });
  legend.append(element("span", { class: "image-key" }, `image ${percent(gateMean)}`),
                element("span", { class: "text-key" }, `text ${percent(1 - gateMean)}`));
  box.append(split, legend);
}

function renderExperts(experts) {
  const box = $("experts");
  box.replaceChildren();
  if (!experts || experts.length === 0) {
    box.append(element("p", { class: "muted" }, "This model has no mixture of experts."));
    return;
  }
  const list = element("ol", { class: "bars", "aria-label": "experts the product was routed to" });
  for (const { expert, weight } of experts) {
    const row = element("li", { class: "bar-row", "data-expert": String(expert), "data-weight": String(weight) });
    row.append(element("span", { class: "bar-label" }, `expert ${expert}`), bar(weight),
               element("span", { class: "bar-value" }, percent(weight)));
    list.append(row);
  }
  box.append(list);
}

function setStatus(message, isError = false) {
  const status = $("status");
  status.textContent = message;
  status.classList.toggle("error", isError);
}

async function describeModel() {
  try {
    const response = await fetch("/info");
    if (!response.ok) throw new Error(response.statusText);
    const info = await response.json();
    $("model-info").textContent =
      `Model “${info.model}” · ${info.classes.length} labels · images up to ${info.max_upload_mb} MB`;
    $("top_k").max = String(info.classes.length);
    $("top_k").value = String(Math.min(5, info.classes.length));
  } catch (error) {
    $("model-info").textContent = "Could not read the model’s description.";
  }
}

async function predict(event) {
  event.preventDefault();
  const image = $("image").files[0];
  const text = $("text").value.trim();
  if (!image && !text) {
    setStatus("Give an image, a text, or both.", true);
    $("text").focus();
    return;
  }
  const form = new FormData();
  if (image) form.append("image", image);
  if (text) form.append("text", text);
  form.append("top_k", $("top_k").value);
  $("submit").disabled = true;
  setStatus("Predicting…");
  try {
    const response = await fetch("/predict", { method: "POST", body: form });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail ?? response.statusText);
      throw new Error(detail);
    }
    renderLabels(body.labels);
    renderGate(body.gate_mean);
    renderExperts(body.experts);
    $("missing").textContent = body.missing && body.missing.length
      ? `Predicted without: ${body.missing.join(", ")}.` : "";
    $("results").hidden = false;
    setStatus(`Top label: ${body.labels[0].label} (${percent(body.labels[0].probability)}).`);
  } catch (error) {
    setStatus(`Prediction failed: ${error.message}`, true);
  } finally {
    $("submit").disabled = false;
  }
}

function showPreview() {
  const preview = $("preview");
  const file = $("image").files[0];
  if (preview.src) URL.revokeObjectURL(preview.src);
  if (file) {
    preview.src = URL.createObjectURL(file);
    preview.alt = `preview of ${file.name}`;
    preview.hidden = false;
  } else {
    preview.removeAttribute("src");
    preview.hidden = true;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("predict-form").addEventListener("submit", predict);
  $("image").addEventListener("change", showPreview);
  $("predict-form").addEventListener("reset", () => {
    setTimeout(showPreview, 0);
    $("results").hidden = true;
    setStatus("");
  });
  describeModel();
});
