// Pieces several pages show: a job's status, its progress, links to jobs and versions.

import { h } from "../dom.js";

export const FINAL = new Set(["succeeded", "failed", "cancelled"]);

export function statusBadge(status) {
  return h("span", { class: `status status-${status}` }, status);
}

export function jobLink(id) {
  return h("a", { href: `#/jobs/${encodeURIComponent(id)}`, class: "mono" }, id);
}

export function versionHref(name, version) {
  return `#/models/${encodeURIComponent(name)}/versions/${version}`;
}

export function versionLink(name, version, text = `${name} v${version}`) {
  return h("a", { href: versionHref(name, version) }, text);
}

export function stageText(job) {
  const progress = job.progress;
  if (job.status === "queued") return "waiting for a worker";
  if (!progress || !progress.stage) return job.status;
  return progress.total_steps ? `${progress.stage} ${progress.step}/${progress.total_steps}` : progress.stage;
}

// A bar and its words while the job runs; once it has ended, what it ended with.
export function progressOf(job) {
  if (job.status === "succeeded" && job.result) return ["done: ", versionLink(job.result.model, job.result.version)];
  if (FINAL.has(job.status)) return job.error ? `${job.error.code}: ${job.error.message}` : job.status;
  const progress = job.progress || {};
  const bar = progress.total_steps
    ? h("progress", { max: progress.total_steps, value: progress.step, "aria-label": `${job.id}: ${stageText(job)}` })
    : null;
  return h("span", { class: "progress" }, bar, " ", stageText(job));
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}
