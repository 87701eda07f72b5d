/* Tracer Bullet cockpit: charts on <canvas> (lines, candles with markers), live refresh by polling the API,
   and the controls (POST with the X-CSRF-Token header). Hand-written, no library, nothing fetched from elsewhere. */
"use strict";

const COLORS = ["#58a6ff", "#d2a8ff", "#3fb950", "#f0883e", "#ff7b72", "#79c0ff"];

function cookie(name) {
  const m = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
  return m ? decodeURIComponent(m.slice(name.length + 1)) : "";
}

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json", "X-CSRF-Token": cookie("tb_csrf") },
  };
  const r = await fetch("/api/v1" + path, Object.assign({ credentials: "same-origin" }, opts));
  if (r.status === 401) { window.location = "/login"; throw new Error("not logged in"); }
  const data = await r.json();
  if (!r.ok) throw new Error(data.detail || r.statusText);
  return data;
}

function parseData(el, name) {
  try { return JSON.parse(el.dataset[name] || "[]"); } catch (e) { return []; }
}

function fmt(x, digits) {
  if (x === null || x === undefined || x === "") return "–";
  return Number(x).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function signed(x) {
  if (x === null || x === undefined) return "–";
  return (x >= 0 ? "+" : "") + fmt(x, 2);
}

/* --- charts ---------------------------------------------------------------------------------------------- */
function frame(canvas, xs, ys, pad) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const finite = ys.filter((v) => v !== null && isFinite(v));
  let lo = Math.min(...finite), hi = Math.max(...finite);
  if (!finite.length) { lo = 0; hi = 1; }
  if (hi === lo) { hi += 1; lo -= 1; }
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  const sx = (x) => pad + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (w - 2 * pad - 50);
  const sy = (y) => h - pad - ((y - lo) / (hi - lo)) * (h - 2 * pad);
  ctx.strokeStyle = "#2d3743"; ctx.fillStyle = "#8b97a3"; ctx.font = "11px system-ui"; ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = lo + (hi - lo) * i / 4, y = sy(v);
    ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(w - pad - 50, y); ctx.stroke();
    ctx.fillText(v.toPrecision(6), w - pad - 46, y + 4);
  }
  return { ctx, sx, sy };
}

function drawLines(canvas, series) {
  const all = series.flatMap((s) => s.points);
  if (!all.length) { empty(canvas, "no data yet"); return; }
  const { ctx, sx, sy } = frame(canvas, all.map((p) => p.x), all.map((p) => p.y), 12);
  series.forEach((s, i) => {
    ctx.strokeStyle = s.color || COLORS[i % COLORS.length]; ctx.lineWidth = 1.6; ctx.beginPath();
    let started = false;
    s.points.forEach((p) => {
      if (p.y === null || !isFinite(p.y)) { started = false; return; }
      if (!started) { ctx.moveTo(sx(p.x), sy(p.y)); started = true; } else ctx.lineTo(sx(p.x), sy(p.y));
    });
    ctx.stroke();
    if (s.name) { ctx.fillStyle = ctx.strokeStyle; ctx.fillText(s.name, 16, 16 + 14 * i); }
  });
}

function empty(canvas, text) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "#8b97a3"; ctx.font = "13px system-ui"; ctx.fillText(text, 16, 24);
}

function drawEquity(canvas, points) {
  canvas.dataset.last = points.length ? String(points[points.length - 1].equity) : "";
  canvas.dataset.count = String(points.length);
  drawLines(canvas, [{ name: "equity " + canvas.dataset.agent, points: points.map((p) => ({ x: Date.parse(p.t), y: p.equity })) }]);
}

