// The page's script: a file of its own, so that the Content-Security-Policy needs no 'unsafe-inline'.
"use strict";
const $ = (id) => document.getElementById(id);
const SVGNS = "http://www.w3.org/2000/svg";
const W = 400, H = 300, PAD = 16;
// the circumplex: its centre (AX, AY) and the radius at which valence or arousal reaches 1 (viewBox 0 0 320 240)
const AX = 166, AY = 120, AR = 80;
let MODEL = null, SCALE = null, recorder = null, stopTimer = null;

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function svg(tag, attrs) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function drawMap() {
  const map = $("map");
  map.replaceChildren();
  const pts = MODEL.latent_map.points, labels = MODEL.latent_map.labels;
  if (!pts.length) {
    const t = svg("text", {x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#5f6368"});
    t.textContent = "This model ships no latent map.";
    map.appendChild(t);
    return;
  }
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const [x, y] of pts) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
  const sx = (W - 2 * PAD) / ((x1 - x0) || 1), sy = (H - 2 * PAD) / ((y1 - y0) || 1);
  SCALE = (x, y) => [PAD + (Math.min(Math.max(x, x0), x1) - x0) * sx, H - PAD - (Math.min(Math.max(y, y0), y1) - y0) * sy];
  const g = svg("g", {"fill-opacity": "0.55"});
  pts.forEach(([x, y], i) => {
    const [cx, cy] = SCALE(x, y);
    g.appendChild(svg("circle", {cx: cx.toFixed(1), cy: cy.toFixed(1), r: 3, fill: MODEL.colors[labels[i]] || "#bcbd22"}));
  });
  map.appendChild(g);
}

function drawCircumplex() {
  const c = $("circumplex");
  c.replaceChildren(
    svg("rect", {x: AX - AR, y: AY - AR, width: 2 * AR, height: 2 * AR, fill: "none", stroke: "#d9d9de"}),
    svg("circle", {id: "affect-ring", cx: AX, cy: AY, r: AR, fill: "none", stroke: "#d9d9de"}),
    svg("line", {id: "affect-axis-x", x1: AX - AR, y1: AY, x2: AX + AR, y2: AY, stroke: "#9aa0a6"}),
    svg("line", {id: "affect-axis-y", x1: AX, y1: AY - AR, x2: AX, y2: AY + AR, stroke: "#9aa0a6"}));
  const labels = [["unpleasant", AX - AR - 4, AY + 4, "end"], ["pleasant", AX + AR + 4, AY + 4, "start"],
                  ["activated", AX, AY - AR - 8, "middle"], ["calm", AX, AY + AR + 20, "middle"]];
  for (const [text, x, y, anchor] of labels) {
    const t = svg("text", {x, y, "text-anchor": anchor, class: "axis-label"});
    t.textContent = text;
    c.appendChild(t);
  }
}

// The clip's arousal and valence as a dot on the circumplex; the figure is hidden when the answer has none
// (a model without those heads, or a clip that is not speech).
function showAffect(r) {
  const old = $("affect-dot"); if (old) old.remove();
  const has = typeof r.arousal === "number" && typeof r.valence === "number";
  $("affect").hidden = !has;
  if (!has) return;
  const clip = (v) => Math.max(-1, Math.min(1, v)), signed = (v) => (v < 0 ? "-" : "+") + Math.abs(v).toFixed(2);
  const text = `arousal ${signed(r.arousal)}, valence ${signed(r.valence)}`;
  const dot = svg("circle", {id: "affect-dot", cx: (AX + AR * clip(r.valence)).toFixed(1),
    cy: (AY - AR * clip(r.arousal)).toFixed(1), r: 8, fill: MODEL.colors[r.emotion] || "#bcbd22", stroke: "#000",
    "stroke-width": 2});
  const t = svg("title", {}); t.textContent = `your clip: ${text}`; dot.appendChild(t);
  $("circumplex").appendChild(dot);
  $("affect-values").textContent = text[0].toUpperCase() + text.slice(1);
}

function drawLegend() {
  $("legend").replaceChildren(...MODEL.classes.map((c) => {
    const li = document.createElement("li");
    const s = document.createElement("span");
    s.className = "swatch"; s.style.background = MODEL.colors[c];
    li.append(s, c);
    return li;
  }));
}

function showResult(r) {
  const answer = r.answer || r.emotion;
  $("emotion").textContent = answer;
  $("emotion").style.color = MODEL.colors[answer] || "inherit";
  $("details").textContent = `confidence ${(100 * r.confidence).toFixed(0)} % · ${r.duration_s.toFixed(1)} s of audio` +
    (answer === "not speech" ? ` · the speech guard hears no speech (most probable emotion: ${r.emotion})` : "") +
    (answer === "uncertain" ? ` · too unsure to name an emotion (most probable: ${r.emotion})` : "") +
    (r.speaker_clips ? (r.adapted ? ` · adapted to your voice (${r.speaker_clips} clips)`
                                  : " · first clip of your voice: not adapted yet") : "") +
    (r.repeated ? " · this clip was already counted, so your voice's statistics did not change" : "");
  const rows = Object.entries(r.probabilities).sort((a, b) => b[1] - a[1]).map(([c, p]) => {
    const row = document.createElement("div");
    row.className = "bar-row"; row.setAttribute("role", "listitem");
    row.setAttribute("aria-label", `${c}: ${(100 * p).toFixed(1)} percent`);
    const name = document.createElement("span"); name.textContent = c;
    const track = document.createElement("div"); track.className = "bar-track";
    const bar = document.createElement("div"); bar.className = "bar";
    bar.style.width = `${(100 * p).toFixed(1)}%`; bar.style.background = MODEL.colors[c] || "#bcbd22";
    track.appendChild(bar);
    const v = document.createElement("span"); v.className = "v"; v.textContent = `${(100 * p).toFixed(0)} %`;
    row.append(name, track, v);
    return row;
  });
  $("bars").replaceChildren(...rows);
  showAffect(r);
  const old = $("clip-marker"); if (old) old.remove();
  if (r.latent_map && SCALE) {
    const [cx, cy] = SCALE(r.latent_map[0], r.latent_map[1]);
    const g = svg("g", {id: "clip-marker"});
    g.appendChild(svg("circle", {cx, cy, r: 10, fill: MODEL.colors[r.emotion] || "#bcbd22", stroke: "#000", "stroke-width": 3}));
    g.appendChild(svg("circle", {cx, cy, r: 14, fill: "none", stroke: "#fff", "stroke-width": 2}));
    const t = svg("title", {}); t.textContent = `your clip (${r.emotion})`; g.appendChild(t);
    $("map").appendChild(g);
  }
}

// Decode any audio the browser understands and re-encode it as 16-bit mono PCM WAV at the model's rate.
async function toWav(arrayBuffer) {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  const ctx = new Ctx();
  let buf;
  try { buf = await ctx.decodeAudioData(arrayBuffer); } finally { ctx.close(); }
  const sr = MODEL.sample_rate;
  const off = new OfflineAudioContext(1, Math.max(1, Math.ceil(buf.duration * sr)), sr);
  const src = off.createBufferSource(); src.buffer = buf; src.connect(off.destination); src.start();
  const x = (await off.startRendering()).getChannelData(0);
  const out = new DataView(new ArrayBuffer(44 + 2 * x.length));
  const str = (o, s) => { for (let i = 0; i < s.length; i++) out.setUint8(o + i, s.charCodeAt(i)); };
  str(0, "RIFF"); out.setUint32(4, 36 + 2 * x.length, true); str(8, "WAVE"); str(12, "fmt ");
  out.setUint32(16, 16, true); out.setUint16(20, 1, true); out.setUint16(22, 1, true);
  out.setUint32(24, sr, true); out.setUint32(28, 2 * sr, true); out.setUint16(32, 2, true); out.setUint16(34, 16, true);
  str(36, "data"); out.setUint32(40, 2 * x.length, true);
  for (let i = 0; i < x.length; i++) out.setInt16(44 + 2 * i, Math.max(-1, Math.min(1, x[i])) * 32767, true);
  return new Blob([out], {type: "audio/wav"});
}

async function post(blob, name) {
  const form = new FormData();
  form.append("file", blob, name);
  const res = await fetch("v1/predict" + ($("adapt").checked ? `?session=${SESSION}` : ""), {method: "POST", body: form});
  let body = null;
  try { body = await res.json(); } catch (e) { body = {error: `server answered ${res.status} without JSON`}; }
  return {status: res.status, body};
}

async function analyse(blob, name, browserDecodeFirst) {
  setStatus(`Analysing ${name}…`);
  try {
    let r = browserDecodeFirst ? null : await post(blob, name);
    if (!r || r.status === 415) {  // a format the server cannot read: let the browser decode it
      let wav;
      try { wav = await toWav(await blob.arrayBuffer()); }
      catch (e) { if (r) { setStatus(r.body.error, true); return; } throw new Error(`${name}: the browser could not decode it`); }
      r = await post(wav, name.replace(/\.[^.]*$/, "") + ".wav");
    }
    if (r.status !== 200) { setStatus(r.body.error || `error ${r.status}`, true); return; }
    showResult(r.body);
    setStatus(`${name}: done.`);
  } catch (e) {
    setStatus(`Could not analyse ${name}: ${e.message}`, true);
  }
}

const SESSION = "page-" + Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");
$("adapt").addEventListener("change", () => { $("reset").hidden = !$("adapt").checked; });
$("reset").addEventListener("click", async () => {
  await fetch(`v1/sessions/${SESSION}`, {method: "DELETE"});
  setStatus("Your voice's statistics were forgotten; the next clip starts a new session.");
});

$("file").addEventListener("change", (ev) => {
  const f = ev.target.files[0];
  if (f) analyse(f, f.name, false);
  ev.target.value = "";
});

$("record").addEventListener("click", async () => {
  const btn = $("record");
  if (recorder) { recorder.stop(); return; }
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    setStatus("This browser cannot record here (the microphone needs https or localhost).", true);
    return;
  }
  let stream;
  try { stream = await navigator.mediaDevices.getUserMedia({audio: true}); }
  catch (e) { setStatus(`No microphone: ${e.message}`, true); return; }
  const chunks = [];
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
  recorder.onstop = () => {
    clearTimeout(stopTimer);
    stream.getTracks().forEach((t) => t.stop());
    recorder = null;
    btn.textContent = "Record"; btn.classList.remove("recording"); btn.setAttribute("aria-pressed", "false");
    analyse(new Blob(chunks, {type: chunks.length ? chunks[0].type : "audio/webm"}), "recording", true);
  };
  recorder.start();
  btn.textContent = "Stop"; btn.classList.add("recording"); btn.setAttribute("aria-pressed", "true");
  setStatus("Recording… speak, then press Stop.");
  stopTimer = setTimeout(() => recorder && recorder.stop(), 1000 * Math.max(1, MODEL.limits.max_seconds - 1));
});

(async () => {
  $("file").disabled = $("record").disabled = true;
  try {
    const res = await fetch("v1/model");
    if (!res.ok) throw new Error(`server answered ${res.status}`);
    MODEL = await res.json();
  } catch (e) { setStatus(`Cannot reach the model: ${e.message}`, true); return; }
  drawMap(); drawLegend(); drawCircumplex();
  $("limits").textContent = `up to ${MODEL.limits.max_seconds} s, ${(MODEL.limits.max_bytes / 1e6).toFixed(0)} MB`;
  const m = MODEL.metrics, bacc = m["balanced_accuracy"] ?? m["balanced_accuracy.mean"];
  $("footer").textContent = `emovae ${MODEL.emovae} · model ${MODEL.model} (${MODEL.backend})` +
    (bacc !== undefined ? ` · balanced accuracy ${(100 * bacc).toFixed(1)} %` : "");
  $("file").disabled = $("record").disabled = false;
  setStatus("Ready: choose a file or record.");
})();
