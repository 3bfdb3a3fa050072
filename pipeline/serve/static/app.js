// layercut page: upload → POST /v1/remove?format=json → compose the enabled layers in the
// browser. The JSON carries every layer as a cropped RGBA PNG (x0, y0) and the roles under every
// keep mode, so toggles and the keep-mode switch re-composite here without another request.
// The background (none, a colour, the photo blurred) and the mask download follow the server's
// `background=<colour>|blur` and `mask=true` queries, drawn here so that the toggles apply.
"use strict";

const $ = (id) => document.getElementById(id);
const ROLE_COLOURS = { main: "#16a34a", interacting: "#2563eb", kept: "#d97706", dropped: "#dc2626" };

// the server's "blur" background: a Gaussian of this share of the photo's longest side
// (pipeline/background.py, BLUR_RADIUS_FRAC); a canvas blur(σ) takes the same σ
const BLUR_RADIUS_FRAC = 0.02;

const state = {
  file: null,
  doc: null,        // the server's JSON document
  crops: [],        // per layer (rank order): {x0, y0, w, h, data: Uint8ClampedArray RGBA}
  enabled: [],      // per layer: on/off
  mode: "main",
  layersRGBA: null, // ImageData of the enabled layers over transparency
  composed: 0,      // how many times the canvas was composed (tests wait on it)
};

// ---------------------------------------------------------------- picking a file
function pick(file) {
  if (!file) return;
  state.file = file;
  $("drop-text").textContent = `${file.name} (${(file.size / 1e6).toFixed(1)} MB)`;
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("run").disabled = false;
  showError("");
  clearResult();  // a result of the previous photo must not be downloaded under this name
}

function clearResult() {
  state.doc = null;
  state.crops = [];
  state.layersRGBA = null;
  $("result-panel").hidden = true;
}

$("file").addEventListener("change", (e) => pick(e.target.files[0]));
const drop = $("drop");
for (const name of ["dragenter", "dragover"]) {
  drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
}
for (const name of ["dragleave", "drop"]) {
  drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.remove("over"); });
}
drop.addEventListener("drop", (e) => pick(e.dataTransfer.files[0]));
drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("file").click(); });

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
  if (text) {
    document.body.dataset.state = "error";
    clearResult();  // no stale result (or its Download button) beside the error
  }
}

// ---------------------------------------------------------------- request with progress
function post(file, keep) {
  // XMLHttpRequest, not fetch: it reports upload progress
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const query = new URLSearchParams({ format: "json", keep });
    xhr.open("POST", `/v1/remove?${query}`);
    xhr.responseType = "json";
    const started = performance.now();
    let ticker = null;
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) {
        $("progress").value = (100 * e.loaded) / e.total;
        $("status").textContent = `Uploading… ${Math.round((100 * e.loaded) / e.total)}%`;
      }
    };
    xhr.upload.onload = () => {
      $("progress").removeAttribute("value");  // indeterminate while the server works
      ticker = setInterval(() => {
        const s = ((performance.now() - started) / 1000).toFixed(0);
        $("status").textContent = `Finding the subjects and refining edges… ${s} s`;
      }, 250);
    };
    xhr.onloadend = () => clearInterval(ticker);
    xhr.onload = () => {
      const body = xhr.response;
      if (xhr.status === 200 && body) resolve(body);
      else if (body && body.error) reject(new Error(`${body.error}: ${body.detail}`));
      else reject(new Error(`server answered ${xhr.status}`));
    };
    xhr.onerror = () => reject(new Error("network error: is the server running?"));
    const form = new FormData();
    form.append("file", file);
    xhr.send(form);
  });
}

$("run").addEventListener("click", async () => {
  if (!state.file) return;
  $("run").disabled = true;
  document.body.dataset.state = "working";
  showError("");
  $("progress-box").hidden = false;
  $("progress").value = 0;
  $("status").textContent = "Uploading…";
  try {
    const doc = await post(state.file, $("keep").value);
    await show(doc);
    $("status").textContent = "Done.";
    document.body.dataset.state = "done";
  } catch (err) {
    $("status").textContent = "";
    $("progress-box").hidden = true;
    showError(err.message);
  } finally {
    $("run").disabled = false;
    $("progress").value = 100;
  }
});

