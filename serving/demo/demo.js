// The demo page: plain JavaScript over the public /v1 routes (no build step, no external files).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SIZE = 280;
  const BRUSH = 14; // px on the 280 px canvas: about 1.4 MNIST pixels, a pen stroke after preprocessing
  const KEY_STEP = 10;
  const LATENT_RANGE = 3;
  const STEPS = 10;

  const canvas = $("digit-canvas");
  const ctx = canvas.getContext("2d");
  const predictions = $("predictions");
  const digitStatus = $("digit-status");
  const penMark = $("pen");
  const vaeStatus = $("vae-status");

  let classifiers = [];
  let hasEnsemble = false;
  let vaes = [];
  let strokes = 0;
  let inked = false;
  let drawing = false;
  let last = null;
  let classifyTimer = null;
  let classifySeq = 0;
  const pen = { x: SIZE / 2, y: SIZE / 2, down: false };

  // ------------------------------------------------------------------ drawing

  function resetCanvas() {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, SIZE, SIZE);
    ctx.strokeStyle = "#fff";
    ctx.fillStyle = "#fff";
    ctx.lineWidth = BRUSH;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
  }

  function clearAll() {
    clearTimeout(classifyTimer);
    classifySeq += 1; // answers still on their way are for the old drawing
    resetCanvas();
    strokes = 0;
    inked = false;
    pen.down = false;
    penMark.hidden = true;
    canvas.dataset.strokes = "0";
    predictions.tBodies[0].replaceChildren();
    predictions.dataset.strokes = "0";
    predictions.setAttribute("aria-busy", "false");
    digitStatus.textContent = "Cleared. Draw one digit.";
  }

  function dot(p) {
    ctx.beginPath();
    ctx.arc(p.x, p.y, BRUSH / 2, 0, Math.PI * 2);
    ctx.fill();
  }

  function line(a, b) {
    ctx.beginPath();
    ctx.moveTo(a.x, a.y);
    ctx.lineTo(b.x, b.y);
    ctx.stroke();
  }

  function pointer(event) {
    const box = canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) * canvas.width) / box.width,
      y: ((event.clientY - box.top) * canvas.height) / box.height,
    };
  }

  function strokeEnded() {
    strokes += 1;
    inked = true;
    canvas.dataset.strokes = String(strokes);
    clearTimeout(classifyTimer);
    classifyTimer = setTimeout(classify, 120);
  }

  canvas.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    drawing = true;
    last = pointer(event);
    dot(last);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const p = pointer(event);
    line(last, p);
    last = p;
  });
  const stop = () => {
    if (!drawing) return;
    drawing = false;
    strokeEnded();
  };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);

  // Keyboard: arrows move the pen, Space/Enter puts it down or lifts it, Delete/Backspace/Escape clears.
  canvas.addEventListener("keydown", (event) => {
    const moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (moves[event.key]) {
      event.preventDefault();
      const from = { x: pen.x, y: pen.y };
      pen.x = Math.min(SIZE - BRUSH, Math.max(BRUSH, pen.x + moves[event.key][0] * KEY_STEP));
      pen.y = Math.min(SIZE - BRUSH, Math.max(BRUSH, pen.y + moves[event.key][1] * KEY_STEP));
      if (pen.down) line(from, pen);
      announcePen();
    } else if (event.key === " " || event.key === "Enter") {
      event.preventDefault();
      pen.down = !pen.down;
      if (pen.down) dot(pen);
      else strokeEnded();
      announcePen();
    } else if (["Delete", "Backspace", "Escape"].includes(event.key)) {
      event.preventDefault();
      clearAll();
    }
  });

  function showPen() {
    penMark.hidden = false;
    penMark.classList.toggle("down", pen.down);
    penMark.style.left = `${(pen.x / SIZE) * 100}%`;
    penMark.style.top = `${(pen.y / SIZE) * 100}%`;
  }

  canvas.addEventListener("blur", () => {
    penMark.hidden = true;
  });

  function announcePen() {
    showPen();
    const col = Math.round((pen.x / SIZE) * 28);
    const row = Math.round((pen.y / SIZE) * 28);
    digitStatus.textContent = `Pen ${pen.down ? "down" : "up"} at column ${col}, row ${row}.`;
  }

  $("clear").addEventListener("click", clearAll);

  // ------------------------------------------------------------------ classification

  async function postImage(url, blob) {
    const form = new FormData();
    form.append("image", blob, "digit.png");
    const response = await fetch(url, { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    return body;
  }

  async function classify() {
    if (!inked) return;
    const seq = ++classifySeq;
    const forStrokes = strokes;
    predictions.setAttribute("aria-busy", "true");
    digitStatus.textContent = "Reading…";
    try {
      const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
      let rows;
      if (hasEnsemble) {
        const body = await postImage("/v1/classify/image?model=ensemble&members=true", blob);
        const prediction = body.predictions[0];
        rows = [...Object.entries(prediction.members), ["ensemble", prediction]];
      } else {
        const answers = await Promise.all(
          classifiers.map((name) => postImage(`/v1/classify/image?model=${encodeURIComponent(name)}`, blob)),
        );
        rows = answers.map((body) => [body.model, body.predictions[0]]);
      }
      if (seq !== classifySeq) return; // a newer drawing was sent meanwhile
      renderPredictions(rows);
      predictions.dataset.strokes = String(forStrokes);
      digitStatus.textContent = verdictText(rows.find(([name]) => name === "ensemble") || rows[0]);
    } catch (error) {
      if (seq !== classifySeq) return;
      predictions.tBodies[0].replaceChildren();
      predictions.dataset.strokes = String(forStrokes);
      digitStatus.textContent = `Could not read the drawing: ${error.message}`;
    } finally {
      if (seq === classifySeq) predictions.setAttribute("aria-busy", "false");
    }
  }

  // The answer in words: the label and its calibrated confidence, or why it is not a digit.
  function verdictText([name, prediction]) {
    const who = name === "ensemble" ? "The ensemble" : name;
    if (prediction.digit === false) return `Not a digit (${prediction.reason}): ${prediction.detail}.`;
    return `${who} reads ${prediction.label}, ${(prediction.confidence * 100).toFixed(0)}% sure.`;
  }

  function verdictCell(prediction) {
    const cell = document.createElement("td");
    cell.className = "confidence";
    if (prediction.confidence === undefined) {
      cell.textContent = "—"; // a member's answer inside the ensemble's: its probabilities only
    } else if (prediction.digit === false) {
      cell.textContent = `not a digit (${prediction.reason})`;
      cell.title = prediction.detail;
      cell.classList.add("not-digit");
    } else {
      cell.textContent = `${(prediction.confidence * 100).toFixed(0)}%`;
    }
    cell.dataset.digit = String(prediction.digit !== false);
    return cell;
  }

  function renderPredictions(rows) {
    const body = predictions.tBodies[0];
    body.replaceChildren(
      ...rows.map(([name, prediction]) => {
        const tr = document.createElement("tr");
        tr.dataset.model = name;
        tr.dataset.label = String(prediction.label);
        if (prediction.digit !== undefined) tr.dataset.digit = String(prediction.digit);
        const th = document.createElement("th");
        th.scope = "row";
        th.textContent = name;
        const label = document.createElement("td");
        label.className = "label";
        label.textContent = String(prediction.label);
        const chart = document.createElement("td");
        chart.append(bars(prediction.probabilities, prediction.label));
        tr.append(th, label, verdictCell(prediction), chart);
        return tr;
      }),
    );
  }

  function bars(probabilities, top) {
    const box = document.createElement("div");
    box.className = "bars";
    box.setAttribute("role", "img");
    box.setAttribute(
      "aria-label",
      probabilities.map((p, digit) => `${digit}: ${(p * 100).toFixed(0)}%`).join(", "),
    );
    probabilities.forEach((p, digit) => {
      const column = document.createElement("span");
      if (digit === top) column.className = "top";
      const bar = document.createElement("i");
      bar.style.height = `${Math.max(1, Math.round(p * 100))}%`;
      column.append(bar, document.createTextNode(String(digit)));
      box.append(column);
    });
    return box;
  }

  // ------------------------------------------------------------------ VAE

  const picker = $("vae-model");
  const generated = $("generated");
  const strip = $("interpolation");
  const manifold = $("manifold");
  let ends = { a: [], b: [] };
  let decodeBusy = false;
  let decodePending = false;

  function current() {
    return vaes.find((v) => v.name === picker.value);
  }

  function point() {
    return [...document.querySelectorAll("#sliders input")].map((input) => Number(input.value));
  }

  async function imageFrom(url, options, img) {
    const response = await fetch(url, options);
    if (!response.ok) {
      const body = await response.json();
      throw new Error(body.error || `HTTP ${response.status}`);
    }
    const blob = await response.blob();
    const old = img.src;
    await new Promise((resolve) => {
      img.onload = resolve;
      img.onerror = resolve;
      img.src = URL.createObjectURL(blob);
    });
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
  }

  function postJSON(body) {
    return { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
  }

  async function decode() {
    if (decodeBusy) {
      decodePending = true; // only the newest point matters: one request at a time, then the latest
      return;
    }
    decodeBusy = true;
    const z = point();
    try {
      await imageFrom("/v1/generate", postJSON({ model: picker.value, z: [z], format: "png" }), generated);
      generated.dataset.z = z.join(",");
      $("generated-caption").textContent = `decoded from z = (${z.map((v) => v.toFixed(2)).join(", ")})`;
      vaeStatus.textContent = "";
    } catch (error) {
      vaeStatus.textContent = `Could not decode: ${error.message}`;
    } finally {
      decodeBusy = false;
      if (decodePending) {
        decodePending = false;
        decode();
      }
    }
  }

  async function interpolate() {
    try {
      await imageFrom(
        "/v1/generate/interpolate",
        postJSON({ model: picker.value, z: [ends.a, ends.b], steps: STEPS, format: "png" }),
        strip,
      );
      const fmt = (z) => `(${z.map((v) => v.toFixed(1)).join(", ")})`;
      strip.alt = `${STEPS} garments on the straight path from A ${fmt(ends.a)} to B ${fmt(ends.b)}`;
    } catch (error) {
      vaeStatus.textContent = `Could not interpolate: ${error.message}`;
    }
  }

  function buildSliders() {
    const model = current();
    const box = $("sliders");
    box.replaceChildren();
    for (let i = 0; i < model.latent; i += 1) {
      const row = document.createElement("div");
      row.className = "slider";
      const label = document.createElement("label");
      label.htmlFor = `latent-${i}`;
      label.textContent = `z[${i}]`;
      const input = document.createElement("input");
      Object.assign(input, { type: "range", id: `latent-${i}`, min: -LATENT_RANGE, max: LATENT_RANGE, step: 0.05, value: 0 });
      input.dataset.testid = `latent-${i}`;
      const output = document.createElement("output");
      output.htmlFor = input.id;
      output.value = "0.00";
      input.addEventListener("input", () => {
        output.value = Number(input.value).toFixed(2);
        decode();
      });
      row.append(label, input, output);
      box.append(row);
    }
  }

  function selectModel() {
    const model = current();
    buildSliders();
    ends = { a: Array(model.latent).fill(-1.5), b: Array(model.latent).fill(1.5) };
    manifold.src = `/v1/generate/manifold?model=${encodeURIComponent(model.name)}&n=20&axes=true`;
    manifold.alt = `The latent manifold of ${model.name}: 20 by 20 decoded points, z[0] across, z[1] up`;
    decode();
    interpolate();
  }

  picker.addEventListener("change", selectModel);
  $("set-a").addEventListener("click", () => {
    ends.a = point();
    interpolate();
  });
  $("set-b").addEventListener("click", () => {
    ends.b = point();
    interpolate();
  });

  // ------------------------------------------------------------------ start

  async function start() {
    resetCanvas();
    canvas.dataset.strokes = "0";
    predictions.dataset.strokes = "0";
    try {
      const response = await fetch("/v1/models");
      const models = (await response.json()).models.filter((m) => m.ready);
      classifiers = models.filter((m) => m.task === "classification" && m.name !== "ensemble").map((m) => m.name);
      hasEnsemble = models.some((m) => m.task === "classification" && m.name === "ensemble");
      vaes = models
        .filter((m) => m.task === "generation")
        .map((m) => ({ name: m.name, latent: m.signature.latent_dim }));
      picker.replaceChildren(
        ...vaes.map((v) => {
          const option = document.createElement("option");
          option.value = v.name;
          option.textContent = `${v.name} (latent ${v.latent})`;
          return option;
        }),
      );
      digitStatus.textContent = `Draw one digit: ${classifiers.length} classifiers${hasEnsemble ? " and their ensemble" : ""} will read it.`;
      if (vaes.length) selectModel();
      else vaeStatus.textContent = "No VAE is served.";
      document.body.dataset.ready = "true";
    } catch (error) {
      digitStatus.textContent = `The service did not answer: ${error.message}`;
    }
  }

  start();
})();
