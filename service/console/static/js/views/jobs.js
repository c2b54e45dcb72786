// The jobs list, newest first, kept up to date by polling while a job is unfinished.

import { ApiError, get } from "../api.js";
import { announce, h, replace, table, when } from "../dom.js";
import { FINAL, jobLink, progressOf, sleep, statusBadge, versionLink } from "./parts.js";

export const title = "Jobs";
const BUSY_POLL_MS = 1500, IDLE_POLL_MS = 10_000;

export async function render(main, { query, fail }, signal) {
  const after = query.get("after");
  const holder = h("div", { id: "jobs" });
  main.replaceChildren(
    h("div", { class: "title-row" },
      h("h1", { tabindex: -1 }, after ? "Older jobs" : "Jobs"),
      h("a", { class: "button", href: "#/new" }, "New erasure job")),
    holder);
  const seen = new Map();
  const unfinished = await refresh(holder, after, seen, signal);
  keepFresh(holder, after, seen, unfinished, signal).catch(fail);
}

async function keepFresh(holder, after, seen, unfinished, signal) {
  while (!signal.aborted) {
    await sleep(unfinished ? BUSY_POLL_MS : IDLE_POLL_MS, signal);
    try {
      if (!signal.aborted) unfinished = await refresh(holder, after, seen, signal);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) throw error;
      unfinished = true; // the server or the network hiccuped: look again soon
    }
  }
}

// Redraw the list; announce each status change; say whether any job shown is unfinished.
async function refresh(holder, after, seen, signal) {
  const page = await get(`/v1/jobs?limit=20${after ? `&after=${encodeURIComponent(after)}` : ""}`, { signal });
  for (const job of page.data) {
    if (seen.has(job.id) && seen.get(job.id) !== job.status) announce(`Job ${job.id} is now ${job.status}.`);
    seen.set(job.id, job.status);
  }
  if (!page.data.length) {
    replace(holder, h("p", {}, "No jobs yet. ", h("a", { href: "#/new" }, "Start an erasure"), "."));
    return false;
  }
  const rows = page.data.map((job) => [
    jobLink(job.id), statusBadge(job.status), versionLink(job.base_model.name, job.base_model.version),
    job.concepts.join(", "), progressOf(job), when(job.created_at),
  ]);
  const last = page.data[page.data.length - 1].id;
  const focused = holder.contains(document.activeElement) ? document.activeElement.getAttribute("href") : null;
  replace(holder,
    table("Jobs, newest first", ["Job", "Status", "Base model", "Concepts", "Progress", "Created"], rows, { class: "jobs" }),
    page.has_more ? h("p", {}, h("a", { href: `#/jobs?after=${encodeURIComponent(last)}` }, "Older jobs")) : null);
  if (focused) holder.querySelector(`[href="${CSS.escape(focused)}"]`)?.focus(); // a redraw keeps the keyboard's place
  return page.data.some((job) => !FINAL.has(job.status));
}
