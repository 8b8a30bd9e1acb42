// sluice dashboard: live updates over Server-Sent Events and actions with
// fetch. The pages work without it; it never builds markup from strings,
// so text from the queue (addresses, reasons) is only ever textContent.
"use strict";
(function () {
	const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
	let index = null; // key -> elements, rebuilt when the page is redrawn

	function buildIndex() {
		index = { k: new Map(), l: new Map(), b: new Map() };
		const add = (m, key, el) => { if (!m.has(key)) m.set(key, []); m.get(key).push(el); };
		document.querySelectorAll("[data-k]").forEach((el) => add(index.k, el.dataset.k, el));
		document.querySelectorAll("[data-l]").forEach((el) => add(index.l, el.dataset.l, el));
		document.querySelectorAll("[data-b]").forEach((el) => add(index.b, el.dataset.b, el));
	}

	function apply(d) {
		for (const [k, v] of Object.entries(d.set || {})) {
			(index.k.get(k) || []).forEach((el) => {
				if (el.textContent !== v) { el.textContent = v; flash(el); }
			});
		}
		for (const [k, v] of Object.entries(d.level || {})) {
			(index.l.get(k) || []).forEach((el) => { el.className = "h" + Number(v); });
		}
		for (const [k, v] of Object.entries(d.bars || {})) {
			(index.b.get(k) || []).forEach((el) => {
				el.setAttribute("height", String(v));
				el.setAttribute("y", String(36 - Number(v)));
			});
		}
		// New rows or classes: the numbers above went where they could
		// (the header's among them); the overview itself is redrawn.
		const ov = document.getElementById("ov");
		if (ov && d.shape && d.shape !== ov.dataset.shape) redraw();
	}

	function flash(el) {
		el.classList.add("flash");
		setTimeout(() => el.classList.remove("flash"), 1200);
	}

	// redraw fetches this page again and swaps in its overview part: the
	// rows changed (a new domain, a new class), which a delta cannot say.
	let redrawing = false;
	async function redraw() {
		if (redrawing) return;
		redrawing = true;
		try {
			const r = await fetch(location.href, { credentials: "same-origin" });
			if (!r.ok) return;
			const doc = new DOMParser().parseFromString(await r.text(), "text/html");
			const fresh = doc.getElementById("ov");
			const cur = document.getElementById("ov");
			if (fresh && cur) {
				cur.replaceWith(document.importNode(fresh, true));
				buildIndex();
			}
		} finally {
			redrawing = false;
		}
	}

	function live() {
		if (!window.EventSource) return;
		const params = new URLSearchParams();
		if (document.getElementById("ov")) {
			params.set("view", "overview");
			if (new URLSearchParams(location.search).get("senders") === "1") params.set("senders", "1");
		}
		const es = new EventSource("/events?" + params.toString());
		const badge = document.getElementById("live");
		es.addEventListener("delta", (e) => {
			if (badge) badge.hidden = false;
			apply(JSON.parse(e.data));
		});
		es.addEventListener("logout", () => { es.close(); location.assign("/login"); });
		es.onerror = () => { if (badge) badge.hidden = true; };
	}

	// Actions: Preview posts a dry run; its answer shows the count and a
	// sample and offers Confirm, which posts the real action.
	function el(tag, text, cls) {
		const e = document.createElement(tag);
		if (text !== undefined) e.textContent = text;
		if (cls) e.className = cls;
		return e;
	}

	async function post(form, confirm) {
		const body = new URLSearchParams(new FormData(form));
		if (confirm) body.set("confirm", "yes");
		const r = await fetch("/act", {
			method: "POST", body, credentials: "same-origin",
			headers: { "Accept": "application/json", "X-CSRF-Token": csrf },
		});
		return r.json();
	}

	function show(form, res) {
		const out = form.querySelector(".act-out");
		out.replaceChildren();
		if (res.error) {
			out.append(el("p", res.error, "error"));
			return;
		}
		const p = el("p", "", "counts");
		const verb = res.dry_run ? "Would " + res.action + " " : res.action + ": changed ";
		p.append(verb, el("b", String(res.changed), "changed"), " of ", el("b", String(res.matched), "matched"),
			" matched messages; " + res.skipped + (res.dry_run ? " would be skipped." : " skipped."));
		out.append(p);
		if (res.reasons && res.reasons.length) {
			const ul = el("ul", undefined, "reasons");
			res.reasons.forEach((x) => ul.append(el("li", x)));
			out.append(ul);
		}
		if (res.sample && res.sample.length) {
			const ul = el("ul", undefined, "sample");
			res.sample.forEach((m) => {
				const li = el("li");
				const a = el("a", m.id, "id");
				a.href = m.url;
				li.append(a, " " + m.queue + " from " + (m.sender || "<>"));
				ul.append(li);
			});
			out.append(ul);
		}
		if (res.dry_run) {
			const b = el("button", "Confirm: " + res.action + " " + res.changed + " messages", "danger");
			b.type = "button";
			b.addEventListener("click", async () => {
				b.disabled = true;
				show(form, await post(form, true));
			});
			out.append(b);
		} else {
			out.append(el("p", "Done. The counts above follow live.", "done"));
		}
	}

	function actions() {
		document.querySelectorAll("form[data-act]").forEach((form) => {
			form.addEventListener("submit", async (e) => {
				e.preventDefault();
				try {
					show(form, await post(form, false));
				} catch (err) {
					show(form, { error: "The request failed: " + err });
				}
			});
		});
	}

	document.addEventListener("DOMContentLoaded", () => {
		buildIndex();
		live();
		actions();
	});
})();
