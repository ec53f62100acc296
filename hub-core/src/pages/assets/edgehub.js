/* edgehub's page script, shared by every hub page. It is loaded with `defer` from the hub and
   never inlined, so a `script-src 'self'` policy holds. It finds its work through data-*
   attributes the pages render (URLs included, so it knows nothing of the hub's layout), and it
   never builds HTML: text from the hub or a spawner is set with textContent.

   - home ([data-home]): Start and Stop buttons and the new-server form call the REST API;
   - spawn pending ([data-pending-page]): follows the progress event stream to the server;
   - admin and token pages ([data-manage]): buttons and forms that call the REST API, then
     reload the page (or, for a new token, show it once);
   - any page: <time data-relative> reads "5 minutes ago". */
(function () {
  "use strict";

  const xsrf = document.body.dataset.xsrf || "";

  // Every API call: the session cookie, and the XSRF token the hub demands of cookie-authenticated
  // requests.
  function api(method, url, body) {
    const headers = { "X-XSRFToken": xsrf, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(url, {
      method: method,
      credentials: "same-origin",
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // JupyterHub's error bodies are {"status": 400, "message": "..."}.
  async function failure(response, what) {
    let detail = "";
    try {
      const body = await response.json();
      if (body && typeof body.message === "string") detail = body.message;
    } catch (_) {
      // Not JSON; the status line will do.
    }
    return `${what}: ${detail || response.statusText || "error"} (HTTP ${response.status})`;
  }

  // Retry-After is delay-seconds or an HTTP date (RFC 9110, section 10.2.3).
  function retryAfterSeconds(value) {
    if (!value) return null;
    if (/^\s*\d+\s*$/.test(value)) return parseInt(value, 10);
    const when = Date.parse(value);
    return Number.isNaN(when) ? null : Math.max(1, Math.ceil((when - Date.now()) / 1000));
  }

  function busy(button, on) {
    button.disabled = on;
    if (on) button.setAttribute("aria-busy", "true");
    else button.removeAttribute("aria-busy");
  }

  // Only follow a URL on this origin: the pending page must not become an open redirect.
  function sameOrigin(url) {
    if (typeof url !== "string" || url === "") return null;
    try {
      const target = new URL(url, window.location.href);
      return target.origin === window.location.origin ? target.href : null;
    } catch (_) {
      return null;
    }
  }

  function home(root) {
    const status = root.querySelector("[data-status]");
    const userApi = root.dataset.userApi;
    const say = (text) => {
      status.textContent = text;
    };

    // Resolves true once the page is on its way elsewhere.
    async function start(apiUrl, pendingUrl) {
      const response = await api("POST", apiUrl);
      if (response.status === 201 || response.status === 202) {
        window.location.assign(pendingUrl);
        return true;
      }
      if (response.status === 429) {
        const n = retryAfterSeconds(response.headers.get("Retry-After"));
        say(
          n === null
            ? "Too many servers are starting; try again in a few seconds"
            : `Too many servers are starting; try again in ${n} ${n === 1 ? "second" : "seconds"}`,
        );
        return false;
      }
      say(await failure(response, "Could not start the server"));
      return false;
    }

    async function stop(apiUrl, name) {
      const response = await api("DELETE", apiUrl);
      if (response.status === 202) {
        say("Stopping…");
        await gone(name);
      } else if (response.status !== 204) {
        say(await failure(response, "Could not stop the server"));
        return false;
      }
      window.location.reload();
      return true;
    }

    // A stop answered with 202 goes on in the background: poll the user model, whose `servers`
    // lists only servers that are not stopped, until this one has left it. Gives up after five
    // minutes, and the reload shows whatever the state is then.
    async function gone(name) {
      for (let i = 0; i < 300; i++) {
        await sleep(1000);
        try {
          const response = await api("GET", userApi);
          if (!response.ok) continue;
          const model = await response.json();
          if (!model.servers || !Object.prototype.hasOwnProperty.call(model.servers, name)) return;
        } catch (_) {
          // The hub may be restarting; keep polling.
        }
      }
    }

    async function act(button, action) {
      busy(button, true);
      say("");
      let leaving = false;
      try {
        leaving = await action();
      } catch (err) {
        say(`Could not reach the hub: ${err.message}`);
      }
      if (!leaving) busy(button, false);
    }

    root.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      const server = button && button.closest("[data-server]");
      if (!server || button.disabled) return;
      const { api: apiUrl, pending: pendingUrl, server: name } = server.dataset;
      act(button, () => (button.dataset.action === "start" ? start(apiUrl, pendingUrl) : stop(apiUrl, name)));
    });

    const form = root.querySelector("form[data-new-server]");
    if (form) {
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const input = form.querySelector('input[name="name"]');
        const name = input.value.trim();
        if (name === "" || name.includes("/")) {
          say(name === "" ? "Enter a name for the new server." : "A server name cannot contain “/”.");
          input.focus();
          return;
        }
        const segment = encodeURIComponent(name);
        act(form.querySelector('button[type="submit"]'), () =>
          start(form.dataset.apiBase + segment, form.dataset.pendingBase + segment),
        );
      });
    }

    // A server shown as stopping: reload when it is gone, so its Start button appears.
    for (const server of root.querySelectorAll('[data-server][data-phase="stopping"]')) {
      gone(server.dataset.server).then(() => window.location.reload());
    }
  }

  function pending(root) {
    const bar = root.querySelector("[data-bar]");
    const log = root.querySelector("[data-log]");
    const note = root.querySelector("[data-note]");
    const failed = root.querySelector("[data-failed]");
    const failedMessage = root.querySelector("[data-failed-message]");
    // One automatic reload per tab and page, so a broken stream cannot become a reload loop.
    const reloadKey = `edgehub:reloaded:${window.location.pathname}`;
    const storage = {
      get: () => {
        try {
          return window.sessionStorage.getItem(reloadKey) !== null;
        } catch (_) {
          return false;
        }
      },
      set: (on) => {
        try {
          if (on) window.sessionStorage.setItem(reloadKey, "1");
          else window.sessionStorage.removeItem(reloadKey);
        } catch (_) {
          // No storage: at worst one more reload.
        }
      },
    };
    let finished = false;

    // Same origin, so the session cookie goes along.
    const source = new EventSource(root.dataset.progressUrl);

    source.addEventListener("message", (event) => {
      let evt;
      try {
        evt = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      if (evt.failed) {
        // The bar stays where the spawn got to (a failure's `progress` is 100, which would read
        // as success), and turns to the error colour.
        finished = true;
        source.close();
        storage.set(false);
        root.dataset.state = "failed";
        failed.hidden = false;
        failedMessage.textContent = evt.message || "The server could not be started.";
        failed.querySelector("a").focus();
        return;
      }
      if (typeof evt.progress === "number") {
        const value = Math.max(0, Math.min(100, evt.progress));
        bar.value = value;
        bar.textContent = `${value}%`;
      }
      // `html_message` comes from the spawner and is not trusted, so it is ignored: `message`
      // says the same as text.
      if (typeof evt.message === "string" && evt.message !== "") {
        const item = document.createElement("li");
        item.textContent = evt.message;
        log.append(item);
        log.scrollTop = log.scrollHeight;
      }
      if (evt.ready) {
        finished = true;
        source.close();
        storage.set(false);
        // The page names where to go: the server, or the page in it that was asked for (a
        // link such as /hub/user-redirect/git-pull?repo=…, followed while the server was off).
        window.location.replace(root.dataset.serverUrl || sameOrigin(evt.url));
      }
    });

    // The stream ended, or never opened, without a verdict. The server may be up already, or the
    // hub restarted: reload once after a pause, and the hub answers with the server, this page
    // again, or "not running". EventSource would otherwise reconnect forever on its own.
    source.addEventListener("error", () => {
      if (finished) return;
      finished = true;
      source.close();
      if (storage.get()) {
        note.textContent = "Lost contact with the hub. Reload this page to check on your server.";
        return;
      }
      storage.set(true);
      note.textContent = "Checking on your server…";
      setTimeout(() => window.location.reload(), 2000);
    });
  }

  // Names typed into a list field: split on commas, spaces and new lines.
  const names = (text) => text.split(/[\s,]+/).filter((n) => n !== "");

  // The JSON body of a [data-api-form]: each named field by its type. `data-list` fields are
  // lists of names; checkboxes are booleans; `data-number` fields numbers (empty: left out);
  // `data-wrap="key"` puts a field's value in a one-item list under `key` (a group's name).
  function formBody(form) {
    const body = {};
    for (const field of form.querySelectorAll("[name]")) {
      const key = field.name;
      if (field.type === "checkbox") body[key] = field.checked;
      else if (field.dataset.list !== undefined) body[key] = names(field.value);
      else if (field.dataset.number !== undefined) {
        if (field.value !== "") body[key] = Number(field.value);
      } else if (field.dataset.wrap !== undefined) body[field.dataset.wrap] = [field.value.trim()];
      else body[key] = field.value.trim();
    }
    return body;
  }

  function manage(root) {
    const status = root.querySelector("[data-status]");
    const say = (text) => {
      status.textContent = text;
    };

    // Success reloads the page, so it shows what the hub now holds; a new token is shown once
    // instead, since the hub never shows it again.
    async function call(control, method, url, body, what) {
      busy(control, true);
      say("");
      try {
        const response = await api(method, url, body);
        if (!response.ok) {
          say(await failure(response, what));
          busy(control, false);
          return;
        }
        const shown = root.querySelector("[data-new-token]");
        if (shown && response.status === 201) {
          const model = await response.json();
          if (typeof model.token === "string") {
            shown.querySelector("code").textContent = model.token;
            shown.hidden = false;
            busy(control, false);
            return;
          }
        }
        window.location.reload();
      } catch (err) {
        say(`Could not reach the hub: ${err.message}`);
        busy(control, false);
      }
    }

    root.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-api-url]");
      if (!button || button.disabled) return;
      if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
      let body;
      try {
        body = button.dataset.apiBody ? JSON.parse(button.dataset.apiBody) : undefined;
      } catch (_) {
        body = undefined;
      }
      call(button, button.dataset.apiMethod || "POST", button.dataset.apiUrl, body, button.textContent.trim());
    });

    for (const form of root.querySelectorAll("form[data-api-form]")) {
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const submit = form.querySelector('button[type="submit"]');
        call(submit, form.dataset.apiMethod || "POST", form.dataset.apiUrl, formBody(form), submit.textContent.trim());
      });
    }
  }

  function relativeTimes() {
    const format = new Intl.RelativeTimeFormat("en", { numeric: "auto" });
    const units = [
      ["year", 31536000],
      ["month", 2592000],
      ["week", 604800],
      ["day", 86400],
      ["hour", 3600],
      ["minute", 60],
    ];
    for (const time of document.querySelectorAll("time[data-relative]")) {
      const when = Date.parse(time.dateTime);
      if (Number.isNaN(when)) continue;
      const seconds = Math.round((when - Date.now()) / 1000);
      const [unit, size] = units.find(([, size]) => Math.abs(seconds) >= size) || ["second", 1];
      time.title = time.textContent;
      time.textContent = format.format(Math.round(seconds / size), unit);
    }
  }

  document.querySelectorAll("[data-home]").forEach(home);
  document.querySelectorAll("[data-pending-page]").forEach(pending);
  document.querySelectorAll("[data-manage]").forEach(manage);
  relativeTimes();
})();
