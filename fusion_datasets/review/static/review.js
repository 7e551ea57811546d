"use strict";
// The review page: renders the embedded data, plays clips, and (when served) saves each judgement at once.
const data = JSON.parse(document.getElementById("review-data").textContent);
const cards = [];
let current = 0;

function element(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value !== null && value !== undefined) node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

const number = (value, digits) => (value === null || value === undefined ? "–" : Number(value).toFixed(digits));
const percent = (value) => (value === null || value === undefined ? "–" : `${Math.round(100 * value)}%`);

function cueList(clip) {
  const list = element("dl", { class: "cues" });
  const add = (label, value) => {
    if (value === null || value === undefined || value === "" || (Array.isArray(value) && !value.length)) return;
    list.append(element("dt", null, label), element("dd", null, value));
  };
  if (clip.tags.length) {
    const tags = element("span", { class: "tags" });
    for (const tag of clip.tags) tags.append(element("span", null, `${tag.label} ${number(tag.score, 2)}`));
    add("tags", tags);
  }
  const cues = clip.cues;
  const speech = cues.asr_text ? `${cues.asr_text}${cues.asr_language ? ` (${cues.asr_language})` : ""}` : null;
  add("speech", speech);
  add("sound", cues.sound_caption);
  add("music", cues.music_caption ? `${cues.music_caption}${cues.music_score != null ? ` (score ${number(cues.music_score, 2)})` : ""}` : null);
  add("video", cues.video_caption);
  add("ambiguities", (cues.caption_ambiguities || []).join("; "));
  if (cues.caption_uncertain) add("uncertain", "the fusion model marked this caption uncertain");
  return list;
}

function filterLine(clip) {
  if (clip.clap_score === null || clip.clap_score === undefined) return element("p", { class: "filter" }, "CLAP score: none");
  const kept = clip.clap_keep;
  return element("p", { class: "filter" }, `CLAP score ${number(clip.clap_score, 3)} · `,
    element("span", { class: kept ? "kept" : "removed" }, kept ? "kept by the filter" : "removed by the filter"));
}

function renderClip(clip) {
  const card = element("article", { class: "clip", id: `clip-${clip.index}`, "data-index": clip.index, "data-id": clip.id });
  card.append(element("h2", null, `${clip.index + 1} / ${data.clips.length} · ${clip.id}`));
  if (clip.audio_url) card.append(element("audio", { controls: "", preload: "metadata", src: clip.audio_url }));
  if (clip.video_url) card.append(element("video", { controls: "", preload: "metadata", muted: "", src: clip.video_url }));
  card.append(element("p", { class: "caption" }, clip.caption), filterLine(clip), cueList(clip));
  if (clip.errors.length) {
    const errors = element("ul", { class: "errors" });
    for (const error of clip.errors) errors.append(element("li", null, `${error.stage}: ${error.message}`));
    card.append(errors);
  }
  const judged = data.judgements[clip.id] || { label: null, note: "" };
  const good = element("button", { class: "good", type: "button", "aria-pressed": String(judged.label === "good") }, "Good (g)");
  const bad = element("button", { class: "bad", type: "button", "aria-pressed": String(judged.label === "bad") }, "Bad (b)");
  const note = element("textarea", { class: "note", placeholder: "note (optional)", rows: 1 });
  note.value = judged.note || "";
  const status = element("span", { class: "status" }, judged.label ? `saved: ${judged.label}` : "");
  if (!data.editable) { good.disabled = bad.disabled = note.disabled = true; }
  good.addEventListener("click", (event) => { event.stopPropagation(); judge(clip.index, "good"); });
  bad.addEventListener("click", (event) => { event.stopPropagation(); judge(clip.index, "bad"); });
  let typing = null;  // a judged clip's note is saved a moment after typing stops, and when it loses focus
  const saveNote = () => { clearTimeout(typing); const label = labelOf(clip.index); if (label) save(clip.index, label); };
  note.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(saveNote, 800); });
  note.addEventListener("change", saveNote);
  card.append(element("div", { class: "judge" }, good, bad, note, status));
  card.classList.toggle("good", judged.label === "good");
  card.classList.toggle("bad", judged.label === "bad");
  card.addEventListener("click", () => focusClip(clip.index, false));
  return card;
}

