// The form that starts an erasure job: base model and version, concepts, method, and the
// method's settings with their defaults and bounds (from GET /v1/methods). A field the server
// refuses is marked by the name the problem gives it (`errors[].field`).

import { ApiError, get, post, randomKey } from "../api.js";
import { h, replace } from "../dom.js";

export const title = "New erasure job";
const MAX_SEED = 2 ** 32 - 1;

export async function render(main, { query }, signal) {
  const [models, methods] = await Promise.all([get("/v1/models", { signal }), get("/v1/methods", { signal })]);
  if (!models.data.length) {
    main.replaceChildren(h("h1", { tabindex: -1 }, title), h("p", {}, "There is no model to erase from yet."));
    return;
  }
  const form = buildForm(models.data, methods.data, query);
  main.replaceChildren(h("h1", { tabindex: -1 }, title), form.element);
  await form.loadVersions(signal);
}

function buildForm(models, methods, query) {
  const summary = h("div", { class: "error-summary", role: "alert", tabindex: -1, hidden: true });
  const model = select("base-model", "Base model", "base_model.name", models.map((m) => [m.name, m.name]), query.get("model"));
  const version = select("base-version", "Version", "base_model.version", [["", "the newest"]]);
  const method = select("method", "Method", "method",
    methods.map((m) => [m.id, m.default ? `${m.id} (default)` : m.id]), methods.find((m) => m.default)?.id);
  const settings = h("div", { class: "settings" });
  const state = { methods, idempotencyKey: randomKey(), wantedVersion: query.get("version") };
  const element = h("form", { class: "card job-form" },
    summary,
    h("fieldset", {}, h("legend", {}, "What to erase"),
      h("div", { class: "row" }, model.field, version.field),
      area("concepts", "Concepts to erase", "concepts", "One per line, for example: van gogh", true),
      area("preserve", "Concepts to keep (optional)", "preserve", "One per line: related concepts the model must still draw")),
    h("fieldset", {}, h("legend", {}, "How"),
      h("div", { class: "row" }, method.field, seedField()),
      h("p", { class: "hint", id: "settings-hint" }, "Leave a setting blank for the method's default."),
      settings),
    h("button", { type: "submit" }, "Start the erasure"));
  const showSettings = () => replace(settings, settingFields(methods.find((m) => m.id === method.input.value)));
  method.input.addEventListener("change", showSettings);
  model.input.addEventListener("change", () => loadVersions());
  showSettings();
  element.addEventListener("submit", (event) => { event.preventDefault(); submit(element, summary, state); });

  async function loadVersions(signal) {
    const name = model.input.value;
    const versions = (await get(`/v1/models/${encodeURIComponent(name)}/versions`, { signal })).data;
    replace(version.input, h("option", { value: "" }, `the newest (version ${versions[0]?.version ?? "?"})`),
      versions.map((v) => h("option", { value: v.version, selected: String(v.version) === state.wantedVersion },
        `version ${v.version}${v.concepts_erased.length ? ` (erased: ${v.concepts_erased.join(", ")})` : ""}`)));
  }
  return { element, loadVersions };
}

function describedBy(id, ...more) {
  return [...more, `${id}-error`].join(" ");
}

function errorSlot(id) {
  return h("p", { id: `${id}-error`, class: "field-error" });
}

function select(id, label, field, options, chosen) {
  const input = h("select", { id, name: id, dataset: { field }, "aria-describedby": describedBy(id) },
    options.map(([value, text]) => h("option", { value, selected: value === chosen }, text)));
  return { input, field: h("div", { class: "field" }, h("label", { for: id }, label), input, errorSlot(id)) };
}

function area(id, label, field, help, required = false) {
  return h("div", { class: "field" },
    h("label", { for: id }, label),
    h("textarea", { id, name: id, rows: 3, required, dataset: { field }, "aria-describedby": describedBy(id, `${id}-help`) }),
    h("p", { id: `${id}-help`, class: "hint" }, help), errorSlot(id));
}

function settingFields(method) {
  return method.settings.map((setting) => {
    const id = `hp-${setting.name}`, field = `hyperparameters.${setting.name}`;
    if (setting.type === "boolean") return choiceField(setting, id, field, ["true", "false"]);
    if (setting.choices) return choiceField(setting, id, field, setting.choices);
    if (setting.type === "integer" || setting.type === "number") return numberField(setting, id, field, setting.name);
    return textField(setting, id, field);
  });
}

// A string, a list of strings (comma-separated) or any other JSON value.
function textField(setting, id, field) {
  const shown = setting.type === "array" ? setting.default.join(", ") : setting.type === "json" ? JSON.stringify(setting.default) : setting.default;
  const how = { array: " Comma-separated.", json: " As JSON." }[setting.type] || "";
  return h("div", { class: "field" }, h("label", { for: id }, setting.name),
    h("input", { id, name: id, type: "text", spellcheck: "false", placeholder: String(shown ?? ""),
      dataset: { field, setting: setting.name, kind: setting.type }, "aria-describedby": describedBy(id, `${id}-help`) }),
    h("p", { id: `${id}-help`, class: "hint" }, `${capital(setting.help)}.${how} Default: ${shown}.`), errorSlot(id));
}