// ---------------------------------------------------------------- result
async function decodePNG(base64) {
  const img = new Image();
  img.src = `data:image/png;base64,${base64}`;
  await img.decode();
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(img, 0, 0);
  return { canvas, data: ctx.getImageData(0, 0, canvas.width, canvas.height).data };
}

async function decodeCrop(entry) {
  const { canvas, data } = await decodePNG(entry.png);
  const mask = await decodePNG(entry.mask_png);  // grey, white inside the instance
  return {
    x0: entry.x0, y0: entry.y0, w: canvas.width, h: canvas.height, data, canvas,
    mask: { x0: entry.mask_x0, y0: entry.mask_y0, w: mask.canvas.width, h: mask.canvas.height, data: mask.data },
  };
}

function inMask(mask, px, py) {
  const x = px - mask.x0, y = py - mask.y0;
  return x >= 0 && y >= 0 && x < mask.w && y < mask.h && mask.data[(y * mask.w + x) * 4] > 127;
}

async function show(doc) {
  state.doc = doc;
  state.crops = await Promise.all(doc.layers.map(decodeCrop));
  state.mode = doc.keep;
  $("keep").value = doc.keep;
  applyMode(doc.keep);
  const result = $("result");
  result.width = doc.width;
  result.height = doc.height;
  $("overlay").width = doc.width;
  $("overlay").height = doc.height;
  $("result-panel").hidden = false;
  const t = doc.timings_s || {};
  $("timing").textContent = t.total !== undefined ? `server: ${t.total.toFixed(2)} s` : "";
  render();
}

function applyMode(mode) {
  const m = state.doc.modes[mode];
  state.mode = mode;
  state.enabled = m.enabled.slice();
  state.doc.layers.forEach((layer, i) => { layer.role = m.roles[i]; layer.reason = m.reasons[i]; });
}

function render() {
  renderLayerList();
  renderAmbiguity();
  compose();
  drawOverlay();
}

function renderLayerList() {
  const list = $("layers");
  list.replaceChildren();
  state.doc.layers.forEach((layer, i) => {
    const li = document.createElement("li");
    li.className = `role-${layer.role}`;
    li.dataset.rank = layer.rank;
    const thumb = document.createElement("canvas");
    thumb.className = "thumb checker";
    thumb.width = 64;
    thumb.height = 64;
    const crop = state.crops[i];
    const scale = Math.min(64 / crop.w, 64 / crop.h);
    const w = crop.w * scale, h = crop.h * scale;
    thumb.getContext("2d").drawImage(crop.canvas, (64 - w) / 2, (64 - h) / 2, w, h);
    const meta = document.createElement("div");
    meta.className = "meta";
    const title = document.createElement("b");
    title.textContent = `#${layer.rank} ${layer.label}`;
    const facts = document.createElement("div");
    facts.className = "facts";
    const reason = document.createElement("div");
    reason.className = "reason";
    reason.textContent = layer.reason;
    meta.append(title, facts, reason);
    const toggle = document.createElement("input");
    toggle.type = "checkbox";
    toggle.className = "toggle";
    toggle.checked = state.enabled[i];
    toggle.title = "show this layer";
    toggle.addEventListener("change", () => {
      state.enabled[i] = toggle.checked;
      showLayerState(li, i);
      compose();
      drawOverlay();
    });
    li.append(thumb, meta, toggle);
    showLayerState(li, i);
    list.append(li);
  });
}

// The role is the keep policy's; on/off is what the composite shows, and a switch that
// differs from the policy's choice says so.
function layerState(i) {
  const layer = state.doc.layers[i];
  const policyOn = state.doc.modes[state.mode].enabled[i];
  const on = state.enabled[i];
  const shown = on ? "shown" : "hidden";
  return { on, switched: on !== policyOn, text: `score ${layer.score.toFixed(3)} · ${layer.role} · ${shown}` };
}

