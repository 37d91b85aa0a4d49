/* The rating page's behaviour: keyboard, save tracking, viewing log.
 *
 * Saving itself is htmx (hx-post on the score buttons and the note form, CSRF token in the
 * X-CSRF-Token header from hx-headers). A score button is shown as chosen only when the server's
 * reply (an out-of-band "ack" element carrying the stored score) says it is stored, so "saved"
 * on screen always means committed. No inline script anywhere (the CSP forbids it); server text
 * is only ever put in the page with textContent.
 */
(function () {
  "use strict";

  var item = null;          // #item, only on rating pages
  var inflight = 0;         // htmx requests issued and not yet answered
  var lastError = null;     // message of the last failed save, null after a success
  var navigating = false;
  var lastCriterion = null; // the criterion focused last (keys act on it if focus went elsewhere)
  var savedComment = null;  // the comment as the server last stored it
  var sentComment = null;   // the comment in the note request now in flight
  var view = { seconds: 0, since: null, seeks: 0, plays: 0 };

  function csrf() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute("content") : "";
  }
  function media() { return document.getElementById("media"); }
  function criteria() { return Array.prototype.slice.call(document.querySelectorAll(".criterion")); }
  function noteForm() { return document.getElementById("note"); }
  function commentBox() { return document.getElementById("comment"); }

  function setStatus(text, kind) {
    var el = document.getElementById("save-status");
    if (!el) return;
    el.textContent = text;
    el.className = "save-status " + (kind || "");
  }

  // ------------------------------------------------------------------ saved state from the server
  function syncCriterion(fs) {
    var ack = fs.querySelector(".ack");
    var saved = ack ? ack.getAttribute("data-score") : "";
    fs.querySelectorAll("button.score").forEach(function (b) {
      var score = b.getAttribute("data-score");
      var on = score !== "" && score === saved;
      b.classList.toggle("selected", on);
      b.classList.remove("pending");
      b.setAttribute("aria-checked", on ? "true" : "false");
    });
    fs.classList.toggle("rated", saved !== "" && saved !== null);
  }
  function syncAll() { criteria().forEach(syncCriterion); }

  function noteDirty() {
    var box = commentBox();
    return !!box && savedComment !== null && box.value !== savedComment;
  }

  document.addEventListener("htmx:beforeRequest", function (e) {
    inflight += 1;
    setStatus("Saving\u2026", "pending");
    if (noteForm() && e.target === noteForm()) {
      var box = commentBox();
      sentComment = box ? box.value : null;
    }
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    inflight = Math.max(0, inflight - 1);
    var xhr = e.detail.xhr;
    // a criterion (or the note) whose last save failed stays marked until a save of it succeeds,
    // so a later success elsewhere cannot hide it
    var owner = e.detail.elt && e.detail.elt.closest ? e.detail.elt.closest(".criterion, #note") : null;
    if (owner) owner.classList.toggle("unsaved", !e.detail.successful);
    if (e.detail.successful) {
      lastError = null;
      if (noteForm() && e.target === noteForm() && sentComment !== null) savedComment = sentComment;
    } else {
      var msg = "no answer from the server (check the connection)";
      if (xhr && xhr.status) {
        msg = "server said " + xhr.status + (xhr.responseText ? ": " + xhr.responseText.slice(0, 200) : "");
      }
      lastError = msg;
      setStatus("NOT saved: " + msg, "error");
    }
    syncAll();
  });
  document.addEventListener("htmx:afterSettle", syncAll);

  document.addEventListener("click", function (e) {
    var b = e.target.closest ? e.target.closest("button.score") : null;
    if (b) {
      b.classList.add("pending");
      var fs = b.closest(".criterion");
      if (fs) { fs.focus({ preventScroll: true }); lastCriterion = fs; }
    }
    var next = e.target.closest ? e.target.closest("#next") : null;
    if (next && item) {
      e.preventDefault();
      saveAndNext();
    }
  });

  // ------------------------------------------------------------------ save and next
  function settled(timeoutMs) {
    var t0 = Date.now();
    return new Promise(function (resolve) {
      (function poll() {
        if (inflight === 0) resolve(!document.querySelector(".unsaved"));
        else if (Date.now() - t0 > timeoutMs) resolve(false);
        else setTimeout(poll, 40);
      })();
    });
  }

  function saveAndNext() {
    if (navigating || !item) return;
    navigating = true;
    if (noteDirty() && window.htmx) window.htmx.trigger(noteForm(), "flush");
    setStatus("Saving\u2026", "pending");
    settled(15000).then(function (ok) {
      if (!ok || noteDirty()) {
        navigating = false;
        setStatus("NOT saved" + (lastError ? ": " + lastError : "") + " \u2014 staying on this item; try again.", "error");
        return;
      }
      sendView();
      window.location.href = item.getAttribute("data-next") || "/";
    });
  }

  // ------------------------------------------------------------------ keyboard
  function currentCriterion(target) {
    var fs = target && target.closest ? target.closest(".criterion") : null;
    return fs || lastCriterion || criteria()[0] || null;
  }
  function moveCriterion(from, step) {
    var all = criteria();
    if (!all.length) return;
    var i = from ? all.indexOf(from) : -1;
    var j = i < 0 ? 0 : Math.min(all.length - 1, Math.max(0, i + step));
    all[j].focus();
    lastCriterion = all[j];
  }
  function togglePlay() {
    var m = media();
    if (!m) return false;
    if (m.paused) { var p = m.play(); if (p && p.catch) p.catch(function () {}); } else { m.pause(); }
    return true;
  }

  function onKey(e) {
    if (!item || e.defaultPrevented || e.altKey || e.metaKey) return;
    var t = e.target;
    var typing = t && t.matches && t.matches("textarea, select, [contenteditable], input:not([type=checkbox]):not([type=radio]):not([type=button]):not([type=submit])");
    if (typing) {
      if (e.key === "Enter" && e.ctrlKey) { e.preventDefault(); saveAndNext(); }
      else if (e.key === "Escape") { t.blur(); }
      return;
    }
    if (e.ctrlKey) return;
    var key = e.key;
    if (/^[0-9]$/.test(key)) {
      var fs = currentCriterion(t);
      if (!fs) return;
      var b = fs.querySelector('button.score[data-score="' + key + '"]');
      if (b) { e.preventDefault(); b.click(); }
      return;
    }
    if (key === "Delete" || key === "Backspace") {
      var fsc = currentCriterion(t);
      var clear = fsc ? fsc.querySelector("button.score.clear") : null;
      if (clear) { e.preventDefault(); clear.click(); }
      return;
    }
    if (key === "ArrowDown" || key === "ArrowUp") {
      e.preventDefault();
      moveCriterion(t.closest ? t.closest(".criterion") : lastCriterion, key === "ArrowDown" ? 1 : -1);
      return;
    }
    if (key === "Enter") {
      // links and buttons other than ours keep their own Enter (Previous, Sign out, the menu)
      if (t.matches && t.matches("a, button, summary") && !t.matches("button.score, #next")) return;
      e.preventDefault();
      saveAndNext();
      return;
    }
    if (key === " " || key === "Spacebar") {
      if (t.matches && t.matches("input[type=checkbox], summary")) return;
      if (togglePlay()) e.preventDefault();
    }
  }
  // capture phase: the <video> element's own space handling must not toggle a second time
  document.addEventListener("keydown", onKey, true);
  document.addEventListener("focusin", function (e) {
    var fs = e.target.closest ? e.target.closest(".criterion") : null;
    if (fs) lastCriterion = fs;
  });

  // ------------------------------------------------------------------ viewing log
  function tick() {
    var now = performance.now();
    if (view.since !== null) view.seconds += (now - view.since) / 1000;
    view.since = document.hidden ? null : now;
  }
  function watchedFraction() {
    var m = media();
    if (!m || !isFinite(m.duration) || m.duration <= 0) return null;
    var s = 0;
    for (var i = 0; i < m.played.length; i++) s += m.played.end(i) - m.played.start(i);
    return Math.max(0, Math.min(1, s / m.duration));
  }
  function sendView() {
    if (!item) return;
    tick();
    var body = {
      position: parseInt(item.getAttribute("data-position"), 10),
      seconds: Math.round(view.seconds * 1000) / 1000,
      watched_fraction: watchedFraction(),
      seeks: view.seeks,
      plays: view.plays
    };
    if (body.seconds <= 0 && !body.seeks && !body.plays && body.watched_fraction === null) return;
    var sent = { seconds: view.seconds, seeks: view.seeks, plays: view.plays };
    view.seconds = 0; view.seeks = 0; view.plays = 0;
    // fetch with keepalive (not sendBeacon): a beacon cannot carry the CSRF header
    fetch("/api/view", {
      method: "POST", keepalive: true, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(body)
    }).then(function (r) { if (!r.ok) throw new Error(String(r.status)); }).catch(function () {
      view.seconds += sent.seconds; view.seeks += sent.seeks; view.plays += sent.plays;
    });
  }

  function init() {
    item = document.getElementById("item");
    if (!item) return;
    var box = commentBox();
    savedComment = box ? box.value : null;
    view.since = document.hidden ? null : performance.now();
    var m = media();
    if (m) {
      m.addEventListener("play", function () { view.plays += 1; });
      m.addEventListener("seeked", function () { view.seeks += 1; });
    }
    document.addEventListener("visibilitychange", function () {
      if (document.hidden) sendView(); else tick();
    });
    window.addEventListener("pagehide", sendView);
    window.setInterval(sendView, 30000);
    window.addEventListener("beforeunload", function (e) {
      if (!navigating && (inflight > 0 || noteDirty())) { e.preventDefault(); e.returnValue = ""; }
    });
    syncAll();
    var all = criteria();
    var first = all.filter(function (f) { return !f.classList.contains("rated"); })[0] || all[0];
    if (first) { first.focus({ preventScroll: true }); lastCriterion = first; }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
