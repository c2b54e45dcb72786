// Models and their versions: the list of models, one model's versions, and one version with
// its lineage, its audit, its evaluation (figures and labelled before/after grids) and its downloads.

import { blob, get, save } from "../api.js";
import { format } from "../chart.js";
import { bytes, definitions, h, table, when } from "../dom.js";
import { audit } from "./audit.js";
import { jobLink, versionLink } from "./parts.js";

const GRIDS = [
  ["forget_before.png", "forget", "forget prompts, before"],
  ["forget_after.png", "forget", "forget prompts, after"],
  ["retain_before.png", "retain", "retain prompts, before"],
  ["retain_after.png", "retain", "retain prompts, after"],
];
const LOSSES = [["forget", "forget loss on held-out forget prompts"], ["retain", "retain loss on held-out retain prompts"]];
const FAMILIES = { sd: "Stable Diffusion 1.x / 2.x", sdxl: "Stable Diffusion XL" };
const TRAINABLE = { unet: "the whole UNet", cross_attention: "the UNet's cross-attention",
  lora: "a LoRA adapter (fused into the UNet, also downloadable on its own)" };
const SMALL_IMAGE_PX = 128; // grids lower than this are scaled up, pixel for pixel, to about this height

export async function renderModels(main, _route, signal) {
  const models = (await get("/v1/models", { signal })).data;
  const rows = models.map((m) => [
    h("a", { href: `#/models/${encodeURIComponent(m.name)}` }, m.name),
    versionLink(m.name, m.newest_version.version, `version ${m.newest_version.version}`),
    m.newest_version.concepts_erased.join(", ") || "–", when(m.created_at),
  ]);
  main.replaceChildren(h("h1", { tabindex: -1 }, "Models"), models.length
    ? table("Models and their newest versions", ["Model", "Newest", "Concepts erased (newest)", "Registered"], rows)
    : h("p", {}, "No models yet: an administrator registers one with POST /v1/models."));
}

export async function renderVersions(main, { params }, signal) {
  const name = params[0];
  const versions = (await get(`/v1/models/${encodeURIComponent(name)}/versions`, { signal })).data;
  const rows = versions.map((v) => [
    versionLink(name, v.version, `version ${v.version}`),
    v.parent ? versionLink(name, v.parent, `version ${v.parent}`) : "– (base)",
    v.concepts_erased.join(", ") || "–", v.method || "–", v.job_id ? jobLink(v.job_id) : "–", when(v.created_at),
  ]);
  main.replaceChildren(
    h("div", { class: "title-row" }, h("h1", { tabindex: -1 }, `Model ${name}`),
      h("a", { class: "button", href: `#/new?model=${encodeURIComponent(name)}` }, "Erase from this model")),
    table(`Versions of ${name}, newest first`, ["Version", "Parent", "Concepts erased", "Method", "Job", "Created"], rows));
}

export async function renderVersion(main, { params }, signal) {
  const [name, number] = [params[0], Number(params[1])];
  const path = `/v1/models/${encodeURIComponent(name)}/versions/${number}`;
  const version = await get(path, { signal });
  const siblings = (await get(`/v1/models/${encodeURIComponent(name)}/versions`, { signal })).data;
  main.replaceChildren(
    h("div", { class: "title-row" }, h("h1", { tabindex: -1 }, `${name} version ${number}`),
      h("a", { class: "button", href: `#/new?model=${encodeURIComponent(name)}&version=${number}` }, "Erase more from this version")),
    section("lineage", "Lineage", lineage(version, siblings)),
    section("audit", "Audit", audit(version.evaluation)),
    section("evaluation", "Evaluation", evaluation(version, path, signal)),
    section("downloads", "Downloads", downloads(version, path)));
}

function section(id, heading, ...content) {
  return h("section", { "aria-labelledby": id }, h("h2", { id }, heading), content);
}

