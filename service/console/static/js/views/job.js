// One job: what was asked, its live progress, its losses, its events, and a cancel button.
// While the job runs, its events arrive on the Server-Sent Events stream (read with fetch).

import { ApiError, followEvents, get, post } from "../api.js";
import { lossChart, lossPoints, format } from "../chart.js";
import { announce, clock, definitions, h, replace, table, when } from "../dom.js";
import { FINAL, progressOf, sleep, statusBadge, versionLink } from "./parts.js";

export const title = "Job";

export async function render(main, { params, fail }, signal) {
  const id = params[0];
  const view = {
    id, job: null, events: [], signal,
    facts: h("div"), progress: h("div", { class: "live", "aria-live": "polite", "aria-atomic": "true" }),
    actions: h("div", { class: "actions" }), chart: h("div"), log: h("div"),
  };
  main.replaceChildren(
    h("h1", { tabindex: -1 }, "Job ", h("span", { class: "mono" }, id)),
    view.progress, view.actions,
    h("section", { "aria-labelledby": "losses" }, h("h2", { id: "losses" }, "Losses"), view.chart),
    h("section", { "aria-labelledby": "request" }, h("h2", { id: "request" }, "Request and outcome"), view.facts),
    h("section", { "aria-labelledby": "events" }, h("h2", { id: "events" }, "Events"), view.log));
  // The events first, then the job: a status change after the listed events then comes on the stream.
  view.events = (await get(`/v1/jobs/${encodeURIComponent(id)}/events`, { signal })).data;
  view.job = await get(`/v1/jobs/${encodeURIComponent(id)}`, { signal });
  show(view);
  if (!FINAL.has(view.job.status)) follow(view).catch(fail);
}

// Take events from the stream until the job ends; after a dropped connection, resume after the last one.
async function follow(view) {
  while (!view.signal.aborted && !FINAL.has(view.job.status)) {
    const after = view.events.length ? view.events[view.events.length - 1].id : 0;
    try {
      await followEvents(view.id, after, (type, data) => onEvent(view, type, data), view.signal);
      await reload(view);
    } catch (error) {
      if (view.signal.aborted) return;
      if (error instanceof ApiError && error.status === 401) throw error;
      await sleep(2000, view.signal); // the stream broke (a restart, the network): try again shortly
    }
  }
}

function onEvent(view, type, data) {
  if (type === "end") return;
  view.events.push(data);
  if (data.type === "progress" && data.data) view.job = { ...view.job, progress: data.data };
  if (data.type === "message" && data.data && data.data.status) reload(view).catch(() => {}); // follow() retries
  else show(view);
}

async function reload(view) {
  const before = view.job.status;
  view.job = await get(`/v1/jobs/${encodeURIComponent(view.id)}`, { signal: view.signal });
  if (view.job.status !== before) announce(`The job is now ${view.job.status}.`);
  show(view);
}

function show(view) {
  const job = view.job;
  replace(view.progress, h("p", { class: "progress-line" }, statusBadge(job.status), " ", progressOf(job), timeLeft(job)));
  replace(view.chart, lossChart(lossPoints(view.events)));
  replace(view.log, eventTable(view.events));
  if (view.shownStatus === job.status) return;
  // Redrawn only when the status changes: a focused button would lose the keyboard's focus.
  view.shownStatus = job.status;
  replace(view.actions, FINAL.has(job.status) || job.status === "cancelling" ? null
    : h("button", { type: "button", class: "danger", onclick: () => cancel(view) }, "Cancel this job"));
  replace(view.facts, facts(job));
}

async function cancel(view) {
  try {
    view.job = await post(`/v1/jobs/${encodeURIComponent(view.id)}/cancel`);
    announce(`Cancel requested: the job is ${view.job.status}.`);
    show(view);
  } catch (error) {
    announce(`The job was not cancelled: ${error.message}`);
  }
}

function facts(job) {
  const hyperparameters = Object.entries(job.hyperparameters || {});
  return definitions([
    ["Status", statusBadge(job.status)],
    ["Base model", versionLink(job.base_model.name, job.base_model.version)],
    ["Concepts to erase", job.concepts.join(", ")],
    job.preserve && job.preserve.length ? ["Concepts to keep", job.preserve.join(", ")] : null,
    ["Method", job.method],
    ["Settings", hyperparameters.length
      ? h("ul", { class: "plain" }, hyperparameters.map(([k, v]) => h("li", {}, h("code", {}, k), ` = ${JSON.stringify(v)}`)))
      : "the method's defaults"],
    ["Seed", String(job.seed)],
    ["Attempt", String(job.attempt)],
    ["Created", when(job.created_at)],
    ["Started", when(job.started_at)],
    ["Finished", when(job.finished_at)],
    ["Estimate", estimate(job)],
    job.error ? ["Error", h("span", { class: "error" }, `${job.error.code}: ${job.error.message}`)] : null,
    job.result ? ["Result", versionLink(job.result.model, job.result.version)] : null,
  ]);
}

// The seconds left by the newest progress event (`eta_seconds`), while the job runs.
function timeLeft(job) {
  const eta = job.progress && job.progress.eta_seconds;
  if (FINAL.has(job.status) || typeof eta !== "number") return null;
  return h("span", { class: "eta" }, ` (about ${duration(eta)} left)`);
}

function estimate(job) {
  if (typeof job.estimated_seconds !== "number") return "none: no job like it had finished on this server";
  const finish = job.estimated_finish_at ? `, finishing about ${when(job.estimated_finish_at)}` : "";
  return `about ${duration(job.estimated_seconds)} of running${finish}`;
}

// "45 s", "3 min 05 s", "2 h 04 min", as the lethe client writes them.
export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

const EVENTS_SHOWN = 200;

function eventTable(events) {
  const rows = events.slice(-EVENTS_SHOWN).reverse().map((event) => [
    clock(event.created_at), event.type, event.message, eventDetail(event),
  ]);
  if (!events.length) return h("p", {}, "No events yet.");
  const caption = events.length > EVENTS_SHOWN ? `The newest ${EVENTS_SHOWN} of ${events.length} events` : "Events, newest first";
  return table(caption, ["Time", "Type", "Message", "Details"], rows, { class: "events" });
}

function eventDetail(event) {
  const data = event.data || {};
  if (event.type === "metrics") {
    return Object.entries(data).filter(([, v]) => typeof v === "number" && !Number.isInteger(v))
      .map(([k, v]) => `${k} ${format(v)}`).join(", ");
  }
  if (event.type === "progress") return "";
  const text = JSON.stringify(data);
  return text === "{}" ? "" : h("code", { class: "wrap" }, text.length > 300 ? `${text.slice(0, 300)}…` : text);
}
