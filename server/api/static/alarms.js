// The alarms page keeps itself current: every second it fetches its list of alarms
// (/manage/alarms/board) and swaps it in when what it shows has changed, so a new alarm
// appears within two seconds; a door alarm on the live stream makes it look at once.
// Without JavaScript the page works the same on reload.
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

  // True while signed in: a redirect means the session ended (a reload shows sign-in).
  async function refresh() {
    try {
      const answer = await fetch(source, { credentials: "same-origin", cache: "no-store" });
      if (answer.redirected) return false;
      if (answer.ok) {
        const holder = document.createElement("template");
        holder.innerHTML = await answer.text();
        const next = holder.content.getElementById("alarm-board");
        if (next && next.dataset.version !== board.dataset.version) swap(next);
      }
    } catch (failure) {
      // The server is restarting or the network is down: try again next time.
    }
    return true;
  }

  async function poll() {
    if (await refresh()) window.setTimeout(poll, PERIOD_MS);
  }

  // The live floor's stream tells of a door alarm as the agent reports it: look at once
  // (and again shortly, as the audit row is written by another worker), not at the next
  // tick. Without the stream, polling alone keeps the page within two seconds.
  if (window.EventSource) {
    const stream = new EventSource("/live/stream");
    stream.onmessage = (message) => {
      const change = JSON.parse(message.data);
      if (change.type === "door" && ["forced", "held_open"].includes(change.event.kind)) {
        for (const delay of [150, 500]) window.setTimeout(refresh, delay);
      }
    };
    stream.onerror = () => {
      if (stream.readyState === EventSource.CLOSED) stream.close();
    };
  }

  window.setTimeout(poll, PERIOD_MS);
})();