function drawCandles(canvas, bars, markers) {
  if (!bars.length) { empty(canvas, "no candles for this symbol"); return; }
  const xs = bars.map((b) => Date.parse(b.t));
  const ys = bars.flatMap((b) => [b.h, b.l, b.mean]);
  const { ctx, sx, sy } = frame(canvas, xs, ys, 12);
  const bw = Math.max(1, (canvas.width - 80) / bars.length * 0.7);
  bars.forEach((b, i) => {
    if (b.o === null || b.c === null) return;
    const x = sx(xs[i]);
    ctx.strokeStyle = ctx.fillStyle = b.c >= b.o ? "#3fb950" : "#f85149";
    ctx.beginPath(); ctx.moveTo(x, sy(b.h)); ctx.lineTo(x, sy(b.l)); ctx.stroke();
    const top = sy(Math.max(b.o, b.c)), bot = sy(Math.min(b.o, b.c));
    ctx.fillRect(x - bw / 2, top, bw, Math.max(1, bot - top));
  });
  ctx.strokeStyle = "#d2a8ff"; ctx.lineWidth = 1.5; ctx.beginPath();
  let started = false;
  bars.forEach((b, i) => {
    if (b.mean === null) { started = false; return; }
    if (!started) { ctx.moveTo(sx(xs[i]), sy(b.mean)); started = true; } else ctx.lineTo(sx(xs[i]), sy(b.mean));
  });
  ctx.stroke();
  ctx.fillStyle = "#d2a8ff"; ctx.fillText("trend mean", 16, 16);
  markers.forEach((m) => {
    const x = sx(Date.parse(m.t)), y = sy(m.price), up = m.side === "buy";
    ctx.fillStyle = m.purpose === "entry" ? "#58a6ff" : "#f0883e";
    ctx.beginPath();
    ctx.moveTo(x, y); ctx.lineTo(x - 6, y + (up ? 12 : -12)); ctx.lineTo(x + 6, y + (up ? 12 : -12)); ctx.fill();
    ctx.fillText(m.purpose === "entry" ? "entry" : m.reason, x + 7, y + (up ? 14 : -8));
  });
}

/* --- pages ----------------------------------------------------------------------------------------------- */
function setField(card, name, value, text) {
  const el = card.querySelector('[data-field="' + name + '"]');
  if (!el) return;
  el.textContent = text;
  if (value !== undefined) el.dataset.value = value === null ? "" : String(value);
  if (name.startsWith("pnl") || name === "total_pnl") el.className = value > 0 ? "up" : value < 0 ? "down" : "";
}

async function refreshOverview() {
  const agents = await api("/agents");
  for (const a of agents) {
    const card = document.getElementById("agent-" + a.agent);
    if (!card) continue;
    setField(card, "equity", a.equity, fmt(a.equity, 2));
    setField(card, "cash", a.cash, fmt(a.cash, 2));
    setField(card, "pnl_today", a.pnl_today, signed(a.pnl_today));
    setField(card, "pnl_week", a.pnl_week, signed(a.pnl_week));
    setField(card, "total_pnl", a.total_pnl, signed(a.total_pnl));
    setField(card, "total_trades", a.total_trades, String(a.total_trades));
    setField(card, "cycle", a.cycle, a.cycle === null ? "–" : String(a.cycle));
    setField(card, "clock", a.clock, a.clock || "–");
    setField(card, "state", a.state, a.state);
    card.querySelector('[data-field="paused"]').hidden = !a.paused;
    const canvas = card.querySelector("canvas.equity");
    const eq = await api("/agents/" + a.agent + "/equity");
    drawEquity(canvas, eq.points);
  }
  const pos = await api("/positions");
  const body = document.querySelector("#positions tbody");
  // a row is one position (its entry order), redrawn every refresh: a trailing stop or a partial exit changes
  // stop and qty in place; a row is replaced only by another position, so a clicked button keeps its state
  const rows = new Map();
  body.querySelectorAll("tr[data-entry]").forEach((tr) => rows.set(tr.dataset.entry, tr));
  const now = new Set(pos.map((p) => p.entry_order_id));
  rows.forEach((tr, entry) => { if (!now.has(entry)) tr.remove(); });
  pos.forEach((p) => {
    const tr = rows.get(p.entry_order_id) || positionRow(p);
    fillPositionRow(tr, p);
    body.appendChild(tr);                      // the API's order (moving a row keeps its button and listener)
  });
  const blank = body.querySelector("tr.empty");
  if (pos.length && blank) blank.remove();
  if (!pos.length && !blank) {
    body.insertAdjacentHTML("beforeend", '<tr class="empty"><td colspan="9" class="muted">no open position</td></tr>');
  }
  const h = await api("/health");
  document.querySelectorAll("#health li").forEach((li, i) => { if (h.checks[i]) li.className = "lvl" + h.checks[i].level; });
  document.getElementById("status").textContent = "updated " + new Date().toLocaleTimeString();
}

function cell(tr, text) {
  const td = document.createElement("td");
  td.textContent = text;
  tr.appendChild(td);
  return td;
}

function positionRow(p) {
  const tr = document.createElement("tr");
  for (let i = 0; i < 8; i++) cell(tr, "");
  tr.children[1].appendChild(document.createElement("a"));
  const b = document.createElement("button");
  b.className = "force-exit"; b.textContent = "Force exit";
  wireForceExit(b);
  cell(tr, "").appendChild(b);
  return tr;
}