function showLayerState(li, i) {
  const s = layerState(i);
  li.classList.toggle("off", !s.on);
  const facts = li.querySelector(".facts");
  facts.textContent = s.switched ? `${s.text} by you` : s.text;
  facts.classList.toggle("switched", s.switched);
}

function renderAmbiguity() {
  const m = state.doc.modes[state.mode];
  const box = $("ambiguity");
  const alternatives = m.alternatives || [];
  box.hidden = !(m.ambiguity >= state.doc.ambiguous_at && alternatives.length > 0);
  if (box.hidden) return;
  $("ambiguity-text").textContent =
    `The main subject is ambiguous (${Math.round(m.ambiguity * 100)}%). Did you mean:`;
  const buttons = alternatives.map((ranks) => {  // each alternative lists layer ranks
    const names = state.doc.layers.filter((l) => ranks.includes(l.rank)).map((l) => `#${l.rank} ${l.label}`);
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = names.join(" + ") || "nothing";
    button.addEventListener("click", () => {
      state.enabled = state.doc.layers.map((l) => ranks.includes(l.rank));
      renderLayerList();
      compose();
      drawOverlay();
    });
    return button;
  });
  $("alternatives").replaceChildren(...buttons);
}

// Same maths as pipeline.layers.Layers: alpha = 1 − Π(1 − aᵢ); colour = Σ aᵢ·cᵢ / Σ aᵢ; and
// a shown layer's soft edge never paints the mask of a hidden one (no ghost of an occluder
// that was switched off), except inside its own mask.
function compose() {
  const { width: W, height: H } = state.doc;
  const n = W * H;
  const keepOut = new Float32Array(n).fill(1);
  const colour = new Float32Array(n * 3);
  const weight = new Float32Array(n);
  const hidden = new Uint8Array(n);
  state.crops.forEach((crop, i) => {
    if (state.enabled[i]) return;
    const m = crop.mask;
    for (let y = 0; y < m.h; y++) {
      for (let x = 0; x < m.w; x++) {
        const px = m.x0 + x, py = m.y0 + y;
        if (px < W && py < H && m.data[(y * m.w + x) * 4] > 127) hidden[py * W + px] = 1;
      }
    }
  });
  state.crops.forEach((crop, i) => {
    if (!state.enabled[i]) return;
    const d = crop.data;
    for (let y = 0; y < crop.h; y++) {
      const py = crop.y0 + y;
      if (py < 0 || py >= H) continue;
      for (let x = 0; x < crop.w; x++) {
        const px = crop.x0 + x;
        const k = (y * crop.w + x) * 4;
        const a = d[k + 3] / 255;
        if (a === 0 || px < 0 || px >= W) continue;
        const p = py * W + px;
        if (hidden[p] && !inMask(crop.mask, px, py)) continue;
        keepOut[p] *= 1 - a;
        colour[p * 3] += a * d[k];
        colour[p * 3 + 1] += a * d[k + 1];
        colour[p * 3 + 2] += a * d[k + 2];
        weight[p] += a;
      }
    }
  });
  const out = new ImageData(W, H);
  const o = out.data;
  for (let p = 0; p < n; p++) {
    const w = weight[p];
    if (w <= 0) continue;  // fully transparent: leave 0,0,0,0
    o[p * 4] = Math.round(colour[p * 3] / w);
    o[p * 4 + 1] = Math.round(colour[p * 3 + 1] / w);
    o[p * 4 + 2] = Math.round(colour[p * 3 + 2] / w);
    o[p * 4 + 3] = Math.round((1 - keepOut[p]) * 255);
  }
  state.layersRGBA = out;
  paint();
}

// the chosen background: "" (none: transparent), a colour "#rrggbb", or "blur"
function background() {
  const choice = document.querySelector('input[name="background"]:checked').value;
  return choice === "colour" ? $("background-colour").value : choice;
}

