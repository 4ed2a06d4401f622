// Progressive enhancement only: every page works without it.
document.addEventListener("click", (event) => {
  const copy = event.target.closest("[data-copy]");
  if (copy) {
    const source = document.getElementById(copy.dataset.copy);
    navigator.clipboard.writeText(source.textContent.trim()).then(() => {
      copy.textContent = "Copied";
      setTimeout(() => { copy.textContent = "Copy"; }, 1500);
    });
  }
});
document.addEventListener("change", (event) => {
  if (event.target.matches("[data-autosubmit]")) event.target.form.submit();
});

// Usage page: a WebSocket says "new usage"; the live part of the page is fetched again (at most once a
// second). Without WebSockets the page still works, refreshed by the reader.
(function liveUsage() {
  const live = document.getElementById("usage-live");
  if (!live || !("WebSocket" in window)) return;
  const status = document.getElementById("live-status");
  let pending = false, delay = 1000;
  async function refresh() {
    if (pending) return;
    pending = true;
    setTimeout(async () => {
      const response = await fetch(live.dataset.liveUrl, {credentials: "same-origin"});
      if (response.ok) {
        // Keep open what the reader opened (the per-day table) across the refresh.
        const open = [...live.querySelectorAll("details[open]")].map((d) => d.dataset.testid);
        live.innerHTML = await response.text();
        open.forEach((id) => { const d = live.querySelector(`details[data-testid="${id}"]`); if (d) d.open = true; });
      }
      pending = false;
    }, 300);
  }
  function connect() {
    const socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/usage/");
    socket.onopen = () => { delay = 1000; if (status) status.textContent = "Live."; refresh(); };
    socket.onmessage = refresh;
    socket.onclose = () => {
      if (status) status.textContent = "Reconnecting...";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
})();

// Billing page: its live parts (balance, payments, ledger) are fetched again every few seconds while the
// page is visible, so a payment confirmed by Stripe's webhook shows up without a reload.
(function pollLive() {
  const parts = document.querySelectorAll("[data-poll-url]");
  if (!parts.length) return;
  setInterval(() => {
    if (document.hidden) return;
    parts.forEach(async (part) => {
      const response = await fetch(part.dataset.pollUrl, {credentials: "same-origin"});
      if (response.ok) part.innerHTML = await response.text();
    });
  }, 2000);
})();

// Playground: stream a chat completion through the dashboard's same-origin door, then show the turn's
// tokens and cost from its usage row. Turns are kept as a stored conversation (continued by its
// conversation_id, so only the new message is sent); Stop cuts the stream, which the gateway bills as
// a partial answer, as it does for any client that hangs up.
(function playground() {
  const form = document.getElementById("playground");
  if (!form) return;
  const transcript = document.getElementById("pg-transcript");
  const input = document.getElementById("pg-input");
  const send = document.getElementById("pg-send");
  const stop = document.getElementById("pg-stop");
  const link = document.getElementById("pg-conversation");
  const csrf = form.querySelector("[name=csrfmiddlewaretoken]").value;
  let conversationId = null, controller = null;
  function turn(role, text) {
    const div = document.createElement("div");
    div.className = "turn " + role;
    div.textContent = text;
    transcript.appendChild(div);
    return div;
  }
  function meta(answer, text) {
    const span = document.createElement("span");
    span.className = "meta";
    span.dataset.testid = "turn-cost";
    span.textContent = text;
    answer.appendChild(span);
  }
  function showConversation(id) {
    conversationId = id;
    link.hidden = !id;
    if (id) {
      const a = link.querySelector("a");
      a.href = form.dataset.conversationUrl.replace("CONVERSATION_ID", id);
      a.textContent = id;
    }
  }
  async function turnUsage(requestId) {
    // A stopped stream's row is written once the gateway notices the hang-up: a moment after the stop.
    for (let attempt = 0; attempt < 20; attempt++) {
      const response = await fetch(form.dataset.usageUrl.replace("REQUEST_ID", requestId), {credentials: "same-origin"});
      if (response.ok) return response.json();
      if (response.status !== 404) return null;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    return null;
  }
  document.getElementById("pg-clear").addEventListener("click", () => {
    if (controller) controller.abort();
    showConversation(null);
    transcript.textContent = "";
    input.focus();
  });
  stop.addEventListener("click", () => { if (controller) controller.abort(); });
  input.addEventListener("keydown", (event) => {
    // Enter sends, Shift+Enter is a new line; not while an input method is composing a character.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    } else if (event.key === "Escape" && controller) {
      controller.abort();
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text || controller) return;
    input.value = "";
    turn("user", text);
    const system = document.getElementById("pg-system").value.trim();
    const messages = [...(system ? [{role: "system", content: system}] : []), {role: "user", content: text}];
    const body = {model: document.getElementById("pg-model").value, messages, stream: true,
                  stream_options: {include_usage: true}};
    if (conversationId) body.conversation_id = conversationId;
    const answer = turn("assistant", "");
    const reply = document.createElement("span");
    answer.appendChild(reply);
    controller = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    transcript.setAttribute("aria-busy", "true");
    let requestId = null, stopped = false;
    try {
      const response = await fetch(form.action, {
        method: "POST", credentials: "same-origin", signal: controller.signal,
        headers: {"Content-Type": "application/json", "X-CSRFToken": csrf}, body: JSON.stringify(body),
      });
      if (!response.ok) {
        const error = await response.json().catch(() => ({}));
        throw new Error((error.error && error.error.message) || response.statusText);
      }
      requestId = response.headers.get("request-id");
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, {stream: true});
        let end;
        while ((end = buffer.indexOf("\n\n")) !== -1) {
          const line = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
          const chunk = JSON.parse(line.slice(6));
          if (chunk.error) throw new Error(chunk.error.message);
          if (chunk.conversation_id && chunk.conversation_id !== conversationId) showConversation(chunk.conversation_id);
          const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
          if (delta && delta.content) reply.textContent += delta.content;
        }
      }
    } catch (error) {
      if (error.name === "AbortError") {
        stopped = true;
      } else {
        answer.className = "turn error";
        answer.textContent = "Error: " + error.message;
      }
    } finally {
      controller = null;
      send.disabled = false;
      stop.disabled = true;
      transcript.removeAttribute("aria-busy");
      if (document.activeElement === stop || document.activeElement === document.body) input.focus();
    }
    if (!requestId) return;
    const u = await turnUsage(requestId);
    const cost = u ? `${u.input_tokens} tokens in, ${u.output_tokens} out · ${u.cost}` : "";
    if (stopped) {
      answer.classList.add("stopped");
      meta(answer, `Stopped: billed as ${u ? u.status : "partial"}${cost ? " · " + cost : ""}. ` +
                   "This answer is not kept in the conversation.");
    } else if (cost) {
      meta(answer, cost);
    }
  });
})();

// Forms that create something are sent once: a double click does not send a second POST (the server
// also makes one key per form token, for requests that arrive twice anyway).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!form.matches("[data-submit-once]")) return;
  if (form.dataset.sent) { event.preventDefault(); return; }
  form.dataset.sent = "1";
});
// A page restored by the back button may be sent again.
window.addEventListener("pageshow", () => {
  document.querySelectorAll("form[data-sent]").forEach((form) => { delete form.dataset.sent; });
});
