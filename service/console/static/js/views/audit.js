// A version's audit (its evaluation's `audit`, written by unlearning/audit/): each figure labelled,
// beside the original model's where the report has it, with which way is good; or why it did not run.

import { format } from "../chart.js";
import { h, table } from "../dom.js";

// [figure, label, the original's figure, which way is good when the report's `about` does not say]
const FIGURES = [
  ["leak_rate", "Leak rate: the concept asked for in ways training never used", "leak_rate_original", "lower"],
  ["attack_success", "Soft-prompt attack success", "attack_success_original", "lower"],
  ["neighbour_accuracy", "Neighbours kept", "neighbour_accuracy_original", "higher"],
  ["neighbour_distance", "Neighbours moved (0 unchanged, 1 unrelated)", null, "lower"],
  ["spread_ratio", "Spread of the concept's images, over the original's", null, "near 1"],
];

export function audit(evaluation) {
  const report = (evaluation || {}).audit;
  if (!report) return h("p", {}, "No audit: a registered base, or a version made before versions were audited.");
  if (report.mode === "off") return h("p", {}, "Not audited: the job asked for audit off.");
  if (report.status !== "done") {
    return h("p", { class: "warning", role: "note" }, h("strong", {}, `The ${report.mode} audit could not run. `),
      report.warning || report.status);
  }
  const about = report.about || {};
  const rows = FIGURES.filter(([name]) => name in report).map(([name, label, original, better]) => [
    h("span", { title: (about[name] || {}).means || null }, label),
    format(report[name]),
    original && original in report ? format(report[original]) : "–",
    `${(about[name] || {}).better || better} is better`,
  ]);
  return [
    table(`Audit (${report.mode}), judged by the original model`, ["Figure", "This version", "The original", "Good"], rows,
      { class: "numbers audit" }),
    h("p", { class: "hint" }, "A good erasure has a low leak rate and attack success, keeps its neighbours as the " +
      "original did, and a spread near 1 (near 0: one image for every prompt). Hover a figure for what it measures."),
  ];
}
