// The facerec console: a thin page over the service's own HTTP API. No build step, no library.
// Everything people typed (names, metadata, ids) is put on the page as text, never as HTML, and the
// API key lives in this tab's sessionStorage only: sent as X-API-Key, never in a URL or a cookie.
"use strict";

const KEY = "facerec.key";
const PAGE = 20;
const REASONS = {  // the API's refusal codes, in plain words
  not_an_image: "not an image file",
  truncated: "the file is cut short or damaged",
  empty: "the file is empty",
  too_large: "too large (file size or number of pixels)",
  no_face: "no face found",
  multiple_faces: "several faces of a similar size: use a photo where one face clearly dominates",
  duplicate: "already enrolled for this person",
  unknown_person: "the person was deleted meanwhile",
  not_found: "file not found",
  unreadable: "the file could not be read",
};
const session = { role: null, keyId: null, threshold: null };

// ---- small helpers --------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const view = () => document.getElementById("view");
const enc = encodeURIComponent;
const fmt = (d) => (d === null || d === undefined ? "-" : Number(d).toFixed(3));

function show(...nodes) {
  view().replaceChildren(...nodes);
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, { json, form, binary = false } = {}) {
  const headers = { "X-API-Key": sessionStorage.getItem(KEY) || "" };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  const response = await fetch(path, { method, headers, body, cache: "no-store", credentials: "omit" });
  const isJson = (response.headers.get("Content-Type") || "").startsWith("application/json");
  if (!response.ok) {
    const data = isJson ? await response.json() : null;
    if (response.status === 401) signOut("The key was refused: sign in again.");
    throw new ApiError(response.status, data?.error?.code, data?.error?.message || response.statusText);
  }
  if (binary) return response.blob();
  return isJson ? response.json() : null;
}

function errorText(error) {
  return error instanceof ApiError ? `${error.message} (${error.code || error.status})` : String(error);
}

async function thumbnail(person, faceId) {
  const img = el("img", { class: "thumb", alt: `face ${faceId}`, "data-face": faceId });
  img.addEventListener("load", () => URL.revokeObjectURL(img.src), { once: true });  // drawn: let the bytes go
  try {
    img.src = URL.createObjectURL(await api("GET", `/v1/people/${enc(person)}/faces/${faceId}/crop.jpg`,
                                            { binary: true }));
  } catch (error) {
    img.alt = `face ${faceId}: no thumbnail`;
  }
  return img;
}

// ---- signing in -----------------------------------------------------------------------------------

function signInView(message) {
  const key = el("input", { type: "password", id: "key", autocomplete: "off", required: true });
  const note = el("p", { class: "error", id: "sign-in-error" }, message || "");
  const form = el("form", { id: "sign-in", onsubmit: async (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, key.value.trim());
    try {
      await signIn();
      location.hash = session.role === "admin" ? "#/people" : "#/try";
      route();
    } catch (error) {
      sessionStorage.removeItem(KEY);
      note.textContent = errorText(error);
    }
  } }, el("label", {}, "API key", key), el("button", { type: "submit" }, "Sign in"));
  document.getElementById("nav").hidden = true;
  show(el("section", { class: "card" }, el("h2", {}, "Sign in"),
          el("p", { class: "muted" }, "The key stays in this browser tab only, until you sign out or close it."),
          form, note));
  key.focus();
}

async function signIn() {
  const me = await api("GET", "/v1/whoami");
  Object.assign(session, { role: me.role, keyId: me.key_id, threshold: me.threshold });
  const nav = document.getElementById("nav");
  for (const link of nav.querySelectorAll("[data-role]")) {
    link.hidden = link.dataset.role === "admin" && me.role !== "admin";
  }
  document.getElementById("who").textContent = `${me.key_id} (${me.role})`;
  nav.hidden = false;
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  Object.assign(session, { role: null, keyId: null, threshold: null });
  history.replaceState(null, "", "/console");
  signInView(message);
}