function fillPositionRow(tr, p) {
  tr.dataset.entry = p.entry_order_id; tr.dataset.symbol = p.symbol; tr.dataset.agent = p.agent;
  const td = tr.children;
  td[0].textContent = p.agent;
  const link = td[1].querySelector("a");
  link.href = "/symbol?symbol=" + encodeURIComponent(p.symbol); link.textContent = p.symbol;
  [p.side, Number(p.qty).toPrecision(6), Number(p.entry_price).toPrecision(6), Number(p.stop_loss).toPrecision(6),
   Number(p.take_profit).toPrecision(6), p.opened_at.slice(0, 16)].forEach((t, i) => { td[2 + i].textContent = t; });
  const b = td[8].querySelector("button.force-exit");
  b.dataset.symbol = p.symbol; b.dataset.agent = p.agent;
}

function armedClick(button, action) {
  if (button.classList.contains("armed")) {
    button.classList.remove("armed");
    action();
    return;
  }
  const label = button.textContent;
  button.classList.add("armed");
  button.textContent = "Confirm";
  setTimeout(() => { button.classList.remove("armed"); button.textContent = label; }, 5000);
}

function controlMessage(text) {
  const el = document.getElementById("control-message");
  if (el) el.textContent = text;
}

function wireForceExit(b) {
  b.addEventListener("click", () => armedClick(b, async () => {
    try {
      const r = await api("/controls/force-exit", { symbol: b.dataset.symbol, agent: b.dataset.agent });
      controlMessage(r.message);
      b.disabled = true; b.textContent = "exit queued";
    } catch (e) { controlMessage("refused: " + e.message); }
  }));
}

function wireControls() {
  document.querySelectorAll("button.force-exit").forEach(wireForceExit);
  document.querySelectorAll("button.ctl").forEach((b) => b.addEventListener("click", async () => {
    try { controlMessage((await api("/controls/" + b.dataset.action, { agent: b.dataset.agent })).message); }
    catch (e) { controlMessage("refused: " + e.message); }
  }));
  document.querySelectorAll("tr.trade").forEach((tr) => tr.addEventListener("click", (ev) => {
    if (ev.target.tagName !== "A") window.location = tr.dataset.href;
  }));
  const out = document.getElementById("logout");
  if (out) out.addEventListener("click", async () => {
    await fetch("/logout", { method: "POST", headers: { "X-CSRF-Token": cookie("tb_csrf") }, credentials: "same-origin" });
    window.location = "/login";
  });
}

async function drawOverlay() {
  const picks = Array.from(document.querySelectorAll("input.pick:checked")).map((i) => i.value);
  const canvas = document.getElementById("overlay");
  const series = [];
  for (const name of picks) {
    const eq = await api("/backtests/equity?name=" + encodeURIComponent(name));
    const first = eq.points.length ? eq.points[0].equity : 1;     // runs of different capital: compare returns
    series.push({ name: name + " (return %)", points: eq.points.map((p) => ({ x: Date.parse(p.t), y: (p.equity / first - 1) * 100 })) });
  }
  canvas.dataset.runs = picks.join(",");
  if (series.length) drawLines(canvas, series); else empty(canvas, "tick a run to draw its equity curve");
}

function drawSignals(canvas) {
  const rows = parseData(canvas, "signals");
  const q = rows.map((s) => ({ x: Date.parse(s.ts), y: s.quality }));
  const c = rows.map((s) => ({ x: Date.parse(s.ts), y: s.conviction }));
  if (!rows.length) { empty(canvas, "no signal yet"); return; }
  drawLines(canvas, [{ name: "quality", points: q }, { name: "conviction", points: c }]);
}

function start() {
  const page = document.body.dataset.page;
  const every = Number(document.body.dataset.refreshMs || 5000);
  wireControls();
  document.querySelectorAll("canvas.equity").forEach((c) => drawEquity(c, parseData(c, "points")));
  const candles = document.getElementById("candles");
  if (candles) {
    const bars = parseData(candles, "bars");
    drawCandles(candles, bars, parseData(candles, "markers"));
    const r = document.getElementById("rsi");
    drawLines(r, [{ name: "RSI 14", points: bars.map((b) => ({ x: Date.parse(b.t), y: b.rsi })) }]);
  }
  const sig = document.getElementById("signal-chart");
  if (sig) drawSignals(sig);
  if (page === "backtests") {
    document.querySelectorAll("input.pick").forEach((i) => i.addEventListener("change", drawOverlay));
    drawOverlay().catch((e) => console.warn(e.message));
  }
  if (page === "overview" && every > 0) {
    setInterval(() => refreshOverview().catch((e) => { document.getElementById("status").textContent = e.message; }), every);
  }
}

document.addEventListener("DOMContentLoaded", start);
