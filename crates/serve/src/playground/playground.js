// The jielong playground: the distribution behind every token, on the same API any client
// uses (/v1/completions, /v1/chat/completions, /v1/images/generations, /v1/audio/speech),
// streamed as server-sent events. Plain JavaScript, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  models: [],
  details: {},
  key: localStorage.getItem("jielong-api-key") || "",
  chat: [],
  busy: {},
};

// ---------------------------------------------------------------- the API

/** fetch with the API key; a 401 asks for the key (once per failure) and tries again. */
async function api(path, options = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = Object.assign({}, options.headers || {});
    if (state.key) headers.Authorization = "Bearer " + state.key;
    const res = await fetch(path, Object.assign({}, options, { headers }));
    if (res.status !== 401 || attempt >= 2) return res;
    state.key = await askKey();
    localStorage.setItem("jielong-api-key", state.key);
  }
}

function askKey() {
  const dialog = $("key-dialog");
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve($("key-input").value.trim()), { once: true });
    dialog.showModal();
  });
}

/** A JSON POST that streams: the response, or an Error with the server's message. */
async function post(path, body, signal) {
  const res = await api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
  if (!res.ok) {
    let message = res.status + " " + res.statusText;
    try {
      const e = await res.json();
      if (e.error) message = e.error.message + (e.error.param ? " (" + e.error.param + ")" : "");
    } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return res;
}

/** Server-sent events of a response body, as {event, data} (data parsed unless [DONE]). */
async function* events(res) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (!data.length) continue;
      const text = data.join("\n");
      if (text === "[DONE]") return;
      const parsed = JSON.parse(text);
      if (parsed.error) throw new Error(parsed.error.message);
      yield { event, data: parsed };
    }
  }
}

// ---------------------------------------------------------------- shared pieces

/** The colour of a token drawn with probability p: red (a surprise) to green (certain). */
function colour(p) {
  const hue = Math.round(150 * Math.pow(Math.max(0, Math.min(1, p)), 0.7));
  return `hsl(${hue} 75% 74%)`;
}

/** How a token reads in a chart: whitespace made visible. */
function visible(text) {
  if (text === " ") return "␣";
  return text.replaceAll("\n", "⏎").replaceAll("\t", "⇥").replaceAll(" ", "·");
}

function pct(p) {
  return p >= 0.995 ? (100 * p).toFixed(0) + "%" : p >= 0.001 ? (100 * p).toFixed(1) + "%" : "<0.1%";
}

/**
 * Shows the distribution a token was drawn from: `items` are {label, img?, p}; `drawn` is the
 * index of the drawn one in `items` (or -1, then it is added at the end).
 */
function showDist(title, sub, items, drawn) {
  $("dist-title").textContent = title;
  $("dist-sub").textContent = sub;
  const list = $("dist-bars");
  list.replaceChildren();
  const max = Math.max(...items.map((i) => i.p), 1e-9);
  items.forEach((item, k) => {
    const li = document.createElement("li");
    if (k === drawn) li.className = "drawn";
    const label = document.createElement("span");
    label.className = "label";
    if (item.img) {
      const img = document.createElement("img");
      img.src = item.img;
      img.alt = item.label;
      label.append(img);
    } else {
      label.textContent = visible(item.label);
    }
    label.title = item.label;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    fill.style.width = (100 * item.p / max).toFixed(1) + "%";
    track.append(fill);
    const value = document.createElement("span");
    value.className = "pct";
    value.textContent = pct(item.p);
    li.append(label, track, value);
    list.append(li);
  });
  $("dist").hidden = false;
}

function status(id, text, error = false) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("error", error);
}

/** Moves a slider to a model's own default, updating its label. */
function setSlider(id, value) {
  $(id).value = value;
  $(id).dispatchEvent(new Event("input"));
}

function bindSlider(id, format) {
  const input = $(id);
  const out = $(id + "-out");
  const show = () => { out.textContent = format(Number(input.value)); };
  input.addEventListener("input", show);
  show();
}

