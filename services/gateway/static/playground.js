// cascade playground: plain JavaScript, no dependencies. Every piece of text that comes
// from audio, hypotheses or the server is inserted with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let recorded = null; // Blob from the microphone
let recorder = null;

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

// ---------------------------------------------------------------- word alignment

const key = (w) => w.toLowerCase().replace(/[^\p{L}\p{N}']/gu, "");
const words = (s) => (s || "").split(/\s+/).filter(Boolean);

// Levenshtein alignment of two word lists: [{op: eq|sub|ins|del, a, b}] (a from `from`, b from `to`).
function align(from, to) {
  const n = from.length, m = to.length;
  const d = Array.from({ length: n + 1 }, (_, i) => Array(m + 1).fill(0).map((_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= n; i++)
    for (let j = 1; j <= m; j++)
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (key(from[i - 1]) === key(to[j - 1]) ? 0 : 1));
  const ops = [];
  let i = n, j = m;
  while (i > 0 || j > 0) {
    if (i > 0 && j > 0 && d[i][j] === d[i - 1][j - 1] + (key(from[i - 1]) === key(to[j - 1]) ? 0 : 1)) {
      ops.push({ op: key(from[i - 1]) === key(to[j - 1]) ? "eq" : "sub", a: from[i - 1], b: to[j - 1], bi: j - 1 }); i--; j--;
    } else if (j > 0 && d[i][j] === d[i][j - 1] + 1) {
      ops.push({ op: "ins", a: null, b: to[j - 1], bi: j - 1 }); j--;
    } else {
      ops.push({ op: "del", a: from[i - 1], b: null, bi: j }); i--;
    }
  }
  return ops.reverse();
}

// The corrected text as nodes, with changes against the 1-best marked (hover: the 1-best word and N-best alternatives).
function diffNodes(oneBest, corrected, hypotheses) {
  const ops = align(words(oneBest), words(corrected));
  const slots = alternativesBySlot(corrected, hypotheses);
  const out = [];
  for (const o of ops) {
    let node;
    if (o.op === "eq") node = el("span", o.b);
    else if (o.op === "sub") {
      node = el("span", o.b, "rep");
      node.title = `1-best: ${o.a}` + altText(slots[o.bi], o.b);
    } else if (o.op === "ins") {
      node = el("span", o.b, "ins");
      node.title = "inserted" + altText(slots[o.bi], o.b);
    } else {
      node = el("span", o.a, "del");
      node.title = "removed from the 1-best";
    }
    out.push(node, document.createTextNode(" "));
  }
  return out;
}
function altText(list, self) {
  const others = (list || []).filter((w) => key(w) !== key(self));
  return others.length ? ` · N-best alternatives: ${others.join(", ")}` : "";
}
// For each word of `text`, the words the N-best hypotheses put in that place.
function alternativesBySlot(text, hypotheses) {
  const target = words(text);
  const slots = target.map(() => []);
  for (const h of hypotheses) {
    const ops = align(target, words(h));
    let ai = 0;
    for (const o of ops) {
      if (o.op === "eq" || o.op === "sub" || o.op === "del") {
        if (o.op !== "del" && !slots[ai].includes(o.b)) slots[ai].push(o.b);
        ai++;
      }
    }
  }
  return slots;
}

// ---------------------------------------------------------------- rendering

function renderSegment(seg, correction) {
  const node = $("segment-tpl").content.firstElementChild.cloneNode(true);
  const hyps = (seg.nbest && seg.nbest.hypotheses) || [];
  const oneBest = hyps.length ? hyps[0].text : "";
  const fixed = correction ? correction.text : seg.text;
  node.querySelector(".seg-head").textContent = `${seg.start.toFixed(2)}–${seg.end.toFixed(2)} s` + (seg.nbest.language ? ` · ${seg.nbest.language}` : "");
  node.querySelector(".diff").append(...diffNodes(oneBest, fixed, hyps.map((h) => h.text)));
  const guard = node.querySelector(".guard");
  if (correction) {
    let line = `method: ${correction.method} · status: ${correction.status}`;
    if (correction.chosen !== null && correction.chosen !== undefined) line += ` · chosen hypothesis #${correction.chosen + 1}`;
    if (correction.fallback_reason) line += ` · fallback: ${correction.fallback_reason}`;
    const guards = Object.entries(correction.guards || {}).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`);
    if (guards.length) line += ` · guards: ${guards.join(", ")}`;
    guard.textContent = line;
  } else {
    guard.textContent = "no correction requested: showing the 1-best";
  }
  const body = node.querySelector(".nbest tbody");
  hyps.forEach((h, i) => {
    const tr = el("tr");
    if (correction && correction.chosen === i) tr.className = "chosen";
    tr.append(el("td", i + 1), el("td", h.text), el("td", h.am_score == null ? "" : h.am_score.toFixed(2)),
      el("td", h.avg_logprob == null ? "" : h.avg_logprob.toFixed(3)));
    body.append(tr);
  });
  return node;
}

function stageTimings(transcript, corrections, timings) {
  if (timings) return Object.entries(timings);
  const rows = (transcript.stages || []).map((s) => [s.stage, s.seconds]);
  if (rows.some(([stage]) => stage.startsWith("correct"))) return rows; // the transcript already timed it
  const corr = corrections.filter((c) => c && c.info).reduce((t, c) => t + (c.info.seconds || 0), 0);
  if (corr) rows.push(["correct", corr]);
  return rows;
}

// Render a Transcript (transcribe/translate) or a VoiceTurnResponse (turn). Exposed for tests.
function render(data, mode) {
  const turn = mode === "turn";
  const transcript = data.transcript;
  const corrections = turn ? ((data.correction && data.correction.corrections) || []) : transcript.segments.map((s) => s.correction);
  $("segments").replaceChildren(...transcript.segments.map((s, i) => renderSegment(s, corrections[i] || null)));
  $("final-text").textContent = turn && data.correction ? data.correction.text : transcript.text;
  const notes = [];
  if (corrections.some((c) => c && c.status === "unavailable")) notes.push("Correction is unavailable (the LLM could not be reached): showing the recogniser's 1-best.");
  if (!transcript.segments.length) notes.push("No speech found in this audio.");
  if (turn && data.degraded) for (const [stage, why] of Object.entries(data.degraded)) notes.push(`${stage} degraded: ${why}`);
  $("notice").hidden = !notes.length;
  $("notice").textContent = notes.join(" ");
  const tbody = $("timings").querySelector("tbody");
  const rows = stageTimings(transcript, corrections, turn ? data.timings : null);
  if (turn && data.time_to_first_audio != null) rows.push(["time to first audio", data.time_to_first_audio]);
  tbody.replaceChildren(...rows.map(([k, v]) => { const tr = el("tr"); tr.append(el("td", k), el("td", Number(v).toFixed(3))); return tr; }));
  $("reply-box").hidden = !turn;
  if (turn) {
    $("reply-text").textContent = data.reply ? data.reply.text : "(no reply)";
    const audio = $("reply-audio");
    if (data.audio) { audio.src = `data:audio/${data.audio.format};base64,${data.audio.data}`; audio.hidden = false; }
    else { audio.removeAttribute("src"); audio.hidden = true; }
    $("reply-note").hidden = !!data.audio;
    $("reply-note").textContent = data.audio ? "" : "Speech output is unavailable: the reply is shown as text.";
  }
  $("result").hidden = false;
}
window.cascadeRender = render;

// ---------------------------------------------------------------- requests

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function submit(event) {
  event.preventDefault();
  showError("");
  const file = $("file").files[0] || recorded;
  if (!file) return showError("Choose an audio file or record something first.");
  const mode = $("mode").value;
  const form = new FormData();
  form.append("file", file, file.name || "recording.webm");
  const headers = {};
  if ($("api_key").value) headers.Authorization = `Bearer ${$("api_key").value}`;
  let url = "/v1/voice/turn";
  if (mode !== "turn") {
    url = mode === "translate" ? "/v1/audio/translations" : "/v1/audio/transcriptions";
    form.append("model", $("model").value);
    form.append("response_format", "json");
    form.append("n_best", $("n_best").value);
    form.append("correct", $("correct").value);
  }
  $("submit").disabled = true;
  $("busy").textContent = "working…";
  try {
    const resp = await fetch(url, { method: "POST", body: form, headers });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error((body.error && body.error.message) || `HTTP ${resp.status}`);
    render(body, mode);
  } catch (err) {
    showError(`Request failed: ${err.message}`);
  } finally {
    $("submit").disabled = false;
    $("busy").textContent = "";
  }
}

async function toggleRecording() {
  const button = $("record");
  if (recorder && recorder.state === "recording") { recorder.stop(); return; }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const chunks = [];
    recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (e) => chunks.push(e.data);
    recorder.onstop = () => {
      stream.getTracks().forEach((t) => t.stop());
      recorded = new File(chunks, "recording.webm", { type: recorder.mimeType || "audio/webm" });
      button.setAttribute("aria-pressed", "false");
      button.textContent = "● Record";
      $("rec-status").textContent = `recorded ${(recorded.size / 1024).toFixed(0)} KB`;
    };
    recorder.start();
    button.setAttribute("aria-pressed", "true");
    button.textContent = "■ Stop";
    $("rec-status").textContent = "recording…";
  } catch (err) {
    showError(`Microphone unavailable: ${err.message}`);
  }
}

// ---------------------------------------------------------------- live microphone mode (/v1/live)
// The microphone is captured at 16 kHz (resampled here when the browser will not open a 16 kHz
// context), sent as 20 ms PCM16 binary frames; the server's JSON events fill the live box and each
// `audio` header's binary chunk is scheduled for playback right after the previous one.

const LIVE_RATE = 16000, FRAME_SAMPLES = 320;
let live = null;

class Resampler {
  constructor(from) { this.step = from / LIVE_RATE; this.pos = 0; this.prev = 0; }
  push(input) { // linear interpolation from the context's rate to 16 kHz
    if (this.step === 1) return input;
    const out = [];
    while (this.pos < input.length) {
      const i = Math.floor(this.pos), f = this.pos - i;
      const a = i === 0 ? this.prev : input[i - 1], b = input[i];
      out.push(a + (b - a) * f);
      this.pos += this.step;
    }
    this.pos -= input.length;
    this.prev = input[input.length - 1];
    return Float32Array.from(out);
  }
}

function liveRow(name, seconds) {
  const tr = el("tr");
  tr.append(el("td", name), el("td", seconds == null ? "" : Number(seconds).toFixed(3)));
  return tr;
}

class LiveSession {
  constructor() {
    this.pending = []; this.pendingLength = 0; this.header = null; this.playAt = 0; this.reply = [];
    this.player = new AudioContext();
  }

  async open() {
    this.stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true } });
    try { this.ctx = new AudioContext({ sampleRate: LIVE_RATE }); } catch (err) { this.ctx = new AudioContext(); }
    this.resampler = new Resampler(this.ctx.sampleRate);
    const source = this.ctx.createMediaStreamSource(this.stream);
    if (this.ctx.audioWorklet) {
      await this.ctx.audioWorklet.addModule("/playground/live-worklet.js");
      this.node = new AudioWorkletNode(this.ctx, "cascade-capture");
      this.node.port.onmessage = (e) => this.capture(e.data);
      source.connect(this.node);
    } else { // older browsers: the deprecated ScriptProcessor
      this.node = this.ctx.createScriptProcessor(4096, 1, 1);
      this.node.onaudioprocess = (e) => this.capture(e.inputBuffer.getChannelData(0));
      source.connect(this.node);
      this.node.connect(this.ctx.destination);
    }
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.ws = new WebSocket(`${scheme}//${location.host}/v1/live`);
    this.ws.binaryType = "arraybuffer";
    this.ws.onopen = () => {
      const start = { type: "start", sample_rate: LIVE_RATE, format: "pcm16" };
      if ($("api_key").value) start.api_key = $("api_key").value;
      this.ws.send(JSON.stringify(start));
    };
    this.ws.onmessage = (e) => this.receive(e.data);
    this.ws.onclose = (e) => { if (live === this) stopLive(e.code === 1000 || e.code === 1005 ? "" : `closed (${e.code})`); };
    this.ws.onerror = () => showError("Live connection failed.");
  }

  capture(block) {
    if (!this.ready || this.ws.readyState !== WebSocket.OPEN) return;
    const samples = this.resampler.push(block);
    this.pending.push(samples); this.pendingLength += samples.length;
    while (this.pendingLength >= FRAME_SAMPLES) {
      const all = new Float32Array(this.pendingLength);
      let at = 0;
      for (const p of this.pending) { all.set(p, at); at += p.length; }
      const n = Math.floor(all.length / FRAME_SAMPLES) * FRAME_SAMPLES;
      const pcm = new Int16Array(n);
      for (let i = 0; i < n; i++) pcm[i] = Math.max(-1, Math.min(1, all[i])) * 32767;
      this.ws.send(pcm.buffer);
      this.pending = [all.slice(n)]; this.pendingLength = all.length - n;
    }
  }

  receive(data) {
    if (data instanceof ArrayBuffer) { this.play(data); return; }
    let msg;
    try { msg = JSON.parse(data); } catch (err) { return; }
    if (msg.type === "ready") { this.ready = true; $("live-status").textContent = "listening…"; }
    else if (msg.type === "partial") { $("live-partial").textContent = msg.text; $("live-status").textContent = "listening…"; }
    else if (msg.type === "final") {
      $("live-final").textContent = msg.text;
      $("live-reply").textContent = ""; this.reply = [];
      $("live-status").textContent = "replying…";
    } else if (msg.type === "reply.delta") { this.reply.push(msg.text); $("live-reply").textContent = this.reply.join(" "); }
    else if (msg.type === "audio") this.header = msg;
    else if (msg.type === "done") {
      const rows = Object.entries(msg.timings || {}).map(([k, v]) => liveRow(k, v));
      $("live-timings").querySelector("tbody").replaceChildren(...rows);
      $("live-status").textContent = "listening…";
      document.body.dataset.liveDone = String(Number(document.body.dataset.liveDone || 0) + 1);
    } else if (msg.type === "error") showError(`Live: ${msg.message}`);
  }

  play(buffer) {
    const rate = (this.header && this.header.sample_rate) || 22050;
    this.header = null;
    const pcm = new Int16Array(buffer);
    const audio = this.player.createBuffer(1, pcm.length, rate);
    const channel = audio.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) channel[i] = pcm[i] / 32768;
    const src = this.player.createBufferSource();
    src.buffer = audio;
    src.connect(this.player.destination);
    this.playAt = Math.max(this.playAt, this.player.currentTime);
    src.start(this.playAt);
    this.playAt += audio.duration;
    document.body.dataset.liveAudio = String(Number(document.body.dataset.liveAudio || 0) + 1);
  }

  close() {
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000);
    if (this.node) this.node.disconnect();
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
    if (this.ctx) this.ctx.close();
  }
}

function stopLive(note) {
  if (live) live.close();
  live = null;
  $("live").setAttribute("aria-pressed", "false");
  $("live").textContent = "🎙 Live";
  $("live-status").textContent = note || "";
}

async function toggleLive() {
  if (live) { stopLive(""); return; }
  showError("");
  live = new LiveSession();
  $("live-box").hidden = false;
  $("live").setAttribute("aria-pressed", "true");
  $("live").textContent = "■ Stop live";
  $("live-status").textContent = "connecting…";
  try {
    await live.open();
  } catch (err) {
    stopLive("");
    showError(`Microphone unavailable: ${err.message}`);
  }
}

async function init() {
  $("form").addEventListener("submit", submit);
  $("record").addEventListener("click", toggleRecording);
  $("live").addEventListener("click", toggleLive);
  $("file").addEventListener("change", () => { recorded = null; $("rec-status").textContent = ""; });
  try {
    const cfg = await (await fetch("/playground-config")).json();
    $("model").replaceChildren(...cfg.models.map((m) => { const o = el("option", m); o.value = m; o.selected = m === cfg.default_model; return o; }));
    $("n_best").value = cfg.n_best;
    $("key-label").hidden = !cfg.api_key_required;
  } catch (err) {
    showError(`Could not load the gateway's settings: ${err.message}`);
  }
  document.body.dataset.ready = "1";
}
init();