function seedField() {
  return h("div", { class: "field" }, h("label", { for: "seed" }, "Seed"),
    h("input", { id: "seed", name: "seed", type: "number", inputmode: "numeric", step: 1, min: 0, max: MAX_SEED, value: 0,
      required: true, dataset: { field: "seed" }, "aria-describedby": describedBy("seed", "seed-help") }),
    h("p", { id: "seed-help", class: "hint" }, `The same seed, base and settings give the same weights. From 0 up to ${MAX_SEED}.`),
    errorSlot("seed"));
}

function numberField(setting, id, field, label) {
  const range = bounds(setting);
  const input = h("input", {
    id, name: id, type: "number", inputmode: setting.type === "integer" ? "numeric" : "decimal",
    step: setting.type === "integer" ? 1 : "any", min: setting.minimum, max: setting.maximum,
    placeholder: setting.default === null ? "none" : String(setting.default),
    dataset: { field, setting: setting.name, kind: setting.type }, "aria-describedby": describedBy(id, `${id}-help`),
  });
  const help = `${capital(setting.help)}. Default: ${setting.default === null ? "none" : setting.default}${range}.`;
  return h("div", { class: "field" }, h("label", { for: id }, label), input,
    h("p", { id: `${id}-help`, class: "hint" }, help),
    setting.nullable ? h("label", { class: "inline" },
      h("input", { type: "checkbox", id: `${id}-none`, dataset: { noneFor: id } }), ` none (switch ${setting.name} off)`) : null,
    errorSlot(id));
}

function choiceField(setting, id, field, choices) {
  return h("div", { class: "field" }, h("label", { for: id }, setting.name),
    h("select", { id, name: id, dataset: { field, setting: setting.name, kind: setting.type }, "aria-describedby": describedBy(id, `${id}-help`) },
      h("option", { value: "" }, `default (${setting.default})`), choices.map((c) => h("option", { value: c }, c))),
    h("p", { id: `${id}-help`, class: "hint" }, `${capital(setting.help)}.`), errorSlot(id));
}

function bounds(setting) {
  const low = setting.minimum, high = setting.maximum;
  if (low === null && high === null) return "";
  const lowText = low === null ? "" : `${setting.exclusive_minimum ? "above" : "from"} ${low}`;
  const highText = high === null ? "" : `${setting.exclusive_maximum ? "below" : "up to"} ${high}`;
  return `; ${[lowText, highText].filter(Boolean).join(", ")}`;
}

function capital(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}

function lines(form, id) {
  return form.querySelector(`#${id}`).value.split("\n").map((line) => line.trim()).filter(Boolean);
}

function body(form) {
  const value = (id) => form.querySelector(`#${id}`).value;
  const request = { base_model: { name: value("base-model") }, concepts: lines(form, "concepts"), method: value("method"),
    seed: Number(value("seed") || 0) };
  if (value("base-version")) request.base_model.version = Number(value("base-version"));
  const preserve = lines(form, "preserve");
  if (preserve.length) request.preserve = preserve;
  const hyperparameters = {};
  for (const input of form.querySelectorAll("[data-setting]")) {
    const none = form.querySelector(`[data-none-for="${input.id}"]`);
    if (none && none.checked) hyperparameters[input.dataset.setting] = null;
    else if (input.value !== "") hyperparameters[input.dataset.setting] = typed(input.value, input.dataset.kind);
  }
  if (Object.keys(hyperparameters).length) request.hyperparameters = hyperparameters;
  return request;
}

function typed(text, kind) {
  if (kind === "boolean") return text === "true";
  if (kind === "integer" || kind === "number") return Number(text);
  if (kind === "array") return text.split(",").map((part) => part.trim()).filter(Boolean);
  if (kind === "json") {
    try { return JSON.parse(text); } catch { return text; } // the server names the field it refuses
  }
  return text;
}

async function submit(form, summary, state) {
  clearErrors(form, summary);
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const job = await post("/v1/jobs", body(form), { idempotencyKey: state.idempotencyKey });
    location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
  } catch (error) {
    state.idempotencyKey = randomKey(); // the corrected body is a new request
    showErrors(form, summary, error);
  } finally {
    button.disabled = false;
  }
}

function clearErrors(form, summary) {
  summary.hidden = true;
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  for (const slot of form.querySelectorAll(".field-error")) slot.textContent = "";
}

function showErrors(form, summary, error) {
  const fieldErrors = error instanceof ApiError ? error.errors : [];
  const items = fieldErrors.map(({ field, message }) => {
    const input = inputFor(form, field);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      form.querySelector(`#${input.id}-error`).textContent = message;
    }
    return h("li", {}, input ? h("a", { href: `#${input.id}`, onclick: (e) => { e.preventDefault(); input.focus(); } }, field) : field,
      `: ${message}`);
  });
  replace(summary, h("h2", {}, "The job was not started"), h("p", {}, error.message), items.length ? h("ul", {}, items) : null);
  summary.hidden = false;
  summary.focus();
}

// The input a problem's field names: `hyperparameters.steps`, `concepts[0]`, `base_model.name`.
function inputFor(form, field) {
  for (const input of form.querySelectorAll("[data-field]")) {
    const name = input.dataset.field;
    if (field === name || field.startsWith(`${name}[`) || field.startsWith(`${name}.`)) return input;
  }
  return null;
}