// ---- people ---------------------------------------------------------------------------------------

async function peopleView(params) {
  const search = params.get("q") || "";
  const offset = Number(params.get("offset") || 0);
  const box = el("input", { type: "search", id: "search", value: search, placeholder: "id or name" });
  const list = el("div", { id: "people" }, el("p", { class: "muted" }, "Loading…"));
  const go = (q, at) => { location.hash = `#/people?q=${enc(q)}&offset=${at}`; };
  box.addEventListener("keydown", (event) => { if (event.key === "Enter") go(box.value.trim(), 0); });
  show(el("section", { class: "card" }, el("h2", {}, "People"),
          el("div", { class: "row" }, box, el("button", { onclick: () => go(box.value.trim(), 0) }, "Search")),
          list),
       newPersonCard());
  try {
    const page = await api("GET", `/v1/people?limit=${PAGE}&offset=${offset}&q=${enc(search)}`);
    const rows = page.people.map((p) => el("tr", { class: "person", "data-id": p.id,
                                                   onclick: () => { location.hash = `#/person/${enc(p.id)}`; } },
      el("td", {}, p.id), el("td", {}, p.name || ""), el("td", {}, p.faces), el("td", {}, p.active ? "active" : "inactive")));
    const pager = el("div", { class: "row" },
      el("button", { class: "secondary", disabled: offset === 0, onclick: () => go(search, Math.max(0, offset - PAGE)) },
         "Previous"),
      el("span", { class: "muted" }, page.total ? `${offset + 1}–${offset + page.people.length} of ${page.total}` : "nobody"),
      el("button", { class: "secondary", disabled: offset + PAGE >= page.total, onclick: () => go(search, offset + PAGE) },
         "Next"));
    list.replaceChildren(el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "id"), el("th", {}, "name"),
                                                            el("th", {}, "faces"), el("th", {}, "state"))),
                            el("tbody", {}, rows)), pager);
  } catch (error) {
    list.replaceChildren(el("p", { class: "error" }, errorText(error)));
  }
}

function newPersonCard() {
  const id = el("input", { type: "text", id: "new-id", required: true });
  const name = el("input", { type: "text", id: "new-name" });
  const metadata = el("textarea", { id: "new-metadata", placeholder: '{"badge": 17}' });
  const note = el("p", { class: "error" });
  const form = el("form", { id: "new-person", onsubmit: async (event) => {
    event.preventDefault();
    note.textContent = "";
    try {
      const body = { id: id.value.trim(), name: name.value.trim() || null };
      if (metadata.value.trim()) body.metadata = JSON.parse(metadata.value);
      const person = await api("POST", "/v1/people", { json: body });
      location.hash = `#/person/${enc(person.id)}`;
    } catch (error) {
      note.textContent = error instanceof SyntaxError ? `metadata is not JSON: ${error.message}` : errorText(error);
    }
  } }, el("label", {}, "Id", id), el("label", {}, "Name", name), el("label", {}, "Metadata (JSON object)", metadata),
      el("button", { type: "submit" }, "Create"));
  return el("section", { class: "card" }, el("h2", {}, "New person"), form, note);
}

async function personView(personId) {
  let person;
  try {
    person = await api("GET", `/v1/people/${enc(personId)}`);
  } catch (error) {
    show(el("section", { class: "card" }, el("p", { class: "error" }, errorText(error))));
    return;
  }
  const faces = el("div", { class: "faces", id: "faces" });
  show(el("section", { class: "card" }, el("h2", { id: "person-title" }, person.name || person.id),
          el("p", { class: "muted" }, `id ${person.id} · ${person.active ? "active" : "inactive"} · enrolled `,
             new Date(person.created_at).toLocaleString()),
          editForm(person), deleteControl(person)),
       el("section", { class: "card" }, el("h2", {}, "Faces"), faces),
       enrollCard(person.id, faces));
  await showFaces(person.id, faces);
}

