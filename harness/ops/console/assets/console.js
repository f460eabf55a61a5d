// The console page's script: it swaps in the panels the server sends over server-sent events, and
// sends the page's forms with fetch so that the page stays where it is. Without it the page still
// shows a reading and its forms still work, one reload at a time. Under authentication the
// browser's sign-in cookie carries the admin token with every request, the script's included.

const live = document.getElementById("live");
const answer = document.getElementById("answer");
/** Follows the server's readings; EventSource reconnects by itself after a loss. */
function follow() {
  const events = new EventSource("/events");
  events.addEventListener("open", () => setLive(true));
  events.addEventListener("error", () => {
    setLive(false);
    // Refused rather than cut off (the sign-in expired, say): EventSource gives up, so the page
    // is loaded again, which asks to sign in.
    if (events.readyState === EventSource.CLOSED) setTimeout(() => location.reload(), 2_000);
  });
  events.addEventListener("panels", (event) => {
    for (const [id, html] of Object.entries(JSON.parse(event.data))) {
      const panel = document.getElementById(id);
      // An open <details> (a dead letter's body) stays open across the swap.
      const open = [...panel.querySelectorAll("details[open]")].map(pathOf);
      panel.innerHTML = html;
      for (const path of open) panel.querySelector(path)?.setAttribute("open", "");
    }
    document.body.dataset.updatedAt = String(Date.now());
  });
}

function setLive(on) {
  live.textContent = on ? "live" : "reconnecting…";
  live.className = on ? "dot ok" : "dot bad";
}

/** A selector for a dead letter's <details>, by the message it belongs to. */
function pathOf(details) {
  const id = details.closest("[data-message-id]")?.dataset.messageId;
  return id ? `[data-message-id="${CSS.escape(id)}"] details` : "details";
}

async function send(form, button) {
  button.disabled = true;
  const headers = { accept: "application/json" };
  try {
    const response = await fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers,
    });
    const result = await response.json();
    // The console's own answers say `message`; a refused token gets the services' `error`.
    show(result.message ?? result.error, response.ok);
  } catch (error) {
    show(`The console did not answer: ${error.message}`, false);
  } finally {
    button.disabled = false;
  }
}

function show(message, ok) {
  answer.textContent = message;
  answer.className = ok ? "ok" : "bad";
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  // Signing out is a navigation: the browser posts it and follows the redirect itself.
  if (!(form instanceof HTMLFormElement) || form.classList.contains("sign-out")) return;
  event.preventDefault();
  send(form, event.submitter ?? form.querySelector("button"));
});

follow();
