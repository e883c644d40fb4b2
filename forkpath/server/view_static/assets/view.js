// forkpath view: the little interactivity the server-rendered pages need.
// Run data only ever reaches the page through textContent (never innerHTML), except the runs
// table, whose rows the server renders escaped, exactly as on first load.
"use strict";

(function () {
  const base = document.body.dataset.base || "";

  function el(tag, props, children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    for (const child of children || []) node.append(child);
    return node;
  }

  function number(x, digits) {
    return x === null || x === undefined ? "—" : Number(x).toFixed(digits);
  }

  // -- runs: live refresh and the compare picker -------------------------------------------------
  function setupRuns() {
    const body = document.getElementById("runs-body");
    if (!body) return;
    const button = document.getElementById("compare-picked");
    const picked = () => Array.from(body.querySelectorAll("input.pick:checked")).map((i) => i.value);
    const sync = () => { button.disabled = picked().length !== 2; };
    body.addEventListener("change", sync);
    button.addEventListener("click", () => {
      const [a, b] = picked();
      const query = new URLSearchParams({ a: a, b: b });
      window.location.href = base + "/compare?" + query.toString();
    });
    let busy = false;
    async function refresh() {
      if (busy) return;
      busy = true;
      try {
        const response = await fetch(body.dataset.live, { cache: "no-store" });
        if (!response.ok) return;
        const keep = new Set(picked());
        body.innerHTML = await response.text();  // rendered and escaped by the server
        for (const box of body.querySelectorAll("input.pick")) box.checked = keep.has(box.value);
        sync();
        document.body.dataset.refreshed = String(Date.now());
      } catch (err) {
        // the server stopped: keep what is shown, try again on the next tick
      } finally {
        busy = false;
      }
    }
    window.setInterval(refresh, 2000);
  }

  // -- the search tree ---------------------------------------------------------------------------
  function valueColour(value) {
    if (value === null || value === undefined) return "#bbbbbb";
    const v = Math.min(Math.max(value, 0), 1);
    const red = v < 0.5 ? 220 : Math.round(220 - (v - 0.5) * 2 * 180);
    const green = v < 0.5 ? Math.round(60 + v * 2 * 140) : 200;
    return "rgb(" + red + "," + green + ",80)";
  }

  function setupTree() {
    const root = document.getElementById("tree");
    const initNode = document.getElementById("tree-init");
    if (!root || !initNode) return;
    const init = JSON.parse(initNode.textContent);
    const items = new Map();

    async function fetchNode(id) {
      const query = new URLSearchParams({ search: String(init.search), node: id });
      const response = await fetch(base + init.api + "?" + query.toString());
      if (!response.ok) throw new Error("tree: " + response.status);
      return response.json();
    }

    function select(node, li) {
      for (const old of root.querySelectorAll("li.selected")) old.classList.remove("selected");
      li.classList.add("selected");
      document.getElementById("node-empty").hidden = true;
      document.getElementById("node-facts").hidden = false;
      const text = document.getElementById("node-text");
      text.hidden = false;
      text.textContent = node.text || "(no text)";
      document.getElementById("node-id").textContent = node.id;
      document.getElementById("node-visits").textContent = String(node.visits);
      document.getElementById("node-value").textContent = number(node.value, 3);
      document.getElementById("node-depth").textContent = String(node.depth);
      document.getElementById("node-onpath").textContent = node.on_path ? "yes" : "no";
      const query = new URLSearchParams({ search: String(init.search), node: node.id });
      const link = base + init.page + "?" + query.toString();
      document.getElementById("node-link").href = link;
      window.history.replaceState(null, "", link);
    }

    function item(node) {
      const li = el("li", { className: "node" + (node.on_path ? " on-path" : "") });
      li.dataset.id = node.id;
      const toggle = el("button", { className: "toggle", type: "button", textContent: node.children ? "▸" : "·" });
      toggle.disabled = !node.children;
      toggle.setAttribute("aria-label", "expand");
      const dot = el("span", { className: "dot" });
      dot.style.background = valueColour(node.value);
      const label = el("span", { className: "label", textContent: node.label, title: node.text });
      const stats = el("span", {
        className: "stats",
        textContent: "visits " + node.visits + " · value " + number(node.value, 3) +
          (node.children ? " · " + node.children + " children" : ""),
      });
      li.append(el("div", { className: "row" }, [toggle, dot, label, stats]));
      toggle.addEventListener("click", () => expand(li, node));
      label.addEventListener("click", () => select(node, li));
      items.set(node.id, { li: li, node: node });
      return li;
    }

    async function expand(li, node, open) {
      const toggle = li.querySelector(":scope > .row > .toggle");
      let list = li.querySelector(":scope > ul");
      if (list && open !== true) {
        list.hidden = !list.hidden;
        toggle.textContent = list.hidden ? "▸" : "▾";
        li.classList.toggle("expanded", !list.hidden);
        return;
      }
      if (list) return;
      const data = await fetchNode(node.id);
      list = el("ul");
      for (const child of data.children) list.append(item(child));
      if (data.more) list.append(el("li", { className: "hint", textContent: data.more + " more children not shown" }));
      li.append(list);
      toggle.textContent = "▾";
      li.classList.add("expanded");
    }

    async function start() {
      const data = await fetchNode(init.root);
      const top = item(data.node);
      root.append(top);
      await expand(top, data.node, true);
      const opened = new Set([init.root]);
      for (const chain of [init.path, init.focus]) {
        for (const id of chain.slice(0, -1)) {
          const found = items.get(id);
          if (found && !opened.has(id)) {
            opened.add(id);
            await expand(found.li, found.node, true);
          }
        }
      }
      const focus = init.focus.length ? init.focus[init.focus.length - 1] : null;
      if (focus && items.has(focus)) {
        const found = items.get(focus);
        select(found.node, found.li);
        found.li.scrollIntoView({ block: "center" });
      }
      root.dataset.ready = "1";
    }
    start().catch((err) => {
      root.append(el("li", { className: "error", textContent: "Could not load the tree: " + err.message }));
    });
  }

  // -- tokens: the alternatives on hover ---------------------------------------------------------
  function setupTokens() {
    const box = document.getElementById("tokens");
    const dataNode = document.getElementById("tokens-data");
    if (!box || !dataNode) return;
    const tips = JSON.parse(dataNode.textContent);
    const tip = document.getElementById("tip");
    const shown = (s) => JSON.stringify(s).slice(1, -1);  // quotes off, whitespace visible

    function show(span) {
      const t = tips[Number(span.dataset.i)];
      tip.replaceChildren();
      tip.append(el("div", { textContent: "token " + shown(t.token) + " · " + t.model }));
      tip.append(el("div", {
        textContent: "logprob " + number(t.logprob, 3) +
          (t.logprob === null ? "" : " (p " + (100 * Math.exp(t.logprob)).toFixed(1) + " %)") +
          " · entropy " + number(t.entropy, 3),
      }));
      if (t.top.length) {
        const table = el("table", { className: "alternatives" });
        for (const [text, lp] of t.top) {
          const row = el("tr", {}, [
            el("td", { textContent: shown(text) }),
            el("td", { textContent: (100 * Math.exp(lp)).toFixed(1) + " %" }),
          ]);
          if (text === t.token) row.className = "picked";
          table.append(row);
        }
        tip.append(el("div", { textContent: "alternatives:" }), table);
      } else {
        tip.append(el("div", { textContent: "no alternatives recorded" }));
      }
      const rect = span.getBoundingClientRect();
      tip.style.left = window.scrollX + rect.left + "px";
      tip.style.top = window.scrollY + rect.bottom + 6 + "px";
      tip.hidden = false;
    }

    box.addEventListener("mouseover", (e) => { if (e.target.classList.contains("tok")) show(e.target); });
    box.addEventListener("focusin", (e) => { if (e.target.classList.contains("tok")) show(e.target); });
    box.addEventListener("mouseleave", () => { tip.hidden = true; });
  }

  setupRuns();
  setupTree();
  setupTokens();
})();