function num(id) {
  return Number($(id).value);
}

function modelsOf(modality) {
  return state.models.filter((m) => m.modality === modality);
}

async function details(id) {
  if (!state.details[id]) {
    const res = await api("/v1/models/" + encodeURIComponent(id));
    if (!res.ok) throw new Error("cannot read model " + id);
    state.details[id] = await res.json();
  }
  return state.details[id];
}

/** Class chips: one per class, plus "any" (unconditional). Calls `pick(label)` on a press. */
function chips(container, classes, withAny) {
  container.replaceChildren();
  const all = withAny ? classes.concat([""]) : classes;
  all.forEach((c, i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = c === "" ? "any" : c;
    b.dataset.class = c;
    b.id = container.id + "-" + (c === "" ? "any" : c);
    b.setAttribute("aria-pressed", i === 0 ? "true" : "false");
    b.addEventListener("click", () => {
      container.querySelectorAll("button").forEach((x) => x.setAttribute("aria-pressed", "false"));
      b.setAttribute("aria-pressed", "true");
    });
    container.append(b);
  });
}

function chosen(container) {
  const b = container.querySelector('button[aria-pressed="true"]');
  return b ? b.dataset.class : "";
}

// ---------------------------------------------------------------- text

/** A token span: coloured by its probability, showing its distribution on hover or tap. */
function tokenSpan(text, p, alternatives, step) {
  const span = document.createElement("span");
  span.className = "tok";
  span.textContent = text.replaceAll("\n", "⏎\n");
  span.style.background = colour(p);
  const show = () => {
    document.querySelectorAll(".tok.active").forEach((t) => t.classList.remove("active"));
    span.classList.add("active");
    let items = alternatives.slice();
    let drawn = items.findIndex((a) => a.label === text);
    if (drawn < 0) {
      items.push({ label: text, p });
      drawn = items.length - 1;
    }
    showDist(`Token ${step + 1}: “${visible(text)}”`, `drawn with p = ${pct(p)}; the ${alternatives.length} most likely`, items, drawn);
  };
  span.addEventListener("mouseenter", show);
  span.addEventListener("click", show);
  return span;
}

/** Alternatives of a completions chunk (token -> log-probability), most likely first. */
function legacyTop(top) {
  return Object.entries(top || {})
    .map(([label, lp]) => ({ label, p: Math.exp(lp) }))
    .sort((a, b) => b.p - a.p);
}

async function generateText() {
  if (state.busy.text) return;
  const model = $("text-model").value;
  const prompt = $("text-prompt").value;
  if (!model) return status("text-status", "No text model is served.", true);
  const out = $("text-output");
  out.replaceChildren();
  const head = document.createElement("span");
  head.className = "prompt-text";
  head.textContent = prompt;
  out.append(head);
  const controller = new AbortController();
  state.busy.text = controller;
  $("text-generate").disabled = true;
  $("text-stop").disabled = false;
  const temperature = num("text-temperature");
  const body = {
    model, prompt, stream: true, logprobs: 10,
    max_tokens: num("text-max"), temperature, top_p: num("text-top-p"),
    seed: num("text-seed"),
  };
  if (num("text-top-k") > 0) body.top_k = num("text-top-k");
  status("text-status", "Drawing…");
  const started = performance.now();
  let steps = 0;
  let finish = null;
  try {
    const res = await post("/v1/completions", body, controller.signal);
    for await (const { data } of events(res)) {
      const choice = data.choices && data.choices[0];
      if (!choice) continue;
      if (choice.finish_reason) finish = choice.finish_reason;
      const lp = choice.logprobs;
      if (!lp || !lp.tokens) continue;
      lp.tokens.forEach((tok, k) => {
        out.append(tokenSpan(tok, Math.exp(lp.token_logprobs[k]), legacyTop(lp.top_logprobs[k]), steps));
        steps++;
      });
      status("text-status", `Drawing… ${steps} tokens`);
    }
    const seconds = (performance.now() - started) / 1000;
    status("text-status", `Done: ${steps} tokens in ${seconds.toFixed(1)} s (${(steps / seconds).toFixed(0)} tokens/s), finish: ${finish}. Hover a token.`);
  } catch (e) {
    if (e.name === "AbortError") status("text-status", `Stopped after ${steps} tokens.`);
    else status("text-status", e.message, true);
  } finally {
    state.busy.text = null;
    $("text-generate").disabled = false;
    $("text-stop").disabled = true;
  }
}

