// Queue page: claim a batch, show it as a grid, decide with the keyboard, undo, claim the next.
// Talks only to the JSON review API (/v1/review/...) with the session cookie plus a CSRF header.
(function () {
  "use strict";

  var grid = document.getElementById("grid");
  var statusEl = document.getElementById("status");
  var errorEl = document.getElementById("error");
  var emptyEl = document.getElementById("empty");
  var template = document.getElementById("card-template");
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var undoSeconds = Number(grid.dataset.undoSeconds || "10");
  var batchSize = Number(grid.dataset.batchSize || "12");
  var EMPTY_POLL_MS = 15000;

  var cards = [];        // {item, el, decision: null | {id, label, at}}
  var selected = -1;
  var undoStack = [];    // most recent last: {card, decisionId, at}
  var decidedCount = 0;
  var busy = false;
  var pollTimer = null;

  var KINDS = {
    model: ["Model", "model"], review: ["Model", "model"], model_band: ["Model", "model"],
    appeal: ["Appeal", "appeal"], audit: ["Audit", "audit"],
    hash: ["Hash match", "hash"], hash_match: ["Hash match", "hash"]
  };

  function api(method, url, body) {
    var headers = { "Accept": "application/json", "X-Requested-With": "photosieve-ui", "X-CSRF-Token": csrf };
    var init = { method: method, headers: headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (response) {
      if (response.status === 401) { window.location.href = "/login?next=/review"; throw new Error("signed out"); }
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = { detail: text }; }
        if (!response.ok) {
          var detail = data && (data.detail || data.message || data.error);
          if (detail && typeof detail === "object" && detail.message) detail = detail.message;
          if (detail && typeof detail !== "string") detail = JSON.stringify(detail);
          var err = new Error(detail || ("HTTP " + response.status));
          err.status = response.status;
          throw err;
        }
        return data;
      });
    });
  }

  function say(text) { statusEl.textContent = text; }
  function showError(text) {
    errorEl.textContent = text;
    errorEl.hidden = !text;
  }

  function kindOf(item) {
    var k = String(item.kind || item.reason || "model").toLowerCase();
    return KINDS[k] || [k.replace(/_/g, " "), "model"];
  }

  function detailText(item) {
    var parts = [];
    if (item.reason_detail) parts.push(item.reason_detail);
    if (item.match_distance !== undefined && item.match_distance !== null) parts.push((item.match_hash === "pdq" ? "PDQ" : "pHash") + " distance " + item.match_distance);
    if (item.model_decision && item.kind !== "model_band") parts.push("model said " + item.model_decision);
    if (item.uploaded_at || item.created_at) {
      var when = new Date(item.uploaded_at || item.created_at);
      if (!isNaN(when)) {
        parts.push("uploaded " + when.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }));
      }
    }
    return parts.join(" · ");
  }

  function itemId(item) { return item.id !== undefined ? item.id : item.item_id; }

  function render(item, index, total) {
    var el = template.content.firstElementChild.cloneNode(true);
    var kind = kindOf(item);
    var score = typeof item.score === "number" ? item.score : null;
    el.dataset.itemId = itemId(item);
    el.dataset.uploadId = item.upload_id;
    el.setAttribute("aria-label", "Photo " + (index + 1) + " of " + total + ", " + kind[0] +
      (score === null ? "" : ", score " + score.toFixed(2)));
    var img = el.querySelector("img");
    img.src = item.image_url || ("/v1/uploads/" + encodeURIComponent(item.upload_id) + "/image");
    var photo = el.querySelector(".photo");
    photo.setAttribute("aria-label", "Photo " + (index + 1) + " (blurred): click to reveal");
    window.photosieveReveal.bind(photo);
    var badge = el.querySelector(".badge");
    badge.textContent = kind[0];
    badge.classList.add("badge-" + kind[1]);
    el.querySelector(".score").textContent = score === null ? "–" : "score " + score.toFixed(2);
    el.querySelector(".scorebar span").style.width = score === null ? "0" : Math.round(score * 100) + "%";
    el.querySelector(".detail").textContent = detailText(item);
    if (item.appeal_reason) {  // the user's own words: text only, never markup
      var said = el.querySelector(".appeal-reason");
      said.textContent = "User wrote: \u201c" + item.appeal_reason + "\u201d";
      said.hidden = false;
    }
    var card = { item: item, el: el, decision: null };
    el.querySelectorAll("[data-label]").forEach(function (button) {
      button.addEventListener("click", function () { select(cards.indexOf(card)); decide(button.dataset.label); });
    });
    el.querySelector(".btn-undo").addEventListener("click", function () { undo(card); });
    el.addEventListener("click", function () { select(cards.indexOf(card), false); });
    return card;
  }

  function updateCounters(queueDepth) {
    var left = cards.filter(function (c) { return !c.decision; }).length;
    document.getElementById("count-left").textContent = String(left);
    document.getElementById("count-done").textContent = String(decidedCount);
    if (queueDepth !== undefined && queueDepth !== null) {
      document.getElementById("count-queue").textContent = String(queueDepth);
    }
  }

  function select(index, focus) {
    if (index < 0 || index >= cards.length) return;
    if (selected >= 0 && cards[selected]) {
      cards[selected].el.classList.remove("is-selected");
      cards[selected].el.removeAttribute("aria-current");
    }
    selected = index;
    var el = cards[index].el;
    el.classList.add("is-selected");
    el.setAttribute("aria-current", "true");
    if (focus !== false) {
      el.focus({ preventScroll: true });
      el.scrollIntoView({ block: "nearest", behavior: "auto" });
    }
  }

  function queueDepthOf(data) {
    if (!data) return null;
    if (typeof data.queue_depth === "number") return data.queue_depth;
    if (typeof data.remaining === "number") return data.remaining;
    return null;
  }

  function claim() {
    if (busy) return;
    busy = true;
    window.clearTimeout(pollTimer);
    say("Claiming a batch…");
    api("POST", "/v1/review/claim", { limit: batchSize })
      .then(function (data) {
        var items = Array.isArray(data) ? data : (data && data.items) || [];
        showError("");
        if (items.length || cards.some(function (c) { return !c.decision; })) {
          // A new batch replaces the finished one; undoing an earlier decision brings its
          // card back (see undo()). With nothing new, the decided cards stay on screen.
          cards = [];
          selected = -1;
          grid.textContent = "";
          items.forEach(function (item, i) {
            var card = render(item, i, items.length);
            cards.push(card);
            grid.appendChild(card.el);
          });
        }
        updateCounters(queueDepthOf(data));
        if (!items.length) {
          emptyEl.hidden = false;
          say("The queue is empty.");
          pollTimer = window.setTimeout(claim, EMPTY_POLL_MS);
        } else {
          emptyEl.hidden = true;
          say("Batch of " + items.length + " claimed. Photo 1 selected.");
          select(0);
        }
      })
      .catch(function (err) {
        showError("Could not claim a batch: " + err.message);
        say("");
        pollTimer = window.setTimeout(claim, EMPTY_POLL_MS);
      })
      .finally(function () { busy = false; });
  }

  function setVerdict(card, label, pending) {
    var verdict = card.el.querySelector(".verdict");
    verdict.className = "verdict " + (pending ? "v-pending" : "v-" + label);
    verdict.textContent = pending ? "Saving…" : (label === "offensive" ? "Marked offensive" : "Marked OK");
    card.el.classList.toggle("is-decided", !pending);
    card.el.classList.remove("decided-offensive", "decided-ok");
    if (!pending) card.el.classList.add("decided-" + label);
    card.el.dataset.decision = pending ? "" : label;
    card.el.querySelectorAll("[data-label]").forEach(function (b) { b.disabled = true; });
  }

  function clearVerdict(card) {
    var verdict = card.el.querySelector(".verdict");
    verdict.className = "verdict";
    verdict.textContent = "";
    card.el.classList.remove("is-decided", "decided-offensive", "decided-ok");
    card.el.dataset.decision = "";
    card.el.querySelectorAll("[data-label]").forEach(function (b) { b.disabled = false; });
    card.el.querySelector(".btn-undo").hidden = true;
  }

  function nextUndecided(from) {
    for (var step = 1; step <= cards.length; step++) {
      var i = (from + step) % cards.length;
      if (!cards[i].decision && !cards[i].saving) return i;
    }
    return -1;
  }

  function batchDone() {
    return cards.length > 0 && cards.every(function (c) { return c.decision && !c.saving; });
  }

  function decide(label) {
    var card = cards[selected];
    if (!card || card.decision || card.saving) return;
    card.saving = true;
    setVerdict(card, label, true);
    var id = itemId(card.item);
    api("POST", "/v1/review/items/" + encodeURIComponent(id) + "/decision", { label: label })
      .then(function (data) {
        card.saving = false;
        var decisionId = data && (data.decision_id !== undefined ? data.decision_id : data.id);
        card.decision = { id: decisionId, label: label, at: Date.now() };
        decidedCount += 1;
        setVerdict(card, label, false);
        undoStack.push({ card: card, decisionId: decisionId, at: Date.now() });
        showUndo(card);
        say("Photo " + (cards.indexOf(card) + 1) + " marked " + (label === "ok" ? "OK" : label) + ".");
        updateCounters(queueDepthOf(data));
        if (batchDone()) {
          say("Batch done. Claiming the next one…");
          window.setTimeout(claim, 400);
        }
      })
      .catch(function (err) {
        card.saving = false;
        clearVerdict(card);
        showError("Decision not saved: " + err.message);
        // 409: the claim lapsed or the item was already decided; refresh the batch.
        if (err.status === 409) window.setTimeout(claim, 1500);
      });
    var next = nextUndecided(selected);
    if (next >= 0) select(next);
  }

  function showUndo(card) {
    var button = card.el.querySelector(".btn-undo");
    button.hidden = false;
    window.setTimeout(function () {
      if (card.decision && Date.now() - card.decision.at >= undoSeconds * 1000) button.hidden = true;
    }, undoSeconds * 1000 + 50);
  }

  function undo(target) {
    var entry = null;
    for (var i = undoStack.length - 1; i >= 0; i--) {
      if (!target || undoStack[i].card === target) { entry = undoStack.splice(i, 1)[0]; break; }
    }
    if (!entry) { say("Nothing to undo."); return; }
    if (Date.now() - entry.at > undoSeconds * 1000) {
      undoStack = [];
      say("Too late to undo: decisions can be undone for " + undoSeconds + " seconds.");
      return;
    }
    var card = entry.card;
    api("POST", "/v1/review/decisions/" + encodeURIComponent(entry.decisionId) + "/undo")
      .then(function () {
        card.decision = null;
        decidedCount = Math.max(0, decidedCount - 1);
        clearVerdict(card);
        if (cards.indexOf(card) < 0) {  // the batch moved on: bring the card back
          cards.unshift(card);
          grid.insertBefore(card.el, grid.firstChild);
        }
        emptyEl.hidden = true;
        select(cards.indexOf(card));
        showError("");
        say("Decision undone. Photo " + (cards.indexOf(card) + 1) + " is back to undecided.");
        updateCounters();
      })
      .catch(function (err) {
        undoStack.push(entry);
        showError("Undo failed: " + err.message);
      });
  }

  function toggleReveal() {
    var card = cards[selected];
    if (!card) return;
    var photo = card.el.querySelector(".photo");
    window.photosieveReveal.set(photo, !photo.classList.contains("is-revealed"));
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var tag = (event.target && event.target.tagName) || "";
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return;
    var key = event.key.toLowerCase();
    var handled = true;
    if (key === "o") decide("offensive");
    else if (key === "a") decide("ok");
    else if (key === "j") select(Math.min(selected + 1, cards.length - 1));
    else if (key === "k") select(Math.max(selected - 1, 0));
    else if (key === "u") undo(null);
    else if (key === "r") toggleReveal();
    else handled = false;
    if (handled) event.preventDefault();
  });

  document.getElementById("check-now").addEventListener("click", claim);
  claim();
})();
