// The Live page's player (gr.HTML js_on_load: element, props, server, watch are given).
// Captures the microphone, posts 40 ms of samples at a time to server.live_push, and shows
// the frames that come back at 25 frames/s. window.fg3dgsLive holds the state; with
// fg3dgsLive.keep = true it also logs every shown frame and the microphone's loudness, for
// the browser test and the delay benchmark (which take the log away as it grows).
const L = window.fg3dgsLive = window.fg3dgsLive || {keep: false};
const FRAME_MS = 40;
const q = (sel) => element.querySelector(sel);
const say = (text) => { const s = q(".live-status"); if (s) s.textContent = text; };

function resetLog() {
  L.log = {frames: [], env: [], posts: [], t0: null, rate: null, errors: []};
}
resetLog();

function stopCapture(why) {
  L.running = false;
  if (L.proc) { L.proc.onaudioprocess = null; L.proc.disconnect(); }
  if (L.stream) L.stream.getTracks().forEach((t) => t.stop());
  if (L.ctx) L.ctx.close();
  L.proc = L.stream = L.ctx = L.delay = null;
  if (why) say(why);
}

function b64pcm(chunks, n) {
  const pcm = new Int16Array(n);
  let k = 0;
  for (const c of chunks) {
    for (let i = 0; i < c.length; i++) {
      const v = Math.max(-1, Math.min(1, c[i]));
      pcm[k++] = v < 0 ? v * 32768 : v * 32767;
    }
  }
  const bytes = new Uint8Array(pcm.buffer);
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
  }
  return btoa(s);
}

async function start(cmd) {
  stopCapture();
  resetLog();
  const run = L.run = {call: cmd.call, lookahead: cmd.lookahead_ms, pending: [], n: 0,
                       seq: 0, flying: 0, posted: 0, marks: [], queue: [], timer: null, showing: false,
                       last: -1e9,
                       shown: [], delays: [], late: [], target: 0, stats: {}, phase: 0};
  L.running = true;
  say("starting the microphone...");
  try {
    L.stream = await navigator.mediaDevices.getUserMedia({audio: {
      echoCancellation: false, noiseSuppression: false, autoGainControl: false}});
  } catch (e) {
    const denied = e && (e.name === "NotAllowedError" || e.name === "SecurityError");
    L.log.errors.push(String(e && e.name));
    stopCapture(denied
      ? "The microphone is blocked for this page: allow it (the icon at the left of the " +
        "address bar) and press Start again."
      : "No microphone: " + (e && e.message ? e.message : e));
    return;
  }
  if (L.run !== run) return;
  const ctx = L.ctx = new AudioContext();
  await ctx.resume();
  const src = ctx.createMediaStreamSource(L.stream);
  const proc = L.proc = ctx.createScriptProcessor(512, 1, 1);
  L.log.rate = run.rate = ctx.sampleRate;
  proc.onaudioprocess = (e) => {
    const x = new Float32Array(e.inputBuffer.getChannelData(0));
    const now = performance.now();
    if (L.log.t0 === null) L.log.t0 = now - 1000 * x.length / ctx.sampleRate;
    run.pending.push(x);
    run.n += x.length;
    run.marks.push([run.n, now]);
    if (run.marks.length > 1000) run.marks.shift();
    send(run);
    if (L.keep) {
      const step = Math.round(ctx.sampleRate / 100);     // loudness every 10 ms
      for (let i = 0; i + step <= x.length; i += step) {
        let e2 = 0;
        for (let j = i; j < i + step; j++) e2 += x[j] * x[j];
        const at = now - 1000 * (x.length - i) / ctx.sampleRate;
        L.log.env.push([at - L.log.t0, Math.sqrt(e2 / step)]);
      }
    }
  };
  src.connect(proc);
  proc.connect(ctx.destination);          // (a ScriptProcessor runs only when connected)
  L.delay = ctx.createDelay(3.0);
  L.echoGain = ctx.createGain();
  src.connect(L.delay).connect(L.echoGain).connect(ctx.destination);
  say("live: speak now");
}

// A post goes out as soon as the speech for one more frame is here (a frame is made once
// the speech reaches the server's look-ahead past its end), up to IN_FLIGHT at once: the
// server takes them in their order (seq). Posting on a fixed beat instead would keep each
// frame waiting for the next beat, and more posts cost the server more than they save.
const IN_FLIGHT = 2, MARGIN_MS = 12;   // (the server resamples 44.1 kHz in 10 ms blocks)

// Called with each block of microphone samples and when a post comes back.
function send(run) {
  if (!L.running || L.run !== run || run.flying >= IN_FLIGHT) return;
  const ms = 1000 * run.n / run.rate;
  const ready = Math.floor((ms - run.lookahead - MARGIN_MS - run.phase) / FRAME_MS);
  if (ready <= run.posted) return;
  run.posted = ready;
  const chunks = run.pending, have = chunks.reduce((a, c) => a + c.length, 0);
  run.pending = [];
  const sent = performance.now();
  run.flying++;
  server.live_push({call: run.call, seq: run.seq++, rate: run.rate,
                    pcm: b64pcm(chunks, have)}).then((r) => {
    run.flying--;
    if (L.run !== run) return;
    if (r.ended) { L.run = null; stopCapture("Stopped: " + r.ended); return; }
    received(run, r, sent, ms);
    send(run);
  }, () => {
    run.flying--;
    if (L.run === run) {
      L.run = null;
      stopCapture("The connection to the server was lost; press Start to try again.");
    }
  });
}