// #result = the background, then the enabled layers over it (source-over, like the server's
// composite(background=...)); without a background the layers alone, with their alpha.
function paint() {
  const { width: W, height: H } = state.doc;
  const layersCanvas = document.createElement("canvas");
  layersCanvas.width = W;
  layersCanvas.height = H;
  layersCanvas.getContext("2d").putImageData(state.layersRGBA, 0, 0);
  const ctx = $("result").getContext("2d", { willReadFrequently: true });
  ctx.clearRect(0, 0, W, H);
  const back = background();
  if (back === "blur") {
    const photo = $("preview");
    ctx.drawImage(photo, 0, 0, W, H);  // under the blur, so the edges stay opaque
    ctx.filter = `blur(${BLUR_RADIUS_FRAC * Math.max(W, H)}px)`;
    ctx.drawImage(photo, 0, 0, W, H);
    ctx.filter = "none";
  } else if (back) {
    ctx.fillStyle = back;
    ctx.fillRect(0, 0, W, H);
  }
  ctx.drawImage(layersCanvas, 0, 0);
  state.composed += 1;
  document.body.dataset.composed = String(state.composed);
}

// the alpha of the enabled layers as an opaque grey image (white = kept), like mask=true
function maskCanvas() {
  const { width: W, height: H } = state.doc;
  const canvas = document.createElement("canvas");
  canvas.width = W;
  canvas.height = H;
  const ctx = canvas.getContext("2d");
  const grey = ctx.createImageData(W, H);
  const a = state.layersRGBA.data;
  for (let k = 0; k < a.length; k += 4) {
    grey.data[k] = grey.data[k + 1] = grey.data[k + 2] = a[k + 3];
    grey.data[k + 3] = 255;
  }
  ctx.putImageData(grey, 0, 0);
  return canvas;
}

function drawOverlay() {
  const overlay = $("overlay");
  overlay.hidden = !$("debug").checked;
  if (overlay.hidden) return;
  const ctx = overlay.getContext("2d");
  ctx.clearRect(0, 0, overlay.width, overlay.height);
  const line = Math.max(2, Math.round(Math.max(overlay.width, overlay.height) / 400));
  ctx.font = `${line * 7}px system-ui, sans-serif`;
  state.doc.layers.forEach((layer, i) => {
    const [x0, y0, x1, y1] = layer.box_xyxy;
    const colour = ROLE_COLOURS[layer.role] || "#999";
    ctx.lineWidth = line;
    ctx.strokeStyle = colour;
    ctx.setLineDash(state.enabled[i] ? [] : [line * 3, line * 2]);
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    const text = `#${layer.rank} ${layer.label} ${layer.role}${state.enabled[i] ? "" : " (hidden)"} ${layer.score.toFixed(2)}`;
    const tw = ctx.measureText(text).width;
    const tx = Math.max(0, Math.min(x0, overlay.width - tw - line * 2));  // keep labels inside
    ctx.fillStyle = colour;
    ctx.fillRect(tx, Math.max(0, y0 - line * 9), tw + line * 2, line * 9);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, tx + line, Math.max(line * 7, y0 - line * 2));
  });
}

$("keep").addEventListener("change", () => {
  if (!state.doc) return;  // before a result, the mode is just sent with the request
  applyMode($("keep").value);
  render();
});
$("debug").addEventListener("change", () => { if (state.doc) drawOverlay(); });

function download(canvas, suffix) {
  canvas.toBlob((blob) => {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    const stem = state.file ? state.file.name.replace(/\.[^.]+$/, "") : "layercut";
    a.download = `${stem}-${suffix}.png`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }, "image/png");
}

$("download").addEventListener("click", () => download($("result"), "layercut"));
$("download-mask").addEventListener("click", () => download(maskCanvas(), "mask"));
for (const input of document.querySelectorAll('input[name="background"]')) {
  input.addEventListener("change", () => { if (state.doc) paint(); });
}
$("background-colour").addEventListener("input", () => {
  document.querySelector('input[name="background"][value="colour"]').checked = true;
  if (state.doc) paint();
});