function labelOf(index) {
  const judged = data.judgements[data.clips[index].id];
  return judged ? judged.label : null;
}

function showSummary(summary) {
  const threshold = summary.threshold === null ? "the filter's threshold" : `threshold ${number(summary.threshold, 3)}`;
  const agreement = summary.agreement === null ? "–" : `${percent(summary.agreement)} of ${summary.scored} scored`;
  document.getElementById("summary").textContent =
    `${summary.judged} of ${summary.sampled} judged (${summary.good} good, ${summary.bad} bad) · ` +
    `agreement with ${threshold}: ${agreement}`;
}

function showCalibration(calibration) {
  document.getElementById("calibration-command").textContent = calibration.command;
  document.getElementById("calibration-hint").textContent = calibration.model_hint || "";
  document.getElementById("calibration-apply").textContent = calibration.apply;
  document.getElementById("calibration-apply-hint").textContent = calibration.apply_hint;
  const result = calibration.result;
  document.getElementById("calibration-result").textContent = result
    ? `Last calibration: threshold ${number(result.threshold, 4)}, F${result.beta} ${number(result.f_beta, 3)}, ` +
      `agreement ${percent(result.agreement)}, removes ${percent(result.removed_share)} (${result.n} judged captions).`
    : "Not calibrated yet: its threshold and plot appear here once the command has run.";
  const plot = document.getElementById("calibration-plot");
  if (calibration.plot_url) { plot.src = calibration.plot_url; plot.hidden = false; }
}

let saving = Promise.resolve();  // one request at a time, so the file ends with the last judgement made
function save(index, label) {
  saving = saving.then(() => send(index, label));
  return saving;
}

async function send(index, label) {
  const card = cards[index];
  const note = card.querySelector(".note").value;
  const status = card.querySelector(".status");
  status.className = "status";
  status.textContent = "saving…";
  try {
    const response = await fetch("api/judgements", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ index, label, note }),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.statusText);
    data.judgements[data.clips[index].id] = { label, note };
    card.querySelector(".good").setAttribute("aria-pressed", String(label === "good"));
    card.querySelector(".bad").setAttribute("aria-pressed", String(label === "bad"));
    card.classList.toggle("good", label === "good");
    card.classList.toggle("bad", label === "bad");
    status.textContent = `saved: ${label}`;
    showSummary(answer.summary);
  } catch (error) {
    status.className = "status failed";
    status.textContent = `not saved: ${error.message}`;
  }
}

function judge(index, label) {  // saved in the background; the next clip is current at once
  if (!data.editable) return;
  save(index, label);
  focusClip(index + 1 < cards.length ? index + 1 : index, true);
}

function focusClip(index, scroll) {
  cards[current].classList.remove("current");
  current = Math.max(0, Math.min(cards.length - 1, index));
  cards[current].classList.add("current");
  if (scroll) cards[current].scrollIntoView({ block: "center" });
}

document.addEventListener("keydown", (event) => {
  if (event.target.closest("textarea, input") && event.key !== "Escape") return;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const audio = cards[current].querySelector("audio");
  const actions = {
    g: () => judge(current, "good"), b: () => judge(current, "bad"),
    j: () => focusClip(current + 1, true), ArrowDown: () => focusClip(current + 1, true),
    k: () => focusClip(current - 1, true), ArrowUp: () => focusClip(current - 1, true),
    " ": () => audio && (audio.paused ? audio.play() : audio.pause()),
    n: () => data.editable && cards[current].querySelector(".note").focus(),
    Escape: () => document.activeElement.blur(),
  };
  const action = actions[event.key];
  if (action) { event.preventDefault(); action(); }
});

document.getElementById("reviewer").textContent = data.editable
  ? `— ${data.reviewer}, saved to ${data.judgements_file}` : `— ${data.reviewer} (read-only export)`;
if (!data.editable) document.getElementById("keys").textContent = "Read-only: judged by the reviewer named above.";
const container = document.getElementById("clips");
for (const clip of data.clips) { const card = renderClip(clip); cards.push(card); container.append(card); }
showSummary(data.summary);
showCalibration(data.calibration);
if (cards.length) {
  const next = data.clips.findIndex((clip) => !data.judgements[clip.id]);  // continue where the review stopped
  focusClip(next === -1 ? 0 : next, next > 0);
}