async function showFaces(personId, faces) {
  const list = await api("GET", `/v1/people/${enc(personId)}/faces`);
  faces.replaceChildren(...(list.faces.length ? [] : [el("p", { class: "muted" }, "No face yet: drop photos below.")]));
  for (const face of list.faces) {
    const remove = el("button", { class: "secondary", onclick: async () => {
      await api("DELETE", `/v1/people/${enc(personId)}/faces/${face.id}`);
      await showFaces(personId, faces);
    } }, "Remove");
    faces.append(el("div", { class: "face" }, await thumbnail(personId, face.id),
                    el("span", { class: "muted" }, `face ${face.id}`), remove));
  }
}

function editForm(person) {
  const name = el("input", { type: "text", id: "edit-name", value: person.name || "" });
  const metadata = el("textarea", { id: "edit-metadata" }, person.metadata ? JSON.stringify(person.metadata, null, 2) : "");
  const active = el("input", { type: "checkbox", id: "edit-active", checked: person.active });
  const note = el("p");
  return el("form", { id: "edit-person", onsubmit: async (event) => {
    event.preventDefault();
    note.className = "";
    try {
      const body = { name: name.value.trim() || null, active: active.checked,
                     metadata: metadata.value.trim() ? JSON.parse(metadata.value) : null };
      const saved = await api("PATCH", `/v1/people/${enc(person.id)}`, { json: body });
      document.getElementById("person-title").textContent = saved.name || saved.id;
      note.className = "ok";
      note.textContent = "Saved.";
    } catch (error) {
      note.className = "error";
      note.textContent = error instanceof SyntaxError ? `metadata is not JSON: ${error.message}` : errorText(error);
    }
  } }, el("label", {}, "Name", name), el("label", {}, "Metadata (JSON object)", metadata),
      el("label", {}, active, " active (an inactive person is never matched)"), el("button", { type: "submit" }, "Save"), note);
}

function deleteControl(person) {
  const box = el("div");
  const ask = el("button", { class: "danger", id: "delete", onclick: () => {
    ask.disabled = true;
    box.replaceChildren(el("div", { class: "confirm" },
      el("p", {}, `Delete ${person.id} with all ${person.faces} face(s)? This cannot be undone.`),
      el("div", { class: "row" },
         el("button", { class: "danger", id: "confirm-delete", onclick: async () => {
           await api("DELETE", `/v1/people/${enc(person.id)}`);
           location.hash = "#/people";
         } }, "Delete for good"),
         el("button", { class: "secondary", onclick: () => { box.replaceChildren(); ask.disabled = false; } }, "Cancel"))));
  } }, "Delete person");
  return el("div", {}, ask, box);
}

function enrollCard(personId, faces) {
  const input = el("input", { type: "file", id: "photos", multiple: true, accept: "image/*" });
  const outcomes = el("ul", { class: "outcomes", id: "outcomes" });
  const drop = el("div", { id: "drop" }, "Drop photos of this person here, or ", input);
  const enroll = async (files) => {
    for (const file of files) {  // one request per photo: each outcome shows as soon as it is known
      const line = el("li", { "data-photo": file.name }, el("span", {}, file.name), el("span", { class: "muted" }, "enrolling…"));
      outcomes.prepend(line);
      const form = new FormData();
      form.append("photo", file, file.name);
      try {
        const answer = await api("POST", `/v1/people/${enc(personId)}/faces`, { form });
        const photo = answer.photos[0];
        if (photo.status === "accepted") {
          line.replaceChildren(await thumbnail(personId, photo.face_id), el("span", {}, file.name),
                               el("span", { class: "ok outcome" }, `accepted (face ${photo.face_id})`));
        } else {
          line.replaceChildren(el("span", {}, file.name),
                               el("span", { class: "error outcome" }, `refused: ${REASONS[photo.reason] || photo.reason}`));
        }
      } catch (error) {
        line.replaceChildren(el("span", {}, file.name), el("span", { class: "error outcome" },
                             `refused: ${REASONS[error.code] || errorText(error)}`));
      }
    }
    await showFaces(personId, faces);
  };
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    enroll([...event.dataTransfer.files]);
  });
  input.addEventListener("change", () => enroll([...input.files]));
  return el("section", { class: "card" }, el("h2", {}, "Enroll"), drop, outcomes);
}