// ---------------------------------------------------------------- chat

function chatBubble(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  if (text) div.textContent = text;
  $("chat-log").append(div);
  $("chat-log").scrollTop = $("chat-log").scrollHeight;
  return div;
}

async function sendChat(event) {
  event.preventDefault();
  if (state.busy.chat) return;
  const model = $("chat-model").value;
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text || !model) return;
  input.value = "";
  state.chat.push({ role: "user", content: text });
  chatBubble("user", text);
  const bubble = chatBubble("assistant", "");
  const messages = [];
  const system = $("chat-system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...state.chat);
  state.busy.chat = true;
  $("chat-send").disabled = true;
  status("chat-status", "Replying…");
  let reply = "";
  let steps = 0;
  try {
    const res = await post("/v1/chat/completions", {
      model, messages, stream: true, logprobs: true, top_logprobs: 10,
      max_tokens: num("chat-max"), temperature: num("chat-temperature"),
      // Each turn its own seed, so replies differ yet a replayed chat is the same.
      seed: num("chat-seed") + state.chat.length,
    });
    for await (const { data } of events(res)) {
      const choice = data.choices && data.choices[0];
      if (!choice) continue;
      if (choice.delta && choice.delta.content) reply += choice.delta.content;
      const content = choice.logprobs && choice.logprobs.content;
      if (!content) continue;
      for (const t of content) {
        const alternatives = (t.top_logprobs || []).map((a) => ({ label: a.token, p: Math.exp(a.logprob) }));
        bubble.append(tokenSpan(t.token, Math.exp(t.logprob), alternatives, steps++));
      }
      $("chat-log").scrollTop = $("chat-log").scrollHeight;
    }
    state.chat.push({ role: "assistant", content: reply });
    status("chat-status", `${steps} tokens. Hover a token to see its distribution.`);
  } catch (e) {
    state.chat.pop();
    bubble.remove();
    status("chat-status", e.message, true);
  } finally {
    state.busy.chat = false;
    $("chat-send").disabled = false;
  }
}

// ---------------------------------------------------------------- image

const image = { tokens: [], queue: [], pictures: [], info: null, cell: 12, painted: 0 };

async function setupImage() {
  const id = $("image-model").value;
  if (!id) return;
  const info = await details(id);
  image.info = info;
  chips($("image-classes"), info.classes || [], true);
  if (info.guidance) setSlider("image-guidance", info.guidance);
  if (info.temperature) setSlider("image-temperature", info.temperature);
  image.pictures = (info.token_images || []).map((src) => {
    const img = new Image();
    img.src = src;
    return img;
  });
  const canvas = $("image-canvas");
  image.cell = Math.max(1, Math.floor(336 / info.token_grid[0]));
  canvas.width = image.cell * info.token_grid[0];
  canvas.height = image.cell * info.token_grid[1];
  clearImage();
}

function clearImage() {
  const ctx = $("image-canvas").getContext("2d");
  ctx.fillStyle = "#8a8a8a";
  ctx.fillRect(0, 0, ctx.canvas.width, ctx.canvas.height);
  image.tokens = [];
  image.queue = [];
  image.painted = 0;
}

