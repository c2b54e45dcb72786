// Sign in: the API key is checked against the server, then kept for this tab only.

import { get, session, ApiError } from "../api.js";
import { h } from "../dom.js";

export const title = "Sign in";

export async function render(main, { query }) {
  const error = h("p", { id: "key-error", class: "error", role: "alert" },
    query.get("refused") ? "The server refused the key (it may have been revoked): sign in again." : "");
  const input = h("input", {
    id: "api-key", name: "api-key", type: "password", required: true, autocomplete: "off", spellcheck: "false",
    "aria-describedby": "key-help key-error",
  });
  const form = h("form", { class: "card narrow", novalidate: true },
    h("label", { for: "api-key" }, "API key"),
    input,
    h("p", { id: "key-help", class: "hint" },
      "The key your administrator gave you (with ", h("code", {}, "make run"), ", the development key it printed). ",
      "It is kept in this browser tab only, until you sign out or close the tab."),
    error,
    h("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) return fail(input, error, "Enter an API key.");
    session.signIn(key);
    try {
      await get("/v1/jobs?limit=1");
    } catch (problem) {
      session.signOut();
      return fail(input, error, problem instanceof ApiError && problem.status === 401
        ? "The server does not know this key." : `Could not sign in: ${problem.message}`);
    }
    location.hash = query.get("next") || "#/jobs";
  });
  main.replaceChildren(h("h1", { tabindex: -1 }, "Sign in to the Lethe console"), form);
}

function fail(input, error, message) {
  error.textContent = message;
  input.setAttribute("aria-invalid", "true");
  input.focus();
}
