// The alarms page keeps itself current: every second it fetches its list of alarms
// (/manage/alarms/board) and swaps it in when what it shows has changed, so a new alarm
// appears within two seconds. Without JavaScript the page works the same on reload.
"use strict";

(() => {
  const PERIOD_MS = 1000;
  const summary = document.getElementById("alarm-summary");
  let board = document.getElementById("alarm-board");
  if (!board || !board.dataset.source) return;
  const source = board.dataset.source;

  // The acknowledge button that had focus, by its alarm, so focus survives a swap.
  function focusedAlarm() {
    const active = document.activeElement;
    const item = active && board.contains(active) ? active.closest("[data-alarm]") : null;
    return item ? item.dataset.alarm : null;
  }

  function swap(next) {
    const alarm = focusedAlarm();
    board.replaceWith(next);
    board = next;
    if (summary && next.dataset.summary && summary.textContent !== next.dataset.summary) {
      summary.textContent = next.dataset.summary;
    }
    if (alarm) {
      const same = board.querySelector(`[data-alarm="${CSS.escape(alarm)}"] button`);
      (same || board.querySelector("h2")).focus();
    }
  }

  async function poll() {
    try {
      const answer = await fetch(source, { credentials: "same-origin", cache: "no-store" });
      // Signed out meanwhile: the answer is the sign-in page; a reload shows it.
      if (answer.redirected) return;
      if (answer.ok) {
        const holder = document.createElement("template");
        holder.innerHTML = await answer.text();
        const next = holder.content.getElementById("alarm-board");
        if (next && next.dataset.version !== board.dataset.version) swap(next);
      }
    } catch (failure) {
      // The server is restarting or the network is down: try again next time.
    }
    window.setTimeout(poll, PERIOD_MS);
  }

  window.setTimeout(poll, PERIOD_MS);
})();