function lineage(version, siblings) {
  const children = siblings.filter((v) => v.parent === version.version).sort((a, b) => a.version - b.version);
  return definitions([
    ["Parent", version.parent ? versionLink(version.name, version.parent, `version ${version.parent}`) : "none: a base model as registered"],
    ["Children", children.length ? h("ul", { class: "plain" }, children.map((c) => h("li", {},
      versionLink(version.name, c.version, `version ${c.version}`), ` (erased ${c.concepts_erased.join(", ") || "nothing"})`))) : "none yet"],
    ["Concepts erased", version.concepts_erased.length
      ? h("ul", { class: "plain" }, version.concepts_erased.map((c) => h("li", {}, c))) : "none"],
    ["Method", version.method || "–"],
    ["Family", FAMILIES[version.family] || version.family || "–"],
    ["Trained", TRAINABLE[version.trainable] || version.trainable || "–"],
    ["Made by job", version.job_id ? jobLink(version.job_id) : "– (registered)"],
    ["Status", version.status],
    ["Created", when(version.created_at)],
  ]);
}

function evaluation(version, path, signal) {
  const figures = version.evaluation;
  if (!figures) return h("p", {}, "No evaluation: this version was registered, not made by a job.");
  const pngs = version.files.map((f) => f.path).filter((p) => p.startsWith("evaluation/") && p.endsWith(".png"));
  const others = pngs.filter((p) => !GRIDS.some(([file]) => p === `evaluation/${file}`));
  return [
    lossTable(figures),
    otherFigures(figures),
    h("p", { class: "hint" }, "Each sample grid holds one image per held-out prompt, left to right, drawn with the same " +
      "seeds before and after the erasure; the numbers under a grid are the prompts' numbers in the list below it."),
    ["forget", "retain"].map((set) => gridSet(set, pngs, (figures.prompts || {})[set] || [], path, signal)),
    others.length ? [h("h3", {}, "Other images"),
      h("div", { class: "grids" }, others.map((p) => grid(`${path}/files/${p}`, p.slice("evaluation/".length), [], signal)))] : null,
  ];
}

// One prompt set's grids, before beside after, over the list of its prompts.
function gridSet(set, pngs, prompts, path, signal) {
  const shown = GRIDS.filter(([file, gridSet]) => gridSet === set && pngs.includes(`evaluation/${file}`));
  if (!shown.length) return null;
  return h("div", { class: "grid-set" },
    h("h3", { id: `prompts-${set}` }, `${set === "forget" ? "Forget" : "Retain"} prompts: before and after`),
    h("div", { class: "grids" }, shown.map(([file, , label]) => grid(`${path}/files/evaluation/${file}`, label, prompts, signal))),
    prompts.length ? h("ol", { class: "prompts", "aria-label": `${set} prompts, left to right` }, prompts.map((p) => h("li", {}, p))) : null);
}

function lossTable(figures) {
  const rows = LOSSES.filter(([set]) => `${set}_loss_before` in figures || `${set}_loss_after` in figures).map(([set, label]) => {
    const before = figures[`${set}_loss_before`], after = figures[`${set}_loss_after`];
    const change = Number.isFinite(before) && Number.isFinite(after) ? `${after >= before ? "+" : ""}${format(after - before)}` : "–";
    return [label, format(before), format(after), change];
  });
  if (!rows.length) return null;
  return [
    table("Held-out denoising losses", ["", "before", "after", "change"], rows, { class: "numbers" }),
    h("p", { class: "hint" }, "An erasure should raise the forget loss (the model no longer predicts the concept) " +
      "and keep the retain loss near where it was."),
  ];
}

function otherFigures(figures) {
  const skip = new Set(["prompts", "audit", ...LOSSES.flatMap(([set]) => [`${set}_loss_before`, `${set}_loss_after`])]);
  const rest = Object.entries(figures).filter(([key]) => !skip.has(key));
  if (!rest.length) return null;
  return h("details", {}, h("summary", {}, "Other figures"), definitions(rest.map(([key, value]) => [key, shown(value)])));
}

function shown(value) {
  if (typeof value === "number") return format(value);
  if (value && typeof value === "object" && !Array.isArray(value)) {
    return Object.entries(value).map(([k, v]) => `${k} ${typeof v === "number" ? format(v) : JSON.stringify(v)}`).join(", ");
  }
  return JSON.stringify(value);
}

