/* Trial runner of the study pages.
 *
 * Plays the current trial exactly as the server specifies (muted, inline, no controls,
 * no seeking, the configured number of plays at the configured rate), logs playback
 * events, enables the answers only when playback has ended, measures the response time
 * from that moment (performance.now()), and stores the answer exactly once: a random
 * idempotency key per attempt, retried with backoff until the server has it. A video
 * error or a stall longer than the study's limit is reported as a failed attempt; the
 * server shows that trial again later. The next trial's video is preloaded in a second,
 * hidden element that is swapped in when its turn comes.
 *
 * Keys: 1/2/3 give the answer with that number; arrow keys move between the answers and
 * Enter or Space chooses the focused one.
 */
(function () {
  "use strict";

  var app = document.getElementById("trial-app");
  if (!app) return;
  var STATE_URL = app.dataset.stateUrl;
  var ANSWER_URL = app.dataset.answerUrl;
  var CSRF = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  var MAX_EVENTS = 1000;

  var el = {
    progress: document.getElementById("progress"),
    progressLabel: document.getElementById("progress-label"),
    notice: document.getElementById("notice"),
    noticeTitle: document.getElementById("notice-title"),
    noticeText: document.getElementById("notice-text"),
    noticeButton: document.getElementById("notice-button"),
    stage: document.getElementById("stage"),
    captions: document.getElementById("captions"),
    playButton: document.getElementById("play-button"),
    prompt: document.getElementById("prompt"),
    answers: document.getElementById("answers"),
    status: document.getElementById("status")
  };
  var videos = [document.getElementById("video-a"), document.getElementById("video-b")];
  var video = videos[0]; // the visible one
  var spare = videos[1]; // preloading the next trial
  var state = null; // the current trial, as the server gave it
  var trial = null; // this attempt's runtime state
  var watchdog = null;

  function now() { return performance.now(); }
  function round(x, digits) { var m = Math.pow(10, digits); return Math.round(x * m) / m; }
  function sleep(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }
  function say(text) { el.status.textContent = text; }

  function log(type, extra) {
    if (!trial || trial.events.length >= MAX_EVENTS) return;
    var e = { type: type, t: round(now() - trial.t0, 1), mt: round(video.currentTime || 0, 3) };
    if (extra) Object.keys(extra).forEach(function (k) { if (extra[k] !== undefined) e[k] = extra[k]; });
    trial.events.push(e);
  }

  function newKey() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function clientInfo() {
    return { width: window.innerWidth, height: window.innerHeight, dpr: window.devicePixelRatio || 1,
             video_width: video.clientWidth, video_height: video.clientHeight };
  }

  function answerButtons() { return Array.prototype.slice.call(el.answers.querySelectorAll("button")); }

  function setAnswersEnabled(on) { answerButtons().forEach(function (b) { b.disabled = !on; }); }

  // ---- talking to the server ---------------------------------------------------------------
  async function getState() {
    var delay = 500;
    for (;;) {
      try {
        var res = await fetch(STATE_URL, { credentials: "same-origin", cache: "no-store",
                                           headers: { "Accept": "application/json" } });
        if (res.ok) return await res.json();
        if (res.status === 403) { location.reload(); return null; }
        if (res.status < 500 && res.status !== 429) {
          say("Something went wrong. Please reload the page.");
          return null;
        }
      } catch (err) { /* network: try again */ }
      say("Connection problem; trying again\u2026");
      await sleep(delay);
      delay = Math.min(delay * 2, 10000);
    }
  }

  async function submit(body) {
    var mine = trial;
    mine.saving = true;
    var payload = JSON.stringify(body); // the same bytes on every retry
    var delay = 500;
    for (;;) {
      var res = null;
      try {
        res = await fetch(ANSWER_URL, {
          method: "POST", credentials: "same-origin", cache: "no-store", body: payload,
          headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": CSRF }
        });
      } catch (err) { res = null; }
      if (res && res.ok) {
        var data = await res.json();
        mine.stored = true;
        if (data.done) {
          say("Saved. Finishing\u2026");
          location.assign(data.redirect);
          return;
        }
        if (data.feedback) { // practice with a right answer, where the study gives feedback
          var what = data.feedback.answer === "changed" ? "one of the two clips was changed." : "the two clips were the same.";
          say((data.feedback.right ? "Right: " : "Not quite: ") + what);
          el.status.classList.add("feedback");
          await sleep(2500);
          el.status.classList.remove("feedback");
        } else if (body.playback_failed) await sleep(1500); else say("Saved.");
        next();
        return;
      }
      if (res && res.status === 403) { location.reload(); return; }
      if (res && res.status !== 429 && res.status < 500) { // 409/404/400: ask the server where we are
        mine.stored = true;
        next();
        return;
      }
      say("Saving\u2026 (connection problem, trying again)");
      await sleep(delay);
      delay = Math.min(delay * 2, 10000);
    }
  }

  // ---- playback ------------------------------------------------------------------------------
  function startPlay() {
    var p = video.play();
    if (p && p.catch) {
      p.catch(function (err) {
        if (!trial || trial.failed || trial.saving) return;
        if (err && err.name === "NotAllowedError") {
          log("autoplay-blocked");
          el.playButton.hidden = false;
          el.playButton.focus();
          say("Press the Play button to start the clip.");
        } else if (!err || err.name !== "AbortError") {
          fail("play-rejected");
        }
      });
    }
  }

  function playEnded() {
    if (!trial || trial.finishedPlays || trial.failed) return;
    trial.played += 1;
    log("play-end", { n: trial.played });
    if (trial.played < state.plays) {
      trial.lastTime = 0;
      trial.internalSeek = true;
      video.currentTime = 0;
      startPlay();
      return;
    }
    trial.finishedPlays = true;
    clearInterval(watchdog);
    video.pause();
    setAnswersEnabled(true);
    trial.answerableAt = now();
    log("answerable");
    say("Please answer now.");
  }

  function fail(reason, code) {
    if (!trial || trial.failed || trial.saving || trial.finishedPlays) return;
    trial.failed = true;
    log("failed", { detail: reason, code: code });
    clearInterval(watchdog);
    try { video.pause(); } catch (err) { /* nothing to pause */ }
    setAnswersEnabled(false);
    say("This clip could not be played. It will be shown again later.");
    submit({ attempt: state.attempt, key: trial.key, answer: null, rt_ms: null, playback_failed: true,
             reason: reason, events: trial.events, client: clientInfo() });
  }

  function checkStall() {
    if (!trial || trial.finishedPlays || trial.failed) return;
    if (document.hidden || !el.playButton.hidden) { trial.lastProgress = now(); return; }
    if (now() - trial.lastProgress > state.stall_limit_s * 1000) {
      log("stall-limit");
      fail("stall");
    }
  }

  function onMedia(ev) {
    if (ev.target !== video || !trial || trial.failed || trial.saving) return;
    switch (ev.type) {
      case "play": log("play"); break;
      case "playing": log("playing"); trial.lastProgress = now(); break;
      case "waiting": case "stalled": log(ev.type); break;
      case "pause":
        if (!trial.finishedPlays && !video.ended) {
          log("pause");
          if (!document.hidden && el.playButton.hidden) startPlay();
        }
        break;
      case "seeking":
        if (trial.internalSeek) { trial.internalSeek = false; break; }
        log("seek-blocked");
        trial.internalSeek = true;
        video.currentTime = trial.lastTime;
        break;
      case "timeupdate":
        if (video.currentTime > trial.lastTime) { trial.lastTime = video.currentTime; trial.lastProgress = now(); }
        if (!trial.finishedPlays && state.seconds < video.duration - 0.05 && video.currentTime >= state.seconds) {
          playEnded();
        }
        break;
      case "ended": if (!trial.finishedPlays) playEnded(); break;
      case "ratechange":
        if (Math.abs(video.playbackRate - state.rate) > 1e-6) { log("rate-reset"); video.playbackRate = state.rate; }
        break;
      case "error": fail("error", video.error ? video.error.code : 0); break;
    }
  }

  ["play", "playing", "waiting", "stalled", "pause", "seeking", "timeupdate", "ended", "ratechange", "error"]
    .forEach(function (type) { videos.forEach(function (v) { v.addEventListener(type, onMedia); }); });

  function preload(nextMedia) {
    if (!nextMedia) return;
    if (spare.dataset.src === nextMedia.video) return;
    spare.dataset.src = nextMedia.video;
    spare.poster = nextMedia.poster;
    spare.src = nextMedia.video;
    spare.load();
    var img = new Image();
    img.src = nextMedia.poster;
  }

  // ---- one trial -----------------------------------------------------------------------------
  function renderAnswers(options) {
    el.answers.textContent = "";
    options.forEach(function (o) {
      var b = document.createElement("button");
      b.type = "button";
      b.disabled = true;
      b.dataset.value = o.value;
      b.setAttribute("aria-keyshortcuts", o.key);
      var k = document.createElement("kbd");
      k.textContent = o.key;
      k.setAttribute("aria-hidden", "true");
      b.appendChild(k);
      b.appendChild(document.createTextNode(o.label));
      b.addEventListener("click", function () { answer(o.value, b); });
      el.answers.appendChild(b);
    });
  }

  function showProgress(s) {
    var p = s.progress;
    if (s.phase === "practice") {
      el.progress.max = Math.max(p.practice_total, 1);
      el.progress.value = p.practice_done;
      el.progressLabel.textContent = "Practice " + (p.practice_done + 1) + " of " + p.practice_total;
    } else {
      el.progress.max = Math.max(p.total, 1);
      el.progress.value = p.done;
      el.progressLabel.textContent = "Trial " + (p.done + 1) + " of " + p.total;
    }
  }

  function begin(s) {
    clearInterval(watchdog);
    state = s;
    trial = { events: [], t0: now(), key: newKey(), played: 0, lastTime: 0, lastProgress: now(),
              internalSeek: false, finishedPlays: false, answerableAt: null, failed: false, saving: false };
    showProgress(s);
    el.prompt.textContent = s.prompt;
    el.captions.hidden = s.captions.length === 0;
    var spans = el.captions.querySelectorAll("span");
    spans[0].textContent = s.captions[0] || "";
    spans[1].textContent = s.captions[1] || "";
    renderAnswers(s.options);
    if (spare.dataset.src === s.video) { var t = video; video = spare; spare = t; }
    else { video.dataset.src = s.video; video.src = s.video; }
    video.poster = s.poster;
    video.hidden = false;
    video.removeAttribute("aria-hidden");
    video.setAttribute("aria-label", s.layout === "pair" ? "Two motion clips side by side" : "Motion clip");
    spare.hidden = true;
    spare.setAttribute("aria-hidden", "true");
    spare.removeAttribute("aria-label");
    video.defaultPlaybackRate = s.rate;
    video.playbackRate = s.rate;
    log("start", { detail: s.phase });
    say(s.plays > 1 ? "Watch the clips (" + s.plays + " times)." : "Watch the clip.");
    preload(s.next);
    if (video.error) { fail("error", video.error.code); return; }
    if (video.currentTime > 0) { trial.internalSeek = true; video.currentTime = 0; }
    watchdog = setInterval(checkStall, 250);
    startPlay();
  }

  function answer(value, button) {
    if (!trial || trial.answerableAt === null || trial.saving || trial.failed) return;
    var rt = now() - trial.answerableAt;
    log("answer");
    button.setAttribute("aria-pressed", "true");
    setAnswersEnabled(false);
    say("Saving\u2026");
    submit({ attempt: state.attempt, key: trial.key, answer: value, rt_ms: round(rt, 1), playback_failed: false,
             reason: null, events: trial.events, client: clientInfo() });
  }

  function showNotice(title, text, label) {
    return new Promise(function (resolve) {
      el.stage.hidden = true;
      el.noticeTitle.textContent = title;
      el.noticeText.textContent = text;
      el.noticeButton.textContent = label;
      el.notice.hidden = false;
      el.noticeButton.onclick = function () {
        el.notice.hidden = true;
        el.stage.hidden = false;
        resolve();
      };
      el.noticeButton.focus();
    });
  }

  var noticed = {};
  async function next() {
    var s = await getState();
    if (!s) return;
    if (s.status !== "trial") { location.assign(s.url); return; }
    if (s.notice === "practice-over" && !noticed[s.attempt]) {
      noticed[s.attempt] = true;
      el.prompt.textContent = "";
      el.answers.textContent = "";
      say("");
      await showNotice("Practice finished", "The trials of the study start now.", "Continue");
    }
    begin(s);
  }

  // ---- keyboard and visibility ---------------------------------------------------------------
  document.addEventListener("keydown", function (ev) {
    if (ev.altKey || ev.ctrlKey || ev.metaKey || !el.notice.hidden) return;
    var buttons = answerButtons();
    if (/^[1-9]$/.test(ev.key)) {
      var b = buttons[Number(ev.key) - 1];
      if (b && !b.disabled) { ev.preventDefault(); b.click(); }
      return;
    }
    if (["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"].indexOf(ev.key) >= 0) {
      if (!buttons.length || buttons[0].disabled) return;
      ev.preventDefault();
      var i = buttons.indexOf(document.activeElement);
      var step = ev.key === "ArrowLeft" || ev.key === "ArrowUp" ? -1 : 1;
      // nothing focused yet: the key points at a side (ArrowRight: the right-most answer), never picks one
      var j = i < 0 ? (step > 0 ? buttons.length - 1 : 0) : (i + step + buttons.length) % buttons.length;
      buttons[j].focus();
    }
  });

  el.playButton.addEventListener("click", function () {
    el.playButton.hidden = true;
    if (trial) { trial.lastProgress = now(); log("play-button"); }
    startPlay();
  });

  // leaving the page during a trial is logged once per change (the data-quality flags count it); coming back
  // resumes a clip the browser paused
  document.addEventListener("visibilitychange", function () {
    log(document.hidden ? "hidden" : "visible");
    if (!document.hidden && trial && !trial.finishedPlays && !trial.failed && !trial.saving && video.paused &&
        el.playButton.hidden) {
      startPlay();
    }
  });

  next();
})();
