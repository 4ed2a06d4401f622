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
      if (response.ok) live.innerHTML = await response.text();
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

// Playground: stream a chat completion through the dashboard's same-origin door, then show the turn's
// tokens and cost from its usage row.
(function playground() {
  const form = document.getElementById("playground");
  if (!form) return;
  const transcript = document.getElementById("pg-transcript");
  const input = document.getElementById("pg-input");
  const csrf = form.querySelector("[name=csrfmiddlewaretoken]").value;
  let history = [];
  function turn(role, text) {
    const div = document.createElement("div");
    div.className = "turn " + role;
    div.textContent = text;
    transcript.appendChild(div);
    return div;
  }
  document.getElementById("pg-clear").addEventListener("click", () => { history = []; transcript.textContent = ""; });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    turn("user", text);
    history.push({role: "user", content: text});
    const system = document.getElementById("pg-system").value.trim();
    const messages = system ? [{role: "system", content: system}, ...history] : history;
    const answer = turn("assistant", "");
    const button = document.getElementById("pg-send");
    button.disabled = true;
    try {
      const response = await fetch(form.action, {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
        body: JSON.stringify({model: document.getElementById("pg-model").value, messages, stream: true,
                              stream_options: {include_usage: true}, store: false}),
      });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        throw new Error((body.error && body.error.message) || response.statusText);
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "", reply = "";
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
          const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
          if (delta && delta.content) { reply += delta.content; answer.textContent = reply; }
        }
      }
      history.push({role: "assistant", content: reply});
      const requestId = response.headers.get("request-id");
      const usage = await fetch(form.dataset.usageUrl.replace("REQUEST_ID", requestId), {credentials: "same-origin"});
      if (usage.ok) {
        const u = await usage.json();
        const meta = document.createElement("span");
        meta.className = "meta";
        meta.dataset.testid = "turn-cost";
        meta.textContent = `${u.input_tokens} tokens in, ${u.output_tokens} out · ${u.cost}`;
        answer.appendChild(meta);
      }
    } catch (error) {
      answer.className = "turn error";
      answer.textContent = "Error: " + error.message;
      history.pop();
    } finally {
      button.disabled = false;
    }
  });
})();
