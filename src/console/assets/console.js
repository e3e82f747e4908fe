// opsbox console: live overview, streamed uploads, copy buttons. No build step, no libraries.
"use strict";

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

// Parts of a page that refresh themselves: <div data-live="/url" data-interval="2000">.
function startLive(element) {
  const url = element.dataset.live;
  const interval = Number(element.dataset.interval || 2000);
  let busy = false;
  setInterval(async () => {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const response = await fetch(url, { headers: { "X-Requested-With": "fetch" }, cache: "no-store" });
      if (response.status === 401) {
        window.location.assign("/login");
        return;
      }
      if (response.ok) {
        element.innerHTML = await response.text();
        element.dataset.updated = String(Date.now());
      }
    } catch (e) {
      // The stack is stopping or restarting: try again on the next tick.
    } finally {
      busy = false;
    }
  }, interval);
}

// Each chosen file goes up in its own PUT, its body streamed from disk by the browser.
function startUpload(form) {
  const input = form.querySelector('input[type="file"]');
  const status = form.querySelector("[data-upload-status]");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const files = Array.from(input.files || []);
    if (files.length === 0) {
      status.textContent = "Choose one or more files first.";
      return;
    }
    const base = form.dataset.prefix || "";
    let done = 0;
    for (const file of files) {
      const key = base + (file.webkitRelativePath || file.name);
      status.textContent = `Uploading ${key} (${done + 1} of ${files.length})…`;
      const url = `${form.action}?key=${encodeURIComponent(key)}`;
      let response;
      try {
        response = await fetch(url, {
          method: "PUT",
          body: file,
          headers: {
            "X-CSRF-Token": csrfToken(),
            "Content-Type": file.type || "application/octet-stream",
            "X-Requested-With": "fetch",
          },
        });
      } catch (e) {
        status.textContent = `Upload of ${key} failed: ${e}`;
        return;
      }
      if (!response.ok) {
        status.textContent = `Upload of ${key} failed: ${response.status} ${await response.text()}`;
        return;
      }
      done += 1;
    }
    status.textContent = `Uploaded ${done} file(s).`;
    window.location.reload();
  });
}

function startCopy(button) {
  button.addEventListener("click", async () => {
    const target = document.getElementById(button.dataset.copy);
    const text = target ? target.textContent : "";
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch (e) {
      const range = document.createRange();
      range.selectNodeContents(target);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      button.textContent = "Press Ctrl+C";
    }
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(startLive);
  document.querySelectorAll("form[data-upload]").forEach(startUpload);
  document.querySelectorAll("button[data-copy]").forEach(startCopy);
});
