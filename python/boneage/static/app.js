"use strict";
// The bone-age page: one form, one POST /api/predict, the answer drawn in place, and the
// model's limits (from GET /api/health) always under it.
// No libraries and nothing loaded from elsewhere (the server's CSP forbids it).
//
// Wrong-patient safety: every change of the file, the sex or the age clears the shown
// result at once, and an answer is drawn only if nothing changed since its request was
// sent (`generation` counts requests and changes; an older answer is dropped).
(function () {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const MINUS = "\u2212";
  const form = $("form"), drop = $("drop"), fileInput = $("file"), submit = $("submit");
  let chosen = null;
  let generation = 0; // bumped by each change of the inputs and by each request
  let busy = false; // a request of the current generation is waiting for its answer

  // ------------------------------------------------------------------ wording

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }
  function splitMonths(total) {
    const t = Math.max(0, Math.round(total));
    return { years: Math.floor(t / 12), months: t % 12 };
  }
  // "5 years 4 months", "1 year 0 months": a bone age read aloud.
  function longAge(v) {
    return plural(v.years, "year") + " " + plural(v.months, "month");
  }
  // "8 y 2 m": the short form for ranges.
  function shortAge(months) {
    const v = splitMonths(months);
    return v.years + " y " + v.months + " m";
  }
  // "+1.3", "−0.4", "0.0": a sign on everything that does not round to zero.
  function signed(x, digits) {
    const text = Math.abs(x).toFixed(digits);
    if (Number(text) === 0) return text;
    return (x > 0 ? "+" : MINUS) + text;
  }
  // "1 year 2 months ahead of the chronological age"; "matches" when it rounds to 0 months.
  function deltaWords(delta) {
    const v = splitMonths(Math.abs(delta));
    if (v.years === 0 && v.months === 0) return "Bone age matches the chronological age";
    const parts = [];
    if (v.years) parts.push(plural(v.years, "year"));
    if (v.months) parts.push(plural(v.months, "month"));
    return "Bone age is " + parts.join(" ") + (delta > 0 ? " ahead of" : " behind") +
      " the chronological age";
  }
  function biasWords(bias) {
    const size = Math.abs(bias).toFixed(1);
    if (Number(size) === 0) return "no average over- or under-estimate";
    return (bias > 0 ? "over-estimates" : "under-estimates") + " by " + size +
      " months on average";
  }
  function sexWords(a) {
    const word = a.sex === "M" ? "male" : "female";
    if (a.sex_source === "given" || !a.sex_source) return word;
    return word + " (from the " + a.sex_source + ")";
  }

  // ------------------------------------------------------------------ the form

  function sex() {
    const checked = form.querySelector("input[name=sex]:checked");
    return checked ? checked.value : null;
  }
  // A DICOM may carry PatientSex: the sex is then optional (the server says if it is missing).
  function maybeDicom(file) {
    return !/\.(png|jpe?g)$/i.test(file.name) && !/^image\/(png|jpeg)$/i.test(file.type);
  }
  function ready() {
    const needSex = chosen && !sex() && !maybeDicom(chosen);
    submit.disabled = !chosen || needSex || busy;
    if (busy) return;
    $("status").textContent = !chosen ? "Choose a radiograph."
      : needSex ? "Choose the sex."
      : !sex() ? "Sex not chosen: the DICOM's PatientSex will be used." : "";
  }
  function showError(message) {
    $("error").textContent = message;
    $("error").hidden = !message;
  }
  function ageMonths() {
    const y = $("age-years").value.trim(), m = $("age-months").value.trim();
    if (!y && !m) return null;
    const years = y ? Number(y) : 0, months = m ? Number(m) : 0;
    if (!Number.isInteger(years) || !Number.isInteger(months) || years < 0 || months < 0 ||
        months > 11) {
      throw new Error("Age: whole years and 0 to 11 months.");
    }
    return years * 12 + months;
  }

  // Empties every part of the result, so that nothing of an earlier film can stay on screen.
  function clearResult() {
    $("result").hidden = true;
    ["result-for", "result-age", "result-months", "result-interval", "result-delta",
     "result-delta-words", "result-chrono", "sds-text", "sds-range", "interval-check",
     "result-reference", "orientation", "source-caption", "heat-caption", "model-info",
    ].forEach((id) => { $(id).textContent = ""; });
    delete $("result-months").dataset.months;
    delete $("result-delta").dataset.delta;
    delete $("result-interval").dataset.lo;
    delete $("result-interval").dataset.hi;
    delete $("sds-text").dataset.sds;
    ["delta-box", "sds-box", "orientation", "interval-check"].forEach((id) => {
      $(id).hidden = true;
    });
    $("sds-drawing").replaceChildren();
    $("notes").replaceChildren();
    ["img-source", "img-prepared", "img-heatmap"].forEach((id) => $(id).removeAttribute("src"));
  }
  // Any change of what the estimate is for: the old result goes now, an answer on its way
  // is dropped, and "estimate anyway" must be asked for again.
  function invalidate() {
    generation += 1;
    busy = false;
    clearResult();
    showError("");
    $("force").checked = false;
    $("force-box").hidden = true;
    ready();
  }
  function setFile(file) {
    chosen = file || null;
    invalidate();
  }

  fileInput.addEventListener("change", () => setFile(fileInput.files[0]));
  form.querySelectorAll("input[name=sex]").forEach((r) => r.addEventListener("change", invalidate));
  ["age-years", "age-months"].forEach((id) => {
    $(id).addEventListener("input", invalidate);
    $(id).addEventListener("change", invalidate);
  });
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault(); drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault(); drop.classList.remove("over");
  }));
  drop.addEventListener("drop", (e) => {
    if (e.dataTransfer && e.dataTransfer.files.length) {
      fileInput.files = e.dataTransfer.files; // the input then names the dropped file
      setFile(e.dataTransfer.files[0]);
    }
  });
  // A file dropped anywhere else must not make the browser navigate away from the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  $("print").addEventListener("click", () => window.print());

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!chosen || submit.disabled) return;
    let age;
    try { age = ageMonths(); } catch (err) { showError(err.message); return; }
    const mine = ++generation;
    const file = chosen, force = $("force").checked;
    clearResult();
    showError("");
    const body = new FormData();
    body.append("file", file, file.name);
    if (sex()) body.append("sex", sex());
    if (age !== null) body.append("age_months", String(age));
    if (force) body.append("force", "true");
    busy = true;
    ready();
    $("status").textContent = "Estimating\u2026";
    let response, answer;
    try {
      response = await fetch("/api/predict", { method: "POST", body });
      answer = await response.json().catch(() => null);
    } catch (err) {
      if (mine !== generation) return;
      busy = false;
      ready();
      showError("The server could not be reached: " + err.message);
      return;
    }
    if (mine !== generation) return; // the inputs changed meanwhile: an answer for old inputs
    busy = false;
    ready();
    if (!response.ok || !answer) {
      const detail = answer && answer.detail ? answer.detail : "Error " + response.status +
        ": the server sent no explanation.";
      showError(detail);
      if (answer && answer.code === "not_a_hand_radiograph" && !force) {
        $("force-box").hidden = false;
      }
      return;
    }
    try {
      show(answer, file.name);
      $("force-box").hidden = true;
      $("force").checked = false;
    } catch (err) {
      clearResult();
      showError("The answer could not be shown: " + err.message);
    }
  });

  // ------------------------------------------------------------------ the result

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    Object.entries(attrs).forEach(([k, v]) => e.setAttribute(k, String(v)));
    if (text !== undefined) e.textContent = text;
    return e;
  }
  // The SDS on a scale from −3 to +3 with the normal range −2..+2 shaded; a value off the
  // scale sits at its end with an arrow.
  function sdsDrawing(sds) {
    const W = 360, left = 24, right = W - 24;
    const x = (v) => left + (v + 3) / 6 * (right - left);
    const off = Math.abs(sds) > 3;
    const at = x(Math.max(-3, Math.min(3, sds)));
    const label = "SDS " + signed(sds, 1) + " on a scale from \u22123 to +3; " +
      "the normal range \u22122 to +2 is shaded";
    const root = svg("svg", { viewBox: "0 0 " + W + " 76", class: "sds-scale", id: "sds-scale",
      role: "img", "aria-label": label });
    root.appendChild(svg("title", {}, label));
    root.appendChild(svg("rect", { id: "sds-band", class: "sds-band", x: x(-2), y: 26,
      width: x(2) - x(-2), height: 18 }));
    root.appendChild(svg("line", { class: "sds-axis", x1: x(-3), y1: 44, x2: x(3), y2: 44 }));
    for (let v = -3; v <= 3; v += 1) {
      root.appendChild(svg("line", { class: "sds-tick", x1: x(v), y1: 44, x2: x(v), y2: 50 }));
      const text = v === 0 ? "0" : (v > 0 ? "+" : MINUS) + Math.abs(v);
      root.appendChild(svg("text", { class: "sds-tick-label", x: x(v), y: 63,
        "text-anchor": "middle" }, text));
    }
    root.appendChild(svg("text", { class: "sds-band-label", x: x(0), y: 75,
      "text-anchor": "middle" }, "normal range"));
    root.appendChild(svg("line", { id: "sds-marker", class: "sds-marker", x1: at, y1: 18,
      x2: at, y2: 44 }));
    const tip = off ? (sds > 0 ? [at + 8, 22, at, 16, at, 28] : [at - 8, 22, at, 16, at, 28])
      : [at - 6, 14, at + 6, 14, at, 22];
    root.appendChild(svg("polygon", { class: "sds-marker-head", points: tip.join(" ") }));
    const anchor = at < left + 30 ? "start" : at > right - 30 ? "end" : "middle";
    root.appendChild(svg("text", { class: "sds-value", x: at, y: 10, "text-anchor": anchor },
      signed(sds, 1) + (off ? " (off the scale)" : "")));
    return root;
  }

  function show(a, fileName) {
    const months = a.bone_age_months;
    $("result-for").textContent = "Estimate for the file \u201c" + fileName + "\u201d, " +
      sexWords(a) + ", made " + new Date().toLocaleString() + ".";
    $("result-age").textContent = longAge(a.bone_age);
    const out = $("result-months");
    out.dataset.months = String(months);
    out.textContent = months.toFixed(1) + " months" +
      (a.sigma_months !== null ? " \u00b1 " + a.sigma_months.toFixed(1) : "") +
      " \u00b7 " + sexWords(a);

    const interval = $("result-interval");
    if (a.interval_90_months) {
      const [lo, hi] = a.interval_90_months;
      interval.dataset.lo = String(lo);
      interval.dataset.hi = String(hi);
      interval.textContent = "90 % interval: " + shortAge(lo) + " \u2013 " + shortAge(hi);
    } else {
      interval.textContent = "90 % interval: not available for this model";
    }

    if (a.delta_months !== null) {
      const d = a.delta_months;
      $("result-delta").textContent = signed(d, 1) + " months";
      $("result-delta").dataset.delta = String(d);
      $("result-delta-words").textContent = deltaWords(d);
      $("result-chrono").textContent = "Chronological age " + longAge(splitMonths(a.age_months)) +
        (a.age_source && a.age_source !== "given" ? " (from the " + a.age_source + ")" : "");
      $("delta-box").hidden = false;
      const check = $("interval-check");
      if (a.age_within_interval === true) {
        check.textContent = "The chronological age lies inside the model's 90 % interval: " +
          "the difference is within the model's own error, so it may not be real.";
        check.className = "caution";
      } else if (a.age_within_interval === false) {
        check.textContent = "The chronological age lies outside the model's 90 % interval: " +
          "the difference is larger than the model's usual error.";
        check.className = "";
      } else {
        check.textContent = "This model gives no 90 % interval, so it cannot say whether " +
          "the difference is larger than its own error (see the limits below).";
        check.className = "caution";
      }
      check.hidden = false;
    }
    if (a.sds !== null && a.sds !== undefined) {
      const t = $("sds-text");
      t.dataset.sds = String(a.sds);
      t.replaceChildren(el("strong", "SDS " + signed(a.sds, 1)),
        document.createTextNode(" (the difference over the reference SD of " +
          a.reference_sd_months.toFixed(1) + " months for this age and sex)"));
      $("sds-drawing").replaceChildren(sdsDrawing(a.sds));
      const range = $("sds-range");
      if (a.within_normal_range) {
        range.textContent = "Within the normal range (SDS \u22122 to +2).";
        range.className = "";
      } else {
        range.textContent = "Outside the normal range (SDS \u22122 to +2): bone age " +
          (a.sds > 0 ? "advanced" : "delayed") + " for the age.";
        range.className = "caution";
      }
      $("result-reference").textContent = "Reference: " + (a.reference || a.model.reference);
      $("sds-box").hidden = false;
    }

    if (a.orientation && a.orientation !== "upright" && a.orientation !== "as given") {
      const o = $("orientation");
      o.textContent = "Orientation: " + a.orientation +
        (a.orientation_confidence !== null && a.orientation_confidence !== undefined
          ? " (confidence " + Math.round(a.orientation_confidence * 100) + " %)" : "") +
        ". Check that the film shows an upright left hand.";
      o.hidden = false;
    }
    $("notes").replaceChildren(...a.notes.map((n) => el("li", n)));

    $("img-source").src = "data:image/png;base64," + a.source_png;
    $("img-prepared").src = "data:image/png;base64," + a.prepared_png;
    $("img-heatmap").src = "data:image/png;base64," + a.heatmap_png;
    const cropped = a.localiser && a.localiser !== "none";
    if (cropped) {
      const b = a.crop_box, s = a.image_size;
      $("img-source").alt = "The uploaded radiograph with the region used outlined";
      $("source-caption").textContent = "Your image; the orange box is the region used: " +
        "x " + b.x0 + "\u2013" + b.x1 + ", y " + b.y0 + "\u2013" + b.y1 + " of " + s.width +
        " \u00d7 " + s.height + " px (found by " + a.localiser + ")";
    } else {
      $("img-source").alt = "The uploaded radiograph";
      $("source-caption").textContent = "Your image (no crop: the model takes the whole film)";
    }
    const ex = a.explanation;
    $("heat-caption").textContent = "Where the model looked: red regions " + ex.direction +
      " the estimate from the model's average of " + ex.baseline_months.toFixed(0) + " months";
    const pp = a.model.preprocessing;
    $("model-info").textContent = "Model " + a.model.name + " (" + a.model.file + "), " +
      pp.mode + " " + pp.image_size + " px, " + a.model.tta + " test-time augmentation copies; " +
      (cropped ? "crop by " + a.localiser : "whole film, no crop") + "; " +
      a.elapsed_ms.toFixed(0) + " ms.";
    showLimits(a.model);
    $("result").hidden = false;
  }

  // ------------------------------------------------------------------ the limits

  function showLimits(m) {
    $("limits-training").textContent = "Trained on hand radiographs of the RSNA Pediatric " +
      "Bone Age Challenge" + (m.trained_on ? " (training data: " + m.trained_on + ")" : "") +
      ". Films unlike them (other populations or equipment, adults, other body parts) may " +
      "be estimated wrongly without warning.";
    const v = m.validation;
    const bands = $("limits-bands");
    if (v && typeof v.mae === "number") {
      $("limits-error").textContent = "Typical error: " + v.mae.toFixed(1) + " months " +
        "(mean absolute error on " + (v.n ? v.n + " " : "") + "validation films" +
        (v.split ? " (split \u201c" + v.split + "\u201d)" : "") + " when the model was shipped" +
        (typeof v.bias === "number" ? "; overall it " + biasWords(v.bias) : "") +
        "). By band of true age:";
      const items = Object.entries(v.by_age_band || {}).map(([band, b]) => {
        if (!b || !b.n || typeof b.mae !== "number") return el("li", band + ": no validation films");
        return el("li", band + ": " + (typeof b.bias === "number" ? biasWords(b.bias) : "bias unknown") +
          "; typical error " + b.mae.toFixed(1) + " months (" + plural(b.n, "film") + ")");
      });
      bands.replaceChildren(...items);
      bands.hidden = items.length === 0;
    } else {
      $("limits-error").textContent = "This model file records no error measured on " +
        "validation films: its typical error and its bias by age are not known here, so " +
        "weigh the estimate with extra care.";
      bands.replaceChildren();
      bands.hidden = true;
    }
    const citation = (m.reference_citation || m.reference || "not stated").trim();
    $("limits-reference").textContent = "SDS reference: " + citation +
      (/[.!?]$/.test(citation) ? "" : ".");
  }

  async function loadLimits() {
    try {
      const response = await fetch("/api/health");
      if (!response.ok) throw new Error("status " + response.status);
      const health = await response.json();
      showLimits(health.model);
    } catch (err) {
      $("limits-error").textContent = "The model's limits could not be read from the " +
        "server (" + err.message + "): its typical error is not known here.";
    }
  }

  clearResult();
  ready();
  loadLimits();
})();
