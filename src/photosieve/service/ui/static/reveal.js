// Blurred photos: click toggles the reveal, press-and-hold peeks while held.
// Shared by the queue page (review.js calls window.photosieveReveal.bind) and the history page.
(function () {
  "use strict";
  var HOLD_MS = 250;

  function setRevealed(button, on) {
    button.classList.toggle("is-revealed", on);
    button.setAttribute("aria-pressed", on ? "true" : "false");
  }

  function bind(button) {
    if (button.dataset.revealBound) return;
    button.dataset.revealBound = "1";
    var timer = null;
    var held = false;
    button.addEventListener("pointerdown", function (event) {
      if (event.button !== 0) return;
      held = false;
      timer = window.setTimeout(function () {
        held = true;
        button.classList.add("is-peeking");
      }, HOLD_MS);
    });
    function release() {
      window.clearTimeout(timer);
      button.classList.remove("is-peeking");
    }
    button.addEventListener("pointerup", release);
    button.addEventListener("pointerleave", release);
    button.addEventListener("pointercancel", release);
    button.addEventListener("click", function (event) {
      event.preventDefault();
      if (held) { held = false; return; }  // a hold was a peek, not a toggle
      setRevealed(button, !button.classList.contains("is-revealed"));
    });
  }

  window.photosieveReveal = { bind: bind, set: setRevealed };
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".photo").forEach(bind);
  });
})();