// ---- try it: identify or verify a photo -----------------------------------------------------------

function tryView() {
  let photo = null;
  const file = el("input", { type: "file", id: "try-photo", accept: "image/*" });
  const claimed = el("input", { type: "text", id: "claimed", placeholder: "person id" });
  const result = el("div", { id: "result" });
  const canvas = el("canvas", { id: "photo", hidden: true });
  const video = el("video", { id: "camera", hidden: true, autoplay: true, playsinline: true, muted: true });
  const camera = el("div", { class: "row" });
  const take = (blob, name) => { photo = { blob, name }; result.replaceChildren(el("p", { class: "muted" }, `photo: ${name}`)); };
  file.addEventListener("change", () => { if (file.files[0]) take(file.files[0], file.files[0].name); });
  if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
    const snap = el("button", { class: "secondary", hidden: true, onclick: () => {
      const frame = document.createElement("canvas");
      frame.width = video.videoWidth;
      frame.height = video.videoHeight;
      frame.getContext("2d").drawImage(video, 0, 0);
      frame.toBlob((blob) => take(blob, "camera.jpg"), "image/jpeg", 0.92);
    } }, "Take photo");
    camera.append(el("button", { class: "secondary", onclick: async () => {
      try {
        video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true });
        video.hidden = false;
        snap.hidden = false;
      } catch (error) {
        result.replaceChildren(el("p", { class: "error" }, `camera: ${error.message}`));
      }
    } }, "Use the camera"), snap);
  }
  const ask = async (kind) => {
    if (!photo) {
      result.replaceChildren(el("p", { class: "error" }, "Choose a photo first."));
      return;
    }
    const form = new FormData();
    form.append("photo", photo.blob, photo.name);
    if (kind === "identify") form.append("all_faces", "true");
    else form.append("person", claimed.value.trim());
    result.replaceChildren(el("p", { class: "muted" }, "asking…"));
    try {
      const answer = await api("POST", `/v1/${kind}`, { form });
      const faces = kind === "identify" ? answer.faces.map((f) => ({ box: f.box, label: f.match || "not in the database",
                                                                     ok: !!f.match, distance: f.distance }))
        : [{ box: answer.box, label: `${answer.person}: ${answer.match ? "accepted" : "rejected"}`, ok: answer.match,
             distance: answer.distance }];
      await drawAnswer(canvas, photo.blob, faces, answer.threshold);
      result.replaceChildren(el("ul", { class: "answers" }, faces.map((f) => el("li", { class: f.ok ? "ok answer" : "error answer" },
        `${f.label} · distance ${fmt(f.distance)} ${f.ok ? "<" : "≥"} threshold ${answer.threshold}`))),
        el("p", { class: "muted" }, `${answer.faces_found} face(s) in the photo`));
    } catch (error) {
      canvas.hidden = true;
      result.replaceChildren(el("p", { class: "error" }, errorText(error)));
    }
  };
  show(el("section", { class: "card" }, el("h2", {}, "Try it"),
          el("div", { class: "row" }, el("label", {}, "Photo ", file)), camera, video,
          el("div", { class: "row" }, el("button", { id: "identify", onclick: () => ask("identify") }, "Identify"),
             el("span", { class: "muted" }, "or verify a claim:"), claimed,
             el("button", { id: "verify", onclick: () => ask("verify") }, "Verify"))),
       el("section", { class: "card" }, el("h2", {}, "Answer"), result, canvas));
}

