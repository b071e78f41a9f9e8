"use strict";
// The bone-age page: one form, one POST /api/predict, the answer drawn in place.
// No libraries and nothing loaded from elsewhere (the server's CSP forbids it).
(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("form"), drop = $("drop"), fileInput = $("file"), submit = $("submit");
  let chosen = null;

  function sex() {
    const checked = form.querySelector("input[name=sex]:checked");
    return checked ? checked.value : null;
  }
  function ready() {
    submit.disabled = !(chosen && sex());
    $("status").textContent = !chosen ? "Choose a radiograph." : !sex() ? "Choose the sex." : "";
  }
  function setFile(file) {
    chosen = file || null;
    ready();
  }
  function showError(message) {
    $("error").textContent = message;
    $("error").hidden = !message;
  }
  function yearsMonths(total) {
    const t = Math.max(0, Math.round(total));
    return { years: Math.floor(t / 12), months: t % 12 };
  }
  function ym(v) {
    return v.years + " years " + v.months + " month" + (v.months === 1 ? "" : "s");
  }
  function ageMonths() {
    const y = $("age-years").value.trim(), m = $("age-months").value.trim();
    if (!y && !m) return null;
    const years = y ? Number(y) : 0, months = m ? Number(m) : 0;
    if (!Number.isFinite(years) || !Number.isFinite(months) || years < 0 || months < 0 || months > 11) {
      throw new Error("Age: whole years and 0 to 11 months.");
    }
    return years * 12 + months;
  }

  fileInput.addEventListener("change", () => setFile(fileInput.files[0]));
  form.querySelectorAll("input[name=sex]").forEach((r) => r.addEventListener("change", ready));
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

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    showError("");
    let age;
    try { age = ageMonths(); } catch (err) { showError(err.message); return; }
    const body = new FormData();
    body.append("file", chosen, chosen.name);
    body.append("sex", sex());
    if (age !== null) body.append("age_months", String(age));
    submit.disabled = true;
    $("status").textContent = "Estimating\u2026";
    try {
      const response = await fetch("/api/predict", { method: "POST", body });
      const answer = await response.json().catch(() => ({ detail: "The server sent no answer." }));
      if (!response.ok) throw new Error(answer.detail || ("Error " + response.status));
      show(answer);
      $("status").textContent = "";
    } catch (err) {
      $("result").hidden = true;
      showError(err.message);
      $("status").textContent = "";
    } finally {
      submit.disabled = !(chosen && sex());
    }
  });

  function show(a) {
    const months = a.bone_age_months;
    $("result-age").textContent = ym(a.bone_age);
    const out = $("result-months");
    out.dataset.months = String(months);
    out.textContent = months.toFixed(1) + " months" +
      (a.sigma_months !== null ? " \u00b1 " + a.sigma_months.toFixed(1) : "") +
      " \u00b7 " + (a.sex === "M" ? "male" : "female");
    if (a.delta_months !== null) {
      const d = a.delta_months;
      const ahead = d >= 0 ? "ahead" : "behind";
      $("result-delta").textContent = (d >= 0 ? "+" : "\u2212") + Math.abs(d).toFixed(1) + " months";
      $("result-delta").dataset.delta = String(d);
      $("result-chrono").textContent = "Bone age is " + ahead + " of the age given (" +
        ym(yearsMonths(a.age_months)) + ")";
      $("delta-box").hidden = false;
    } else {
      $("delta-box").hidden = true;
    }
    $("img-source").src = "data:image/png;base64," + a.source_png;
    $("img-prepared").src = "data:image/png;base64," + a.prepared_png;
    $("img-heatmap").src = "data:image/png;base64," + a.heatmap_png;
    const ex = a.explanation;
    $("heat-caption").textContent = "Where the model looked: red regions " + ex.direction +
      " the estimate from the model's average of " + ex.baseline_months.toFixed(0) + " months";
    const notes = $("notes");
    notes.replaceChildren(...a.notes.map((n) => {
      const li = document.createElement("li"); li.textContent = n; return li;
    }));
    const pp = a.model.preprocessing;
    $("model-info").textContent = "Model " + a.model.name + " (" + a.model.file + "), " +
      pp.mode + " " + pp.image_size + " px, " + a.model.tta + " test-time augmentation copies; " +
      "crop by " + a.localiser + "; " + a.elapsed_ms.toFixed(0) + " ms.";
    $("result").hidden = false;
  }

  ready();
})();
