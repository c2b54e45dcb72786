// Building the page from data. Text from the server always goes in as text (a DOM text
// node), never as HTML, so no job name or prompt can add markup or script to the page.

const SVG = "http://www.w3.org/2000/svg";

export function h(tag, attributes = {}, ...children) {
  return fill(document.createElement(tag), attributes, children);
}

export function svg(tag, attributes = {}, ...children) {
  return fill(document.createElementNS(SVG, tag), attributes, children);
}

function fill(element, attributes, children) {
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

export function replace(element, ...children) {
  element.replaceChildren();
  return fill(element, {}, children);
}

export function when(timestamp) {
  return timestamp ? new Date(timestamp * 1000).toLocaleString() : "–";
}

export function clock(timestamp) {
  return timestamp ? new Date(timestamp * 1000).toLocaleTimeString() : "–";
}

export function bytes(size) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let unit = 0;
  while (size >= 1000 && unit < units.length - 1) { size /= 1000; unit += 1; }
  return unit === 0 ? `${size} B` : `${size.toFixed(1)} ${units[unit]}`;
}

// A table whose rows come from `rows` (arrays of cells); it scrolls sideways on a narrow screen.
export function table(caption, headers, rows, attributes = {}) {
  return h("div", { class: "table-scroll", role: "region", "aria-label": caption, tabindex: 0 },
    h("table", attributes,
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headers.map((text) => h("th", { scope: "col" }, text)))),
      h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell) => h("td", {}, cell)))))));
}

export function definitions(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(Boolean).map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

// Announced to screen readers by the page's polite live region.
export function announce(message) {
  const region = document.getElementById("announcer");
  region.textContent = "";
  setTimeout(() => { region.textContent = message; }, 50);
}