// When the sample ``ms`` into the posted speech was captured, on the page's clock: from
// when its block of samples came (run.marks: [samples so far, time]), not from the sample
// count, whose clock may run slower or faster than the page's.
function captured(run, ms) {
  const n = ms * run.rate / 1000, m = run.marks;
  let lo = 0, hi = m.length - 1;                  // the first block that holds sample n
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (m[mid][0] >= n) hi = mid; else lo = mid + 1;
  }
  return m[lo][1] - 1000 * (m[lo][0] - n) / run.rate;
}

function received(run, r, sent, posted) {
  const arrived = performance.now();
  run.stats = r.stats;
  // [sent, round trip (ms), frames, speech posted (ms), frames waiting, server's time (ms)]
  if (L.keep) L.log.posts.push([sent - L.log.t0, arrived - sent, r.frames.length, posted,
                                run.queue.length, r.stats.server_ms]);
  // where frames end in the speech posted: shifted by what the server skipped to keep up
  if (r.ends.length) run.phase = (r.ends[r.ends.length - 1] * 1000) % FRAME_MS;
  for (let i = 0; i < r.frames.length; i++) {
    const end = captured(run, r.ends[i] * 1000);     // when its speech ended
    run.late.push(arrived - end);
    if (run.late.length > 50) run.late.shift();
    run.target = target(run);
    const img = new Image();
    img.src = "data:image/jpeg;base64," + r.frames[i];
    const f = {img: img, end: end, jpeg: r.frames[i], ready: img.decode().catch(() => null)};
    let k = run.queue.length;                       // in the order of their speech
    while (k > 0 && run.queue[k - 1].end > end) k--;
    run.queue.splice(k, 0, f);
  }
  play(run);
}

// The delay at which frames are shown: nine in ten of the last 50 arrived by then. Each
// frame is shown that long after its speech, so frames that come in bursts are shown
// evenly, and the delay follows the server's pace without a queue that never drains.
function target(run) {
  const sorted = [...run.late].sort((a, b) => a - b);
  return sorted[Math.floor(0.9 * (sorted.length - 1))];
}

// Show the next frame when it is due (its speech's end + the target delay, at least half a
// frame after the last one; at once when more than three wait: the renderer ran ahead).
function play(run) {
  clearTimeout(run.timer);
  const f = run.queue[0];
  if (!f || run.showing || !L.running || L.run !== run) return;
  const now = performance.now();
  const wait = run.queue.length > 3 ? 0 : Math.max(f.end + run.target - now,
                                                   run.last + FRAME_MS / 2 - now, 0);
  run.timer = setTimeout(() => show(run), wait);
}

async function show(run) {
  const f = run.queue.shift();
  run.showing = true;
  await f.ready;
  run.showing = false;
  if (L.run !== run) return;
  const canvas = q("canvas");
  if (canvas) {
    if (canvas.width !== f.img.naturalWidth && f.img.naturalWidth) {
      canvas.width = f.img.naturalWidth;
      canvas.height = f.img.naturalHeight;
    }
    canvas.getContext("2d").drawImage(f.img, 0, 0);
  }
  const shown = run.last = performance.now();
  run.shown.push(shown);
  run.delays.push(shown - (f.end - FRAME_MS));   // from its speech's start
  if (L.keep) L.log.frames.push([shown - L.log.t0, f.end - L.log.t0, f.jpeg]);
  report(run);
  play(run);
}

function report(run) {
  const now = run.shown[run.shown.length - 1];
  while (run.shown.length && run.shown[0] < now - 2000) run.shown.shift();
  if (run.delays.length > 50) run.delays.shift();
  const fps = run.shown.length / 2;
  const sorted = [...run.delays].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  L.fps = fps;
  L.delayMs = median;
  const echo = q(".live-echo");
  if (L.delay && L.echoGain) {
    L.echoGain.gain.value = echo && echo.checked ? 1 : 0;
    L.delay.delayTime.value = Math.min(3, Math.max(0, median / 1000));
  }
  const s = q(".live-stats");
  if (s) {
    s.textContent = `${fps.toFixed(1)} frames/s, delay ${Math.round(median)} ms` +
      (run.stats.dropped_ms ? `, ${(run.stats.dropped_ms / 1000).toFixed(1)} s of speech ` +
       "skipped to keep up" : "");
  }
}

watch("value", () => {
  let cmd;
  try { cmd = JSON.parse(props.value || "{}"); } catch (e) { return; }
  if (cmd.cmd === "start") start(cmd);
  else if (cmd.cmd === "stop") { L.run = null; stopCapture("Stopped."); }
  else if (cmd.cmd === "error") { L.run = null; stopCapture(cmd.message); }
});

// Start answers at once on the page (the server's answer follows)
document.addEventListener("click", (e) => {
  if (e.target && e.target.closest && e.target.closest("#live-start")) say("starting...");
}, true);

// a closed or reloaded page ends its call at once (the server also notices the silence
// within LiveLimits.gone_seconds, should this last post not arrive)
window.addEventListener("pagehide", () => {
  const run = L.run;
  L.run = null;
  stopCapture();
  if (run) server.live_push({call: run.call, end: true}).catch(() => {});
});
