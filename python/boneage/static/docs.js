"use strict";
// Renders /openapi.json as plain HTML: the API page without Swagger UI's CDN scripts.
(async function () {
  const root = document.getElementById("api-docs");
  const el = (tag, text, cls) => {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  };
  let spec;
  try {
    spec = await (await fetch("/openapi.json")).json();
  } catch (err) {
    root.replaceChildren(el("p", "Could not load /openapi.json: " + err.message, "error"));
    return;
  }
  const schemas = (spec.components && spec.components.schemas) || {};
  const resolve = (s) => (s && s.$ref ? schemas[s.$ref.split("/").pop()] || {} : s || {});
  const typeOf = (s) => {
    s = s || {};
    if (s.$ref) return s.$ref.split("/").pop();
    if (s.anyOf) return s.anyOf.map(typeOf).join(" | ");
    if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
    if (s.type === "array") return typeOf(s.items) + "[]";
    return (s.type || "any") + (s.format ? " (" + s.format + ")" : "");
  };
  function table(schema) {
    schema = resolve(schema);
    const props = schema.properties || {};
    const required = new Set(schema.required || []);
    const t = el("table", undefined, "fields");
    const head = t.insertRow();
    ["field", "type", "", "description"].forEach((h) => head.appendChild(el("th", h)));
    Object.entries(props).forEach(([name, p]) => {
      const r = t.insertRow();
      r.insertCell().appendChild(el("code", name));
      r.insertCell().textContent = typeOf(p);
      r.insertCell().textContent = required.has(name) ? "required" : "";
      r.insertCell().textContent = p.description || "";
    });
    return t;
  }
  const intro = el("section", undefined, "card");
  intro.appendChild(el("h2", spec.info.title + " " + spec.info.version));
  intro.appendChild(el("p", spec.info.description || ""));
  const parts = [intro];
  Object.entries(spec.paths).forEach(([path, ops]) => {
    Object.entries(ops).forEach(([method, op]) => {
      const card = el("section", undefined, "card");
      card.appendChild(el("h2", method.toUpperCase() + " " + path));
      if (op.summary) card.appendChild(el("p", op.summary));
      const body = op.requestBody && op.requestBody.content;
      if (body) {
        Object.entries(body).forEach(([mime, c]) => {
          card.appendChild(el("h3", "Request: " + mime));
          card.appendChild(table(c.schema));
        });
      }
      Object.entries(op.responses || {}).forEach(([code, r]) => {
        card.appendChild(el("h3", "Response " + code + ": " + (r.description || "")));
        const json = r.content && r.content["application/json"];
        if (json && json.schema) {
          const s = resolve(json.schema);
          if (s.properties) card.appendChild(table(json.schema));
        }
      });
      parts.push(card);
    });
  });
  Object.entries(schemas).forEach(([name, s]) => {
    if (!s.properties || name.endsWith("Response") || name === "Health") return;
    const card = el("section", undefined, "card");
    card.appendChild(el("h2", name));
    card.appendChild(table(s));
    parts.push(card);
  });
  root.replaceChildren(...parts);
})();
