// The study page: instructions, practice with feedback, trials, attention checks, progress;
// every answer with its reaction time; progress kept in localStorage; answers exported as
// JSON and CSV named after the participant code. No network: everything is in this file.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("study-data").textContent);
  const trials = data.trials;
  const prefix = "protoexplain-study/" + data.study_id + "/" + data.list;
  const $ = (id) => document.getElementById(id);
  const next = $("next");
  const participantInput = document.querySelector("input[name=participant]");
  const screens = ["welcome", "instructions", "trial", "done"];
  const taskTitles = {distinction: "Which class did the model predict?",
                      agreement: "Is the model right?", similarity: "Do these look alike?"};
  let state = null;      // {participant, position, instructed, responses, started_at, finished_at}
  let current = null;    // the trial on screen: {answers: {}, rt_ms, shown_at, feedback}

  function storageKey(participant) { return prefix + "/" + participant; }

  function load(participant) {
    try {
      const saved = window.localStorage.getItem(storageKey(participant));
      return saved ? JSON.parse(saved) : null;
    } catch (error) { return null; }
  }

  function save() {
    try {
      window.localStorage.setItem(storageKey(state.participant), JSON.stringify(state));
      window.localStorage.setItem(prefix + "/last", state.participant);
    } catch (error) {
      problem("This browser does not keep the answers (storage is off): do not reload the page.");
    }
  }

  function problem(text) { $("problem").textContent = text; $("problem").hidden = !text; }

  function show(name) {
    for (const screen of screens) { $(screen).hidden = screen !== name; }
    next.hidden = name === "done";
    window.scrollTo(0, 0);
  }

  function progress() {
    const main = trials.filter((t) => t.kind !== "practice");
    const done = state.responses.filter((r) => r.kind !== "practice").length;
    const practice = trials[state.position] && trials[state.position].kind === "practice";
    $("progress").textContent = state.position >= trials.length ? "" :
      practice ? "practice" : "question " + Math.min(done + 1, main.length) + " of " + main.length;
  }

  function render() {
    problem("");
    progress();
    if (state.position >= trials.length) {
      if (!state.finished_at) { state.finished_at = new Date().toISOString(); save(); }
      show("done");
      return;
    }
    const trial = trials[state.position];
    if (state.instructed !== trial.task) {
      $("task-title").textContent = taskTitles[trial.task] || trial.task;
      $("task-text").textContent = data.instructions[trial.task];
      next.textContent = "Begin";
      next.disabled = false;
      show("instructions");
      return;
    }
    showTrial(trial);
  }

  function showTrial(trial) {
    current = {answers: {}, rt_ms: null, shown_at: null, feedback: false};
    $("trial").dataset.trial = trial.trial_id;  // for scripts and platforms
    $("trial").dataset.kind = trial.kind;
    $("kind").textContent = trial.kind === "practice" ? "Practice: you will see the answer." : "";
    $("prompt").textContent = trial.prompt;
    $("feedback").hidden = true;
    const image = $("stimulus");
    image.width = trial.width;
    image.height = trial.height;
    image.onload = () => { current.shown_at = performance.now(); };
    image.src = trial.src;
    if (image.complete) { current.shown_at = performance.now(); }
    const holder = $("questions");
    holder.textContent = "";
    for (const question of trial.questions) {
      const box = document.createElement("div");
      box.className = "question";
      box.dataset.question = question.name;
      if (question.prompt) {
        const text = document.createElement("p");
        text.textContent = question.prompt;
        box.appendChild(text);
      }
      const options = document.createElement("div");
      options.className = "options";
      for (const option of question.options) {
        const button = document.createElement("button");
        button.type = "button";
        button.dataset.answer = option.answer;
        button.textContent = option.label;
        button.setAttribute("aria-pressed", "false");
        button.addEventListener("click", () => answer(question.name, option.answer, options, button));
        options.appendChild(button);
      }
      box.appendChild(options);
      holder.appendChild(box);
    }
    next.textContent = "Next";
    next.disabled = true;
    show("trial");
  }

  function answer(name, value, options, button) {
    if (current.feedback) { return; }  // a practice answer is final once its feedback shows
    for (const other of options.children) { other.setAttribute("aria-pressed", "false"); }
    button.setAttribute("aria-pressed", "true");
    current.answers[name] = value;
    if (name === "choice") {
      const shown = current.shown_at === null ? performance.now() : current.shown_at;
      current.rt_ms = Math.round(performance.now() - shown);
    }
    const trial = trials[state.position];
    next.disabled = !trial.questions.every((q) => q.name in current.answers);
  }

  function commit() {
    const trial = trials[state.position];
    if (trial.kind === "practice" && trial.feedback && !current.feedback) {
      current.feedback = true;
      $("feedback").textContent = trial.feedback;
      $("feedback").hidden = false;
      next.textContent = "Continue";
      return;
    }
    state.responses.push({trial_id: trial.trial_id, kind: trial.kind, task: trial.task,
                          answer: current.answers.choice,
                          confidence: current.answers.confidence === undefined ? null
                            : Number(current.answers.confidence),
                          rt_ms: current.rt_ms, answered_at: new Date().toISOString()});
    state.position += 1;
    save();
    render();
  }

  function start() {
    const participant = participantInput.value.trim();
    if (!participant) { problem("Please enter your participant code."); return; }
    state = load(participant) || {participant: participant, position: 0, instructed: null,
                                  responses: [], started_at: new Date().toISOString(),
                                  finished_at: null};
    participantInput.disabled = true;
    save();
    render();
  }

  next.addEventListener("click", () => {
    if (!state) { start(); return; }
    if (!$("instructions").hidden) {
      state.instructed = trials[state.position].task;
      save();
      render();
      return;
    }
    if (!next.disabled) { commit(); }
  });

  function document_() {
    return {format: data.responses_format, version: 1, study_id: data.study_id, list: data.list,
            participant: state.participant, started_at: state.started_at,
            finished_at: state.finished_at, user_agent: navigator.userAgent,
            responses: state.responses};
  }

  const columns = ["study_id", "list", "participant", "trial_id", "kind", "task", "answer",
                   "confidence", "rt_ms", "answered_at"];

  function csvCell(value) {
    const text = value === null || value === undefined ? "" : String(value);
    return /[",\n\r]/.test(text) ? "\"" + text.replace(/"/g, "\"\"") + "\"" : text;
  }

  function csv() {
    const rows = state.responses.map((r) => Object.assign(
      {study_id: data.study_id, list: data.list, participant: state.participant}, r));
    return [columns.join(",")].concat(
      rows.map((r) => columns.map((c) => csvCell(r[c])).join(","))).join("\n") + "\n";
  }

  function download(text, type, ending) {
    const name = state.participant.replace(/[^A-Za-z0-9_-]/g, "_") + ending;
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([text], {type: type}));
    link.download = name;
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  }

  document.querySelector("[data-action=export]").addEventListener("click", () =>
    download(JSON.stringify(document_(), null, 2) + "\n", "application/json", ".json"));
  document.querySelector("[data-action=export-csv]").addEventListener("click", () =>
    download(csv(), "text/csv", ".csv"));

  participantInput.addEventListener("input", () => {
    const saved = load(participantInput.value.trim());
    $("resume-note").hidden = !saved;
    next.textContent = saved ? "Continue" : "Start";
  });
  participantInput.addEventListener("keydown", (event) => {
    if (event.key === "Enter") { start(); }
  });
  // the participant code from the address (index.html?participant=CODE, e.g. a platform's
  // participant id), else the code of an unfinished session in this browser
  let last = null;
  try { last = window.localStorage.getItem(prefix + "/last"); } catch (error) { last = null; }
  const given = new URLSearchParams(window.location.search).get("participant");
  if (given) {
    participantInput.value = given;
    participantInput.dispatchEvent(new Event("input"));
  } else if (last && load(last) && load(last).position < trials.length) {
    participantInput.value = last;
    participantInput.dispatchEvent(new Event("input"));
  }
  show("welcome");
})();