// A grid image, fetched with the key; a tiny one is scaled up by a whole factor, crisp pixels.
// Its cells are square, one per prompt, for the first prompts of the set (as many as it has cells).
function grid(url, label, prompts, signal) {
  const image = h("img", { alt: `Sample grid: ${label}` });
  const caption = h("figcaption", {}, label);
  const figure = h("figure", { class: "grid" }, h("div", { class: "grid-frame" }, image), caption);
  image.addEventListener("load", () => {
    const factor = Math.max(1, Math.floor(SMALL_IMAGE_PX / image.naturalHeight));
    if (factor > 1) image.classList.add("pixelated");
    image.style.width = `${image.naturalWidth * factor}px`;
    const cells = Math.round(image.naturalWidth / image.naturalHeight);
    if (!prompts.length || cells < 1 || cells > prompts.length) return;
    image.after(cellNumbers(cells));
    image.alt = `Sample grid: ${label}, ${cells} images for prompts 1 to ${cells} listed below`;
    if (cells < prompts.length) caption.append(h("span", { class: "hint" }, ` (prompts 1–${cells} of ${prompts.length})`));
  }, { once: true });
  blob(url, { signal }).then((data) => {
    image.src = URL.createObjectURL(data);
    signal.addEventListener("abort", () => URL.revokeObjectURL(image.src), { once: true });
  }).catch((error) => { if (!signal.aborted) figure.append(h("p", { class: "error" }, `Could not load: ${error.message}`)); });
  return figure;
}

function cellNumbers(count) {
  const numbers = h("div", { class: "cell-numbers", "aria-hidden": "true" });
  numbers.style.gridTemplateColumns = `repeat(${count}, 1fr)`;
  for (let i = 1; i <= count; i += 1) numbers.append(h("span", {}, String(i)));
  return numbers;
}

function downloads(version, path) {
  const status = h("p", { class: "live", "aria-live": "polite" });
  const base = `${version.name}-v${version.version}`;
  const hasDelta = version.files.some((f) => f.path === "delta.safetensors");
  const button = (text, url, filename, label) => h("button", {
    type: "button", class: "secondary", "aria-label": label || null, onclick: () => download(url, filename, status),
  }, text);
  const rows = version.files.map((f) => [
    h("code", { class: "wrap" }, f.path), bytes(f.size), h("code", { title: f.sha256 }, `${f.sha256.slice(0, 12)}…`),
    button("Download", `${path}/files/${f.path.split("/").map(encodeURIComponent).join("/")}`, f.path.split("/").pop(), `Download ${f.path}`),
  ]);
  return [
    h("div", { class: "actions" },
      button("Download the whole version (.tar)", `${path}/archive`, `${base}.tar`),
      hasDelta ? button("Download the delta (.safetensors)", `${path}/delta`, `${base}-delta.safetensors`) : null),
    version.adapter ? adapterButtons(version.adapter, path, button) : null,
    status,
    h("p", { class: "hint" }, "The archive unpacks to a folder that diffusers loads as it is; the delta holds only the " +
      "UNet tensors that changed from the parent. The browser holds a file in memory while it downloads: for large models use ",
      h("code", {}, `lethe download ${version.name} ${version.version} ./${base}`), ", which resumes and checks every sha256."),
    table("Files of this version", ["File", "Size", "sha256", ""], rows, { class: "files" }),
  ];
}

// A LoRA erasure's adapter: the same low-rank weights as diffusers and as kohya write them.
function adapterButtons(adapter, path, button) {
  const fileUrl = (file) => `${path}/files/${file.split("/").map(encodeURIComponent).join("/")}`;
  return [
    h("div", { class: "actions" },
      button("Download the LoRA adapter (diffusers)", fileUrl(adapter.diffusers), adapter.diffusers.split("/").pop()),
      button("Download the LoRA adapter (kohya: AUTOMATIC1111, ComfyUI)", fileUrl(adapter.kohya), adapter.kohya.split("/").pop())),
    h("p", { class: "hint" }, `Rank ${adapter.rank}, alpha ${format(adapter.alpha)}. The diffusers file loads with `,
      h("code", {}, "pipe.load_lora_weights(folder)"), " on the parent version; the kohya file in AUTOMATIC1111 or ComfyUI."),
  ];
}

async function download(url, filename, status) {
  status.textContent = `Downloading ${filename}…`;
  try {
    await save(url, filename);
    status.textContent = `Saved ${filename}.`;
  } catch (error) {
    status.textContent = `Could not download ${filename}: ${error.message}`;
  }
}