/** Paints queued tokens a few per frame, so the picture fills in block by block. */
function paintQueued() {
  const ctx = $("image-canvas").getContext("2d");
  ctx.imageSmoothingEnabled = false;
  const cols = image.info.token_grid[0];
  const n = Math.max(1, Math.ceil(image.queue.length / 6));
  for (const t of image.queue.splice(0, n)) {
    const x = (t.pos % cols) * image.cell;
    const y = Math.floor(t.pos / cols) * image.cell;
    const pic = image.pictures[t.id];
    if (pic && pic.complete) ctx.drawImage(pic, x, y, image.cell, image.cell);
    image.painted++;
  }
  if (image.queue.length) requestAnimationFrame(paintQueued);
}

function imageCellAt(event) {
  const canvas = $("image-canvas");
  const rect = canvas.getBoundingClientRect();
  const cols = image.info.token_grid[0];
  const rows = image.info.token_grid[1];
  const cx = Math.floor(((event.clientX - rect.left) / rect.width) * cols);
  const cy = Math.floor(((event.clientY - rect.top) / rect.height) * rows);
  if (cx < 0 || cy < 0 || cx >= cols || cy >= rows) return -1;
  return cy * cols + cx;
}

function showPixel(event) {
  if (!image.info) return;
  const pos = imageCellAt(event);
  const t = image.tokens[pos];
  if (!t) return;
  const labels = image.info.token_labels || [];
  const items = t.top.map((a) => ({ label: labels[a.id] || String(a.id), img: image.info.token_images[a.id], p: a.prob }));
  let drawn = t.top.findIndex((a) => a.id === t.id);
  if (drawn < 0) {
    items.push({ label: labels[t.id] || String(t.id), img: image.info.token_images[t.id], p: t.prob });
    drawn = items.length - 1;
  }
  const cols = image.info.token_grid[0];
  showDist(`Block (${pos % cols}, ${Math.floor(pos / cols)})`, `token ${pos + 1} of ${image.info.tokens_per_image}, drawn with p = ${pct(t.prob)}`, items, drawn);
}

async function drawImage() {
  if (state.busy.image || !image.info) return;
  state.busy.image = true;
  $("image-draw").disabled = true;
  clearImage();
  const cls = chosen($("image-classes"));
  const body = {
    model: $("image-model").value, prompt: cls, n: 1, stream: true, response_format: "b64_json",
    top_logprobs: Math.min(16, (image.info.token_images || []).length || 16),
    temperature: num("image-temperature"), seed: num("image-seed"),
  };
  if (cls !== "") body.guidance = num("image-guidance");
  status("image-status", "Drawing…");
  const started = performance.now();
  try {
    const res = await post("/v1/images/generations", body);
    for await (const { event, data } of events(res)) {
      if (event === "image_generation.partial_image") {
        data.tokens.forEach((t, k) => {
          const pos = data.first_token + k;
          image.tokens[pos] = t;
          image.queue.push({ pos, id: t.id });
        });
        if (image.queue.length === data.tokens.length) requestAnimationFrame(paintQueued);
        status("image-status", `Drawing… row ${data.rows_done} of ${data.rows}`);
      } else if (event === "image_generation.completed") {
        const seconds = (performance.now() - started) / 1000;
        status("image-status", `Done: ${image.info.tokens_per_image} tokens in ${seconds.toFixed(1)} s. Hover a block to see its distribution.`);
      }
    }
  } catch (e) {
    status("image-status", e.message, true);
  } finally {
    state.busy.image = false;
    $("image-draw").disabled = false;
  }
}

// ---------------------------------------------------------------- audio

const audio = { samples: [], total: 0, rate: 8000, info: null };

async function setupAudio() {
  const id = $("audio-model").value;
  if (!id) return;
  const info = await details(id);
  audio.info = info;
  audio.rate = info.sample_rate || 8000;
  chips($("audio-classes"), info.classes || [], true);
  if (info.guidance) setSlider("audio-guidance", info.guidance);
  if (info.temperature) setSlider("audio-temperature", info.temperature);
  drawWave();
}

