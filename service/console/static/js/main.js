// The console's router: the part of the address after `#` picks the page. Each page gets an
// AbortSignal that ends its polling and streams when the person moves to another page.

import { ApiError, session } from "./api.js";
import { h } from "./dom.js";
import * as jobs from "./views/jobs.js";
import * as job from "./views/job.js";
import { renderModels, renderVersion, renderVersions } from "./views/models.js";
import * as signIn from "./views/signin.js";
import * as submit from "./views/submit.js";

const PAGES = [
  [/^\/sign-in$/, signIn.render, "Sign in", true],
  [/^\/(jobs)?$/, jobs.render, "Jobs"],
  [/^\/jobs\/([^/]+)$/, job.render, "Job"],
  [/^\/new$/, submit.render, "New erasure job"],
  [/^\/models$/, renderModels, "Models"],
  [/^\/models\/([^/]+)$/, renderVersions, "Model"],
  [/^\/models\/([^/]+)\/versions\/(\d+)$/, renderVersion, "Version"],
];

const main = document.getElementById("main");
let current = null;
let firstPage = true;

function route() {
  const [path, search = ""] = location.hash.replace(/^#/, "").split("?");
  for (const [pattern, render, title, open] of PAGES) {
    const match = pattern.exec(path || "/");
    if (match) {
      const params = match.slice(1).filter((p) => p !== undefined && p !== "jobs").map(decodeURIComponent);
      return { render, title, open: Boolean(open), params, query: new URLSearchParams(search) };
    }
  }
  return null;
}

async function show() {
  if (current) current.abort();
  current = new AbortController();
  const signal = current.signal;
  const page = route();
  document.body.classList.toggle("signed-in", Boolean(session.key));
  if (!page) return notFound();
  if (!page.open && !session.key) {
    location.replace(`#/sign-in?next=${encodeURIComponent(location.hash || "#/jobs")}`);
    return;
  }
  document.title = `${page.title} – Lethe console`;
  markCurrentLink();
  main.setAttribute("aria-busy", "true");
  main.replaceChildren(h("p", { class: "note" }, "Loading…"));
  // A live page keeps polling or streaming after `render` returns; its later failures come to `fail`.
  const fail = (error) => { if (!signal.aborted) failed(error); };
  try {
    await page.render(main, { params: page.params, query: page.query, fail }, signal);
  } catch (error) {
    fail(error);
  }
  if (signal.aborted) return;
  main.removeAttribute("aria-busy");
  if (!firstPage) main.querySelector("h1")?.focus(); // a screen reader starts reading the new page
  firstPage = false;
}

function failed(error) {
  if (error instanceof ApiError && error.status === 401) {
    session.signOut();
    document.body.classList.remove("signed-in");
    location.hash = "#/sign-in?refused=1";
    return;
  }
  main.replaceChildren(h("h1", { tabindex: -1 }, "Something went wrong"),
    h("p", { class: "error", role: "alert" }, error instanceof ApiError ? `${error.status}: ${error.message}` : String(error.message || error)),
    h("p", {}, h("a", { href: "#/jobs" }, "Back to the jobs")));
}

function notFound() {
  document.title = "Not found – Lethe console";
  main.replaceChildren(h("h1", { tabindex: -1 }, "No such page"), h("p", {}, h("a", { href: "#/jobs" }, "Go to the jobs")));
}

function markCurrentLink() {
  const section = location.hash.split(/[/?]/)[1] || "jobs";
  for (const link of document.querySelectorAll("#site-nav a[data-section]")) {
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

document.getElementById("sign-out").addEventListener("click", () => {
  session.signOut();
  location.hash = "#/sign-in";
});
document.getElementById("skip-link").addEventListener("click", (event) => {
  event.preventDefault(); // `#main` as an address would be taken for a page
  main.focus();
});
window.addEventListener("hashchange", () => show());
show();