async function drawAnswer(canvas, blob, faces, threshold) {
  const image = await createImageBitmap(blob);
  const scale = Math.min(720 / image.width, Math.max(1, 480 / image.width));  // small photos shown larger
  canvas.width = Math.round(image.width * scale);
  canvas.height = Math.round(image.height * scale);
  const g = canvas.getContext("2d");
  g.drawImage(image, 0, 0, canvas.width, canvas.height);
  g.lineWidth = 3;
  g.font = "15px system-ui, sans-serif";
  for (const face of faces) {
    const [x, y, w, h] = face.box.map((v) => v * scale);
    const colour = face.ok ? "#27ae60" : "#e74c3c";
    g.strokeStyle = colour;
    g.strokeRect(x, y, w, h);
    const text = `${face.label} ${fmt(face.distance)} / ${threshold}`;
    const width = g.measureText(text).width + 8;
    const left = Math.max(0, Math.min(x, canvas.width - width));  // the label stays on the picture
    g.fillStyle = colour;
    g.fillRect(left, Math.max(0, y - 20), width, 20);
    g.fillStyle = "#fff";
    g.fillText(text, left + 4, Math.max(15, y - 5));
  }
  canvas.hidden = false;
}

// ---- decisions --------------------------------------------------------------------------------------

async function decisionsView(params) {
  const person = params.get("person") || "";
  const box = el("input", { type: "search", id: "audit-person", value: person, placeholder: "person id" });
  const table = el("div", { id: "decisions" }, el("p", { class: "muted" }, "Loading…"));
  const go = () => { location.hash = `#/decisions?person=${enc(box.value.trim())}`; };
  box.addEventListener("keydown", (event) => { if (event.key === "Enter") go(); });
  show(el("section", { class: "card" }, el("h2", {}, "Decisions"),
          el("div", { class: "row" }, box, el("button", { onclick: go }, "Filter"),
             el("button", { class: "secondary", onclick: () => route() }, "Refresh")), table));
  try {
    const page = await api("GET", `/v1/audit?limit=100${person ? `&person=${enc(person)}` : ""}`);
    table.replaceChildren(el("table", {},
      el("thead", {}, el("tr", {}, ["when", "key", "decision", "outcome", "person", "distance", "code"].map((h) => el("th", {}, h)))),
      el("tbody", {}, page.events.map((e) => el("tr", { class: "decision" },
        el("td", {}, new Date(e.time).toLocaleString()), el("td", {}, e.key_id || "-"), el("td", {}, e.endpoint),
        el("td", {}, e.outcome), el("td", {}, e.person || "-"), el("td", {}, fmt(e.distance)), el("td", {}, e.code || ""))))),
      el("p", { class: "muted" }, `${page.events.length} of ${page.total}`));
    // Says which filter the rows answer, so a reader (or a test) can tell them from an earlier page's.
    table.dataset.person = person;
  } catch (error) {
    table.replaceChildren(el("p", { class: "error" }, errorText(error)));
  }
}

// ---- routing --------------------------------------------------------------------------------------

async function route() {
  if (!sessionStorage.getItem(KEY)) {
    signInView();
    return;
  }
  if (!session.role) {
    try {
      await signIn();
    } catch (error) {
      signOut(errorText(error));
      return;
    }
  }
  const [path, query] = (location.hash.slice(1) || (session.role === "admin" ? "/people" : "/try")).split("?");
  const params = new URLSearchParams(query || "");
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("current", link.getAttribute("href") === `#${path}`);
  }
  if (path === "/try") return tryView();
  if (session.role !== "admin") {
    show(el("section", { class: "card" }, el("p", {}, "This key may only use Try it."),
            el("a", { href: "#/try" }, "Try it")));
    return;
  }
  if (path.startsWith("/person/")) return personView(decodeURIComponent(path.slice("/person/".length)));
  if (path === "/decisions") return decisionsView(params);
  return peopleView(params);
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => {
  document.getElementById("sign-out").addEventListener("click", () => signOut());
  route();
});
