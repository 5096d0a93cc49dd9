"use strict";
// The login form: it posts JSON to api/login; the answer sets an HttpOnly session cookie.
(async () => {
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");
  const session = await (await fetch("api/session", { cache: "no-store" })).json();
  if (session.open) {
    document.getElementById("login-why").textContent =
      "This console has no token or user configured: it is read-only and needs no login.";
    form.querySelector("button[type=submit]").hidden = true;
    return;
  }
  document.getElementById("token-field").hidden = !session.token;
  document.getElementById("user-fields").hidden = !session.user;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const data = Object.fromEntries(
      [...new FormData(form)].filter(([, value]) => value !== "")
    );
    const answer = await fetch("api/login", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(data),
    });
    if (answer.ok) {
      location.href = "./";
    } else {
      const body = await answer.json().catch(() => ({}));
      error.textContent = body.error || `login failed (${answer.status})`;
    }
  });
})();