/** The waveform so far, across the whole clip's width (it grows left to right). */
function drawWave() {
  const canvas = $("audio-wave");
  const ctx = canvas.getContext("2d");
  const w = canvas.width;
  const h = canvas.height;
  const css = getComputedStyle(document.documentElement);
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = css.getPropertyValue("--line").trim() || "#ccc";
  ctx.beginPath();
  ctx.moveTo(0, h / 2);
  ctx.lineTo(w, h / 2);
  ctx.stroke();
  const total = Math.max(audio.total, audio.samples.length, 1);
  const per = total / w;
  ctx.fillStyle = css.getPropertyValue("--accent").trim() || "#b4372f";
  for (let x = 0; x < w; x++) {
    const a = Math.floor(x * per);
    const b = Math.min(audio.samples.length, Math.floor((x + 1) * per) + 1);
    if (a >= audio.samples.length) break;
    let lo = 1, hi = -1;
    for (let i = a; i < b; i++) {
      lo = Math.min(lo, audio.samples[i]);
      hi = Math.max(hi, audio.samples[i]);
    }
    const y0 = (1 - hi) * h / 2;
    const y1 = (1 - lo) * h / 2;
    ctx.fillRect(x, y0, 1, Math.max(1, y1 - y0));
  }
}

function pcmToFloats(b64) {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const view = new DataView(bytes.buffer);
  const out = new Array(bytes.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = view.getInt16(2 * i, true) / 32767;
  return out;
}

/** A 16-bit mono WAV file of the samples, to play. */
function wav(samples, rate) {
  const buffer = new ArrayBuffer(44 + 2 * samples.length);
  const v = new DataView(buffer);
  const text = (at, s) => [...s].forEach((c, i) => v.setUint8(at + i, c.charCodeAt(0)));
  text(0, "RIFF"); v.setUint32(4, 36 + 2 * samples.length, true); text(8, "WAVE");
  text(12, "fmt "); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, rate, true); v.setUint32(28, 2 * rate, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true);
  text(36, "data"); v.setUint32(40, 2 * samples.length, true);
  samples.forEach((x, i) => v.setInt16(44 + 2 * i, Math.round(Math.max(-1, Math.min(1, x)) * 32767), true));
  return new Blob([buffer], { type: "audio/wav" });
}

async function sayDigit() {
  if (state.busy.audio || !audio.info) return;
  state.busy.audio = true;
  $("audio-say").disabled = true;
  const player = $("audio-player");
  player.hidden = true;
  const digit = chosen($("audio-classes"));
  const seconds = num("audio-seconds");
  audio.samples = [];
  audio.total = Math.round(seconds * audio.rate);
  drawWave();
  const body = {
    model: $("audio-model").value, input: digit, voice: "alloy", response_format: "wav",
    stream_format: "sse", seconds, temperature: num("audio-temperature"), seed: num("audio-seed"),
  };
  if (digit !== "") body.guidance = num("audio-guidance");
  status("audio-status", "Drawing samples…");
  const started = performance.now();
  try {
    const res = await post("/v1/audio/speech", body);
    for await (const { event, data } of events(res)) {
      if (event === "speech.audio.delta") {
        audio.samples.push(...pcmToFloats(data.audio));
        drawWave();
        status("audio-status", `Drawing… ${audio.samples.length} of ${audio.total} samples`);
      } else if (event === "speech.audio.done") {
        const took = (performance.now() - started) / 1000;
        drawWave();
        if (player.src) URL.revokeObjectURL(player.src);
        player.src = URL.createObjectURL(wav(audio.samples, data.sample_rate || audio.rate));
        player.hidden = false;
        player.play().catch(() => { /* the browser may wait for a click on the player */ });
        status("audio-status", `Done: ${(audio.samples.length / audio.rate).toFixed(2)} s of audio drawn in ${took.toFixed(1)} s.`);
      }
    }
  } catch (e) {
    status("audio-status", e.message, true);
  } finally {
    state.busy.audio = false;
    $("audio-say").disabled = false;
  }
}

// ---------------------------------------------------------------- tabs and start-up

