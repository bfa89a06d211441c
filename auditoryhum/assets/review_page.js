// Behaviour of the review page written by util_select_review.py. Runs from file:// with no
// server and makes no network requests: edits live in localStorage, export is a Blob download,
// import reads a local file the user picks.
(function () {
  "use strict";

  var data = JSON.parse(document.getElementById("review-data").textContent);
  // One key per page identity (a hash of the selection), so two review pages opened from
  // file:// (which share one storage origin) never see each other's edits.
  var storageKey = "auditoryhum-review:" + data.id;
  var clips = Array.prototype.slice.call(document.querySelectorAll("#clips > .clip"));
  var lines = clips.map(function (clip) { return Number(clip.getAttribute("data-line")); });
  var boxes = clips.map(function (clip) { return clip.querySelector("input.labels"); });
  var audios = clips.map(function (clip) { return clip.querySelector("audio"); });
  var notes = clips.map(function (clip) { return clip.querySelector(".note"); });
  var statusEl = document.getElementById("status");
  var counterEl = document.getElementById("n-annotated");
  var autoplayEl = document.getElementById("autoplay");
  var importFile = document.getElementById("import-file");
  var current = 0;

  function setStatus(message, isError) {
    statusEl.textContent = message;
    statusEl.classList.toggle("error", Boolean(isError));
  }

  var storage = null;
  try {
    storage = window.localStorage;
    storage.setItem(storageKey + ":probe", "1");
    storage.removeItem(storageKey + ":probe");
  } catch (err) {
    storage = null;
  }

  // The annotation line a box stands for: labels split on commas (line breaks count as
  // commas), inner whitespace collapsed, empty items dropped, joined with ", " as in label files.
  function normalise(text) {
    return text.replace(/[\r\n]+/g, ",").split(",")
      .map(function (item) { return item.replace(/\s+/g, " ").trim(); })
      .filter(function (item) { return item.length > 0; })
      .join(", ");
  }

  function save() {
    if (!storage) { return; }
    var edits = {};
    boxes.forEach(function (box, i) { if (box.value !== "") { edits[lines[i]] = box.value; } });
    var state = { version: 1, edits: edits, current: current, autoplay: autoplayEl.checked };
    try {
      storage.setItem(storageKey, JSON.stringify(state));
    } catch (err) {
      setStatus("Could not save your edits in this browser (" + err.message + "); export them now.", true);
    }
  }

  function restore() {
    if (!storage) { return; }
    var state = null;
    try { state = JSON.parse(storage.getItem(storageKey) || "null"); } catch (err) { state = null; }
    if (!state || state.version !== 1) { return; }
    var edits = state.edits || {};
    boxes.forEach(function (box, i) {
      var saved = edits[lines[i]];
      box.value = typeof saved === "string" ? saved : "";
    });
    autoplayEl.checked = Boolean(state.autoplay);
    if (typeof state.current === "number" && state.current >= 0 && state.current < clips.length) {
      current = state.current;
    }
  }

  function updateClip(i) {
    var value = normalise(boxes[i].value);
    clips[i].classList.toggle("annotated", value.length > 0);
    if (notes[i].classList.contains("problem")) { return; }
    // Scoring keeps the first two words of each candidate; say so before it surprises anyone.
    var long = value ? value.split(", ").filter(function (item) { return item.split(" ").length > 2; }) : [];
    notes[i].textContent = long.length
      ? "Scoring keeps the first two words of each label: " + long.map(function (item) {
          return "\u201c" + item + "\u201d \u2192 \u201c" + item.split(" ").slice(0, 2).join(" ") + "\u201d";
        }).join("; ") + "."
      : "";
  }

  function updateCounter() {
    counterEl.textContent = String(boxes.filter(function (box) { return normalise(box.value) !== ""; }).length);
  }

  function refreshAll() {
    boxes.forEach(function (box, i) { updateClip(i); });
    updateCounter();
  }

  function pauseAllBut(keep) {
    audios.forEach(function (audio) { if (audio !== keep && !audio.paused) { audio.pause(); } });
  }

  function play(i, fromStart) {
    var audio = audios[i];
    if (!audio) { return; }
    pauseAllBut(audio);
    if (fromStart) { audio.currentTime = 0; }
    var started = audio.play();
    if (started && typeof started.catch === "function") {
      started.catch(function (err) {
        if (err && err.name === "AbortError") { return; }  // paused again before it started
        setStatus("Cannot play line " + lines[i] + ": " + (err && err.message ? err.message : err), true);
      });
    }
  }

  function togglePlay(i) {
    var audio = audios[i];
    if (!audio) { return; }
    if (audio.paused) { play(i, false); } else { audio.pause(); }
  }

  // Make clip i the selected one; focus its box or the clip itself.
  function select(i, options) {
    options = options || {};
    if (!clips.length) { return; }
    i = Math.max(0, Math.min(clips.length - 1, i));
    var changed = i !== current;
    if (changed) { audios[current].pause(); }
    clips[current].classList.remove("current");
    clips[current].removeAttribute("aria-current");
    current = i;
    clips[i].classList.add("current");
    clips[i].setAttribute("aria-current", "true");
    if (options.focus === "box") {
      boxes[i].focus();
    } else if (options.focus === "clip") {
      clips[i].focus();
    }
    if (options.focus) { clips[i].scrollIntoView({ block: "nearest" }); }
    // Players past the first few are written with preload="none" (a page of 1000 players
    // opens slowly otherwise); read the headers of this clip and the next ones now.
    for (var j = i; j < Math.min(clips.length, i + 4); j++) {
      if (audios[j].preload === "none") { audios[j].preload = "metadata"; }
    }
    if (changed) {
      save();
      if (autoplayEl.checked && options.focus) { play(i, true); }
    }
  }

  function exportAnnotations() {
    var out = [];
    for (var n = 0; n < data.n_clips; n++) { out.push(""); }
    boxes.forEach(function (box, i) { out[lines[i] - 1] = normalise(box.value); });
    var text = out.length ? out.join("\n") + "\n" : "";
    var blob = new Blob([text], { type: "text/csv;charset=utf-8" });
    var url = URL.createObjectURL(blob);
    var link = document.createElement("a");
    link.href = url;
    link.download = data.export_name;
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
    var annotated = out.filter(function (line) { return line !== ""; }).length;
    setStatus("Exported " + data.export_name + ": " + out.length + " lines, " + annotated + " annotated.", false);
  }

  function importAnnotations(name, text) {
    var rows = text.replace(/^\uFEFF/, "").split("\n").map(function (row) { return row.replace(/\r$/, ""); });
    if (rows.length && rows[rows.length - 1] === "") { rows.pop(); }
    if (rows.length > data.n_clips) {
      setStatus(name + " has " + rows.length + " lines but this page's scores file has " + data.n_clips +
        " clips; choose an annotations file for the same clips. Nothing was changed.", true);
      return;
    }
    var onPage = {};
    var filled = 0;
    boxes.forEach(function (box, i) {
      var row = lines[i] - 1 < rows.length ? rows[lines[i] - 1] : "";
      onPage[lines[i]] = true;
      box.value = row.trim() ? row : "";
      if (box.value) { filled++; }
    });
    var elsewhere = 0;
    rows.forEach(function (row, n) { if (row.trim() && !onPage[n + 1]) { elsewhere++; } });
    save();
    refreshAll();
    setStatus("Imported " + name + ": " + filled + " of " + boxes.length + " boxes filled" +
      (elsewhere ? "; " + elsewhere + " annotated lines are for clips not on this page and were not loaded (an export writes only this page's clips)." : "."), false);
  }

  restore();
  refreshAll();
  if (clips.length) {
    clips[current].classList.add("current");
    clips[current].setAttribute("aria-current", "true");
  }
  if (!storage) {
    setStatus("This browser does not let the page keep your edits; they are lost on reload. Export them before you close the page.", true);
  }

  boxes.forEach(function (box, i) {
    box.addEventListener("input", function () { updateClip(i); updateCounter(); save(); });
  });
  clips.forEach(function (clip, i) {
    clip.addEventListener("focusin", function () { select(i); });
    clip.addEventListener("click", function (event) {
      if (event.target === clip) { select(i, { focus: "clip" }); }
    });
  });
  audios.forEach(function (audio, i) {
    audio.addEventListener("play", function () { pauseAllBut(audio); select(i); });
    audio.addEventListener("error", function () {
      notes[i].classList.add("problem");
      notes[i].textContent = "The audio file could not be loaded from " + decodeURI(audio.getAttribute("src")) +
        " (relative to this page). Keep the page and the audio in the same relative places.";
    });
  });
  document.querySelectorAll("button.chip").forEach(function (chip) {
    chip.addEventListener("click", function () {
      var i = clips.indexOf(chip.closest(".clip"));
      var text = chip.getAttribute("data-text");
      var have = normalise(boxes[i].value);
      var items = have ? have.split(", ") : [];
      if (items.indexOf(text) < 0) { items.push(text); }
      boxes[i].value = items.join(", ");
      updateClip(i);
      updateCounter();
      save();
      select(i, { focus: "box" });
    });
  });
  document.getElementById("export-button").addEventListener("click", exportAnnotations);
  document.getElementById("import-button").addEventListener("click", function () { importFile.click(); });
  importFile.addEventListener("change", function () {
    var file = importFile.files && importFile.files[0];
    if (!file) { return; }
    var reader = new FileReader();
    reader.onload = function () { importAnnotations(file.name, String(reader.result)); importFile.value = ""; };
    reader.onerror = function () { setStatus("Could not read " + file.name + ".", true); importFile.value = ""; };
    reader.readAsText(file, "utf-8");
  });
  autoplayEl.addEventListener("change", save);

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || !clips.length) { return; }
    var target = event.target;
    var inBox = target.classList && target.classList.contains("labels");
    if (inBox) {
      if (event.key === "Enter") {
        event.preventDefault();
        select(current + (event.shiftKey ? -1 : 1), { focus: "box" });
      } else if (event.key === "Escape") {
        event.preventDefault();
        select(current, { focus: "clip" });
      }
      return;
    }
    if (target.closest && target.closest("input, textarea, select, [contenteditable]")) { return; }
    // On buttons, links, summaries and players Space/Enter/arrows keep their own meaning.
    var control = target.closest && target.closest("button, a[href], summary, audio");
    var key = event.key;
    if (control && (key === " " || key === "Enter" || key === "ArrowUp" || key === "ArrowDown")) { return; }
    if (key === "j" || key === "ArrowDown") {
      select(current + 1, { focus: "clip" });
    } else if (key === "k" || key === "ArrowUp") {
      select(current - 1, { focus: "clip" });
    } else if (key === " " || key === "p") {
      togglePlay(current);
    } else if (key === "r") {
      play(current, true);
    } else if (key === "Enter" || key === "e") {
      select(current, { focus: "box" });
    } else {
      return;
    }
    event.preventDefault();
  });
})();