function selectTab(button) {
  if (!button || button.disabled) return;
  document.querySelectorAll("#tabs button").forEach((b) => {
    const on = b === button;
    b.setAttribute("aria-selected", on ? "true" : "false");
    $(b.dataset.panel).hidden = !on;
  });
  $("dist").hidden = true;
  history.replaceState(null, "", "#" + button.id.replace("tab-", ""));
}

function fillSelects() {
  document.querySelectorAll(".model-select").forEach((select) => {
    select.replaceChildren();
    for (const m of modelsOf(select.dataset.modality)) {
      const o = document.createElement("option");
      o.value = m.id;
      o.textContent = `${m.id} (${m.modality}, context ${m.context_length})`;
      select.append(o);
    }
  });
  const has = (m) => modelsOf(m).length > 0;
  $("tab-text").disabled = !has("text");
  $("tab-chat").disabled = !has("text");
  $("tab-image").disabled = !has("image");
  $("tab-audio").disabled = !has("audio");
}

function chatNote() {
  const m = state.models.find((x) => x.id === $("chat-model").value);
  $("chat-template-note").textContent = !m ? "" : m.chat_template === "model"
    ? "Messages go through the model's own chat template."
    : "This model has no chat template: messages are written as “role: text” lines (a Shakespeare model will answer in verse, not as an assistant).";
}

async function start() {
  bindSlider("text-temperature", (v) => (v === 0 ? "greedy" : v.toFixed(2)));
  bindSlider("text-top-k", (v) => (v === 0 ? "off" : String(v)));
  bindSlider("text-top-p", (v) => v.toFixed(2));
  bindSlider("text-max", (v) => String(v));
  bindSlider("chat-temperature", (v) => (v === 0 ? "greedy" : v.toFixed(2)));
  bindSlider("chat-max", (v) => String(v));
  bindSlider("image-guidance", (v) => v.toFixed(1));
  bindSlider("image-temperature", (v) => v.toFixed(2));
  bindSlider("audio-seconds", (v) => v.toFixed(2));
  bindSlider("audio-guidance", (v) => v.toFixed(1));
  bindSlider("audio-temperature", (v) => v.toFixed(2));
  document.querySelectorAll(".dice").forEach((b) =>
    b.addEventListener("click", () => { $(b.dataset.seed).value = Math.floor(Math.random() * 1e6); }));
  document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => selectTab(b)));
  $("dist-close").addEventListener("click", () => { $("dist").hidden = true; });
  $("text-generate").addEventListener("click", generateText);
  $("text-stop").addEventListener("click", () => state.busy.text && state.busy.text.abort());
  $("text-prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) generateText();
  });
  $("chat-form").addEventListener("submit", sendChat);
  $("chat-reset").addEventListener("click", () => { state.chat = []; $("chat-log").replaceChildren(); status("chat-status", ""); });
  $("chat-model").addEventListener("change", chatNote);
  $("image-model").addEventListener("change", setupImage);
  $("image-draw").addEventListener("click", drawImage);
  $("image-canvas").addEventListener("mousemove", showPixel);
  $("image-canvas").addEventListener("click", showPixel);
  $("audio-model").addEventListener("change", setupAudio);
  $("audio-say").addEventListener("click", sayDigit);

  try {
    const res = await api("/v1/models");
    if (!res.ok) throw new Error("the server answered " + res.status);
    state.models = (await res.json()).data;
  } catch (e) {
    const banner = $("banner");
    banner.textContent = "Cannot list the models: " + e.message;
    banner.hidden = false;
    return;
  }
  fillSelects();
  chatNote();
  await Promise.all([setupImage(), setupAudio()]).catch((e) => {
    $("banner").textContent = e.message;
    $("banner").hidden = false;
  });
  const wanted = $("tab-" + location.hash.slice(1));
  const first = [...document.querySelectorAll("#tabs button")].find((b) => !b.disabled);
  selectTab(wanted && !wanted.disabled ? wanted : first);
  document.body.dataset.ready = "true";
}

start();
